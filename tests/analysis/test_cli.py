"""octo score / report / compare: exit codes, one-line errors, output, --set and --dry-run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from octo.cli import main
from tests.analysis.synth import RunBuilder


@pytest.fixture
def small_run(tmp_path):
    b = RunBuilder(tmp_path / "run", analysis={"bootstrap": 200})
    b.probe("decay-long.step-8", "collapse", rng_seed=1, steps=40, eval_every=10, n=90, k=2,
            heldout=lambda t: 0.5 if t <= 20 else 0.1)
    b.probe("decay-short.step-8", "clean", rng_seed=2, steps=40, eval_every=10, n=90, k=2)
    return tmp_path / "run"


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("octo: error:"), err
    return lines[0]


def test_score_prints_the_ranking_and_writes_scores(small_run, capsys):
    assert main(["score", str(small_run)]) == 0
    out = capsys.readouterr().out
    assert out.index("decay-short.step-8") < out.index("decay-long.step-8")
    assert "recommended checkpoint: decay-short.step-8" in out
    scores = json.loads((small_run / "scores.json").read_text())
    assert scores["ranking"] == ["decay-short.step-8", "decay-long.step-8"]
    assert [e["detector"] for e in scores["checkpoints"]["decay-long.step-8"]["events"]] == ["collapse"]


def test_score_json_output(small_run, capsys):
    assert main(["score", str(small_run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["recommended"] == "decay-short.step-8"


@pytest.mark.parametrize("make,fragment", [
    (lambda p: None, "does not exist"),
    (lambda p: p.mkdir(), "has no probes/ directory"),
    (lambda p: (p / "probes" / "a.step-1").mkdir(parents=True), "no probe with a held-out evaluation"),
])
@pytest.mark.parametrize("command", ["score", "report"])
def test_missing_or_empty_run_dir_is_exit_2(tmp_path, capsys, make, fragment, command):
    run = tmp_path / "run"
    make(run)
    assert main([command, str(run)]) == 2
    assert fragment in _one_line_error(capsys)
    assert not (run / "scores.json").exists()


def test_exit_code_from_the_console(tmp_path):
    res = subprocess.run([sys.executable, "-m", "octo.cli", "score", str(tmp_path / "nope")], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 2
    assert res.stderr.startswith("octo: error: run directory") and "Traceback" not in res.stderr


def test_report_prints_the_path_of_index_html(small_run, capsys):
    assert main(["report", str(small_run)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [str(small_run / "report" / "index.html")]
    assert (small_run / "report" / "index.html").exists() and (small_run / "scores.json").exists()


def test_set_overrides_and_dry_run(small_run, capsys):
    assert main(["score", str(small_run), "--dry-run", "--set", "analysis.weights.learning=3",
                 "--set", "analysis.collapse_drawdown=0.9"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)["analysis"]
    assert cfg["weights"]["learning"] == 3.0 and cfg["weights"]["start"] == 1.0
    assert cfg["collapse_drawdown"] == 0.9 and cfg["bootstrap"] == 200       # the rest from the recipe
    assert not (small_run / "scores.json").exists()
    assert main(["score", str(small_run), "--set", "analysis.collapse_drawdown=0.9"]) == 0
    scores = json.loads((small_run / "scores.json").read_text())
    assert scores["checkpoints"]["decay-long.step-8"]["events"] == []


@pytest.mark.parametrize("override,fragment", [
    ("analysis.bootstrap=5", "analysis.bootstrap"),
    ("analysis.nope=1", "analysis.nope"),
    ("probe.steps=3", "only analysis.<key>=<value> overrides"),
    ("analysis.weights.learning=x", "analysis.weights.learning"),
])
def test_bad_overrides_are_exit_2(small_run, capsys, override, fragment):
    assert main(["score", str(small_run), "--set", override]) == 2
    assert fragment in _one_line_error(capsys)


def test_compare_prints_a_table_and_writes_markdown_json_and_overlaid_plots(small_run, tmp_path, capsys):
    out_dir = tmp_path / "cmp"
    assert main(["compare", str(small_run), "--out", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert "decay-short.step-8 (baseline)" in out and "Δ vs decay-short.step-8" in out
    assert json.loads((out_dir / "compare.json").read_text())["baseline"] == "decay-short.step-8"
    md = (out_dir / "compare.md").read_text()
    assert md.startswith("# octo compare") and "## Differences from decay-short.step-8" in md
    for name in ("readiness", "acc", "length", "clip", "reward", "entropy", "kl", "repetition"):
        assert (out_dir / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
        assert f"({name}.png)" in md
    assert len(list(out_dir.iterdir())) == 10


def test_compare_markdown_and_baseline(small_run, capsys):
    assert main(["compare", str(small_run / "probes" / "decay-short.step-8"),
                 str(small_run / "probes" / "decay-long.step-8"), "--markdown",
                 "--baseline", "decay-long.step-8"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# octo compare") and "| entry |" in out
    assert "## Differences from decay-long.step-8" in out


@pytest.mark.parametrize("args,fragment", [
    (["compare", "{tmp}/nope"], "does not exist"),
    (["compare", "{tmp}"], "neither a run directory"),
    (["compare", "{run}", "--baseline", "zzz"], "--baseline 'zzz' is not an entry"),
])
def test_compare_errors_are_exit_2(small_run, tmp_path, capsys, args, fragment):
    args = [a.format(tmp=tmp_path / "empty", run=small_run) for a in args]
    (tmp_path / "empty").mkdir()
    assert main(args) == 2
    assert fragment in _one_line_error(capsys)


def test_no_seed_citation_in_any_command_help():
    """Help names the concept ("checkpoint version binding", "stability gap"), never "seed 00X" (issue 21)."""
    import argparse
    import re

    from octo.cli import build_parser

    def helps(parser):
        yield parser.format_help()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from helps(sub)

    texts = list(helps(build_parser()))
    assert len(texts) > 10 and any("--allow-mismatch" in t for t in texts)
    assert not [t for t in texts if re.search(r"seeds? 00\d", t)]
