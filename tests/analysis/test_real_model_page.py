"""benchmarks/real_model_rl.py's reading of a run (the paired held-out gain per probe, the page section) and the
shared section writer (benchmarks/docsection.py), on synthetic probes: the real experiment needs the 0.5B model
and about an hour of two cores, so it is a benchmark, not a test."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from tests.analysis.synth import RunBuilder
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import real_model_rl  # noqa: E402
from docsection import write_section  # noqa: E402


def test_section_writer_replaces_only_between_its_markers(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("# t\n\nhand\n\n<!-- x: begin -->\n\nold\n\n<!-- x: end -->\n\ntail\n")
    write_section(page, "x", "new\nlines")
    assert page.read_text() == "# t\n\nhand\n\n<!-- x: begin -->\n\nnew\nlines\n\n<!-- x: end -->\n\ntail\n"
    with pytest.raises(SystemExit, match="no '<!-- y: begin -->'"):
        write_section(page, "y", "z")
    with pytest.raises(SystemExit, match="missing.md is not a file"):
        write_section(tmp_path / "missing.md", "x", "z")
    # the benchmark checks its page before it runs anything
    with pytest.raises(SystemExit, match="missing.md is not a file"):
        real_model_rl.main(["--run-dir", str(tmp_path / "run"), "--doc", str(tmp_path / "missing.md")])
    assert not (tmp_path / "run").exists()


def test_gain_is_paired_over_problems_and_the_page_names_the_best_probe(tmp_path):
    b = RunBuilder(tmp_path / "run", analysis={"bootstrap": 200})
    learns = b.probe("decay.step-8", "clean", rng_seed=1, steps=12, eval_every=12, n=150)
    flat = b.probe("base.step-0", "weak", rng_seed=2, steps=12, eval_every=12, n=150)
    gains = {d.name: real_model_rl.probe_gain(d) for d in (learns, flat)}
    for d in (learns, flat):
        rows = [json.loads(x) for x in (d / "evals.jsonl").read_text().splitlines()]
        g, s = (np.array([r["per_problem/greedy"] for r in rows], float),
                np.array([r["per_problem/sampled"] for r in rows], float))
        got = gains[d.name]
        assert got["steps"] == [rows[0]["step"], rows[-1]["step"]] and got["problems"] == 150
        assert got["greedy"]["gain"] == pytest.approx(g[-1].mean() - g[0].mean())
        assert got["combined"]["gain"] == pytest.approx(((g[-1] + s[-1]) - (g[0] + s[0])).mean() / 2)
        lo, hi = got["combined"]["ci"]
        assert lo < got["combined"]["gain"] < hi
    assert gains["decay.step-8"]["combined"]["gain"] > gains["base.step-0"]["combined"]["gain"]
    from octo.analysis import score_run

    score_run(tmp_path / "run")
    result = {"date": "2026-12-04", "load_avg": 1.0, "probes": gains, "best": "decay.step-8",
              "readiness": real_model_rl.readiness(tmp_path / "run"), "times": {"import the model": None, "decay stage + gates": 300.0}}
    text = real_model_rl.markdown(result, "python benchmarks/real_model_rl.py")
    g = gains["decay.step-8"]["combined"]
    line = f"gain: {100 * g['gain']:+.1f} points [{100 * g['ci'][0]:+.1f}, {100 * g['ci'][1]:+.1f}]"
    assert line in text.splitlines()
    assert "| readiness |" in text and "| start/pass@k |" in text and "| decay stage + gates | 5.0 min |" in text
    assert "| import the model | done before, not timed here |" in text and "| **all timed parts** | **5.0 min** |" in text
    # a probe with one evaluation has no gain to report: one sentence, not a traceback
    (flat / "evals.jsonl").write_text((flat / "evals.jsonl").read_text().splitlines()[0] + "\n")
    with pytest.raises(SystemExit, match="fewer than two held-out evaluations"):
        real_model_rl.probe_gain(flat)
