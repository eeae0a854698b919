"""``octo data preview``: shares and samples drawn as the trainer draws them, without disturbing a run."""

from __future__ import annotations

import re

import pytest

from octo.cli import main
from tests.conftest import QUICKSTART, TINY_OVERRIDES


def _args(run_dir, *extra):
    sets = [a for o in TINY_OVERRIDES for a in ("--set", o)]
    return ["data", "preview", str(QUICKSTART), *sets, "--run-dir", str(run_dir), *extra]


def _table(out: str) -> dict[str, list[str]]:
    """source -> its row of the shares table."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("source "))
    rows = {}
    for line in lines[start + 1:]:
        if not line.strip():
            break
        cells = line.split()
        rows[cells[0]] = cells[1:]
    return rows


def _snapshot(root):
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def test_fresh_run_dir_previews_in_a_scratch_copy_and_writes_nothing(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(_args(run_dir, "--stage", "decay-long", "--tokens", "60000", "--samples", "3",
                      "--set", "cpt.stages.decay-long.tokens=100000")) == 0
    out, err = capsys.readouterr()
    assert not run_dir.exists() and "scratch copy" in err
    table = _table(out)
    assert set(table) == {"web", "if", "mathweb", "long-openr1", "long-am"}
    # a source that repeats a held-out document leaves its training copies out, and says how many
    left_out = {m[0]: int(m[1]) for m in re.findall(r"source '([\w-]+)': left out (\d+) training document", err)}
    drawn = 0
    for name, (target, realized, tokens, docs, train, held, train_tokens, epochs) in table.items():
        assert abs(float(realized) - float(target)) < 0.01, name
        assert int(docs.replace(",", "")) > 0 and held == "100"
        assert int(train) + left_out.get(name, 0) == 100, name
        drawn += int(tokens.replace(",", ""))
        assert float(epochs) == pytest.approx(int(tokens.replace(",", "")) / int(train_tokens.replace(",", "")),
                                              abs=0.006)
    assert drawn >= 60000
    assert "=== sequence 1 of" in out and "--- document 1 · " in out and "<|endoftext|>" in out
    assert "=== sequence 3 of" in out and "=== sequence 4 of" not in out
    assert "continues in the next sequence" in out and "continues from the previous sequence" in out


def test_prepared_run_is_read_without_the_lock_and_matches_a_scratch_copy(tiny_ctx, tmp_path, monkeypatch,
                                                                          capsys):
    from octo.runlock import RunLock

    def refuse(*_a, **_k):
        raise AssertionError("octo data preview must not take the run directory's lock")

    before = _snapshot(tiny_ctx.run_dir)
    monkeypatch.setattr(RunLock, "acquire_dir", classmethod(refuse))
    assert main(_args(tiny_ctx.run_dir, "--stage", "stable", "--tokens", "6000", "--samples", "0")) == 0
    out, _ = capsys.readouterr()
    assert "(read only, no lock taken)" in out
    assert _snapshot(tiny_ctx.run_dir) == before
    monkeypatch.undo()
    # a scratch copy (world and tokenizer made again from the seed) draws exactly the same
    assert main(_args(tmp_path / "other", "--stage", "stable", "--tokens", "6000", "--samples", "0")) == 0
    scratch, _ = capsys.readouterr()
    assert _table(scratch) == _table(out) and _table(out)


def test_default_stage_unknown_stage_and_budget_cap(tiny_ctx, capsys):
    assert main(_args(tiny_ctx.run_dir, "--samples", "0")) == 0
    out, _ = capsys.readouterr()
    assert out.startswith("stage 'pretrain' of recipe 'scratch'")  # first in dependency order
    # the stage budget (2048 tokens in the tiny recipe) caps --tokens
    assert re.search(r"drew [\d,]+ tokens \(16 sequences of 128\)", out)
    assert main(_args(tiny_ctx.run_dir, "--stage", "decay-nope")) == 2
    _, err = capsys.readouterr()
    assert err.strip() == ("octo: error: --stage decay-nope: no such stage; the recipe's stages are pretrain, "
                           "stable, decay-long, decay-short, decay-hybrid")


def test_mask_prompt_marks_the_loss_masked_prompt(tiny_ctx, capsys):
    assert main(_args(tiny_ctx.run_dir, "--stage", "decay-short", "--tokens", "3000", "--samples", "3",
                      "--max-chars", "0", "--set", "cpt.mask_prompt=true")) == 0
    out, err = capsys.readouterr()
    assert "different recipe" in err and "mask_prompt: on" in out  # a --set variant is previewed in scratch
    assert re.search(r"«[^»]*User:[^»]*\nAssistant:(<think>\n)?»", out)
    assert main(_args(tiny_ctx.run_dir, "--stage", "decay-short", "--tokens", "3000", "--samples", "3")) == 0
    plain, _ = capsys.readouterr()
    assert "«" not in plain and "mask_prompt: off" in plain
