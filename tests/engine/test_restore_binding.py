"""Version binding (seed 003): a checkpoint restored with another tokenizer, or a stage resumed on changed
data, is refused with one line unless --allow-mismatch says otherwise, which is then recorded."""

from __future__ import annotations

import json
import shutil

import pytest

from octo.cli import main
from tests.conftest import TINY_OVERRIDES


def _cpt(run, stages, extra=(), flags=()):
    args = ["cpt", "recipes/toy/scratch.yaml", "--run-dir", str(run), *flags]
    for s in stages:
        args += ["--stage", s]
    for o in TINY_OVERRIDES + ["cpt.gates.problems=4", "cpt.gates.if_items=0", *extra]:
        args += ["--set", o]
    return main(args)


def _jsonl(path):
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _change_tokenizer(run):
    from octo.model import load_tokenizer

    tok = load_tokenizer(run / "tokenizer")
    tok.add_tokens(["Kendall"])
    tok.save_pretrained(str(run / "tokenizer"))


def test_tokenizer_mismatch_is_refused_then_recorded_when_allowed(tmp_path, capsys):
    run = tmp_path / "run"
    assert _cpt(run, ["pretrain"]) == 0
    rows = _jsonl(run / "cpt/pretrain/restores.jsonl") if (run / "cpt/pretrain/restores.jsonl").exists() else []
    assert rows == []                                    # a random init restores nothing
    _change_tokenizer(run)
    capsys.readouterr()
    assert _cpt(run, ["stable"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "was trained with tokenizer" in err[0] and "--allow-mismatch tokenizer" in err[0]
    assert not (run / "cpt/stable/DONE.json").exists()
    assert _cpt(run, ["stable"], flags=["--allow-mismatch", "tokenizer"]) == 0
    row = _jsonl(run / "cpt/stable/restores.jsonl")[-1]
    assert row["event"] == "start" and row["mode"] == "full" and row["bound"] is True
    assert row["checkpoint"] == "cpt/pretrain/checkpoints/step-4"
    assert [o["kind"] for o in row["overrides"]] == ["tokenizer"]
    assert row["overrides"][0]["run"] == row["tokenizer_hash"] != row["checkpoint_tokenizer_hash"]
    final = json.loads((run / "cpt/stable/checkpoints/step-16/manifest.json").read_text())
    assert [o["kind"] for o in final["restore_overrides"]] == ["tokenizer"]
    assert final["tokenizer_hash"] == row["tokenizer_hash"]   # later manifests bind to the new version


def test_changed_data_on_resume_is_refused_then_recorded_when_allowed(tmp_path, capsys):
    run = tmp_path / "run"
    assert _cpt(run, ["pretrain", "stable"]) == 0
    # the state a kill after step 12 leaves: a step-12 checkpoint, no final one, no DONE.json
    shutil.rmtree(run / "cpt/stable/checkpoints/step-16")
    (run / "cpt/stable/DONE.json").unlink()
    with open(run / "world/web.jsonl", "a") as fh:
        fh.write(json.dumps({"text": "A new document about the river."}) + "\n")
    capsys.readouterr()
    assert _cpt(run, ["stable"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "source(s) web changed" in err[0] and "--allow-mismatch data" in err[0]
    assert _cpt(run, ["stable"], flags=["--allow-mismatch", "data"]) == 0
    row = _jsonl(run / "cpt/stable/restores.jsonl")[-1]
    assert row["event"] == "resume" and row["checkpoint"] == "cpt/stable/checkpoints/step-12"
    assert [(o["kind"], o["source"]) for o in row["overrides"]] == [("data", "web")]
    assert json.loads((run / "cpt/stable/DONE.json").read_text())["step"] == 16


def test_unchanged_resume_is_recorded_without_overrides(tmp_path):
    run = tmp_path / "run"
    assert _cpt(run, ["pretrain", "stable"]) == 0
    shutil.rmtree(run / "cpt/stable/checkpoints/step-16")
    (run / "cpt/stable/DONE.json").unlink()
    assert _cpt(run, ["stable"]) == 0
    rows = _jsonl(run / "cpt/stable/restores.jsonl")
    assert [(r["event"], r["overrides"]) for r in rows] == [("start", []), ("resume", [])]


@pytest.mark.parametrize("command", ["cpt", "run"])
def test_allow_mismatch_only_takes_tokenizer_or_data(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "recipes/toy/scratch.yaml", "--allow-mismatch", "weights"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
