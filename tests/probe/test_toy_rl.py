"""RL visibly works in the toy world (docs/toyworld.md): a short GRPO probe from the shipped stable
checkpoint raises held-out sampled accuracy by more than the noise of an evaluation of that size (in world v2
it learns to prefer MegaMath-QA's few-steps form to the answer at once).

The checkpoint in tests/assets/toy-stable is the quickstart recipe's stable checkpoint, written by
``python benchmarks/toyworld_rl.py --ship tests/assets/toy-stable`` (an ``octo export``). It is bound to
the toy world and its tokenizer: when the world generator or the quickstart's world section changes,
the first test says so and how to regenerate it.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from tests.conftest import QUICKSTART, REPO

pytestmark = pytest.mark.slow

ASSET = REPO / "tests" / "assets" / "toy-stable"
STEPS = 20
# the quickstart's probe: one evaluation at step 0 and one at the end, on every held-out problem; without the
# step-0 sampling pass (the readiness's pass@k: tests/probe/test_probe.py covers it), which does not train
OVERRIDES = [f"probe.steps={STEPS}", f"probe.eval_every={STEPS}", f"probe.save_every={STEPS}", "probe.start_samples=0"]


def _env() -> dict:
    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    return env


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from octo.config import load_recipe_dict, parse_recipe
    from octo.context import RunContext

    run = tmp_path_factory.mktemp("toyrl") / "run"
    recipe = parse_recipe(load_recipe_dict(QUICKSTART), OVERRIDES + [f"run_dir={run}"])
    ctx = RunContext(recipe)
    ctx.prepare()
    ctx.release()
    return run, ctx.tokenizer_version


def test_shipped_checkpoint_belongs_to_the_current_toy_world(run_dir):
    _, tokenizer_hash = run_dir
    manifest = json.loads((ASSET / "manifest.json").read_text())
    assert manifest["tokenizer_hash"] == tokenizer_hash, (
        "tests/assets/toy-stable was trained on another toy world or tokenizer; regenerate it with "
        "python benchmarks/toyworld_rl.py --ship tests/assets/toy-stable")


def test_a_short_probe_from_the_stable_checkpoint_learns(run_dir):
    from octo.analysis.stats import mean_ci

    run, _ = run_dir
    out = run / "probes" / "toy-stable"
    cmd = [sys.executable, "-m", "octo.cli", "probe", str(ASSET), "--recipe", str(QUICKSTART), "--run-dir", str(run),
           "--out", str(out)]
    for o in OVERRIDES:
        cmd += ["--set", o]
    res = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    evals = [json.loads(line) for line in (out / "evals.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [0, STEPS]
    first, last = evals
    n, k = first["n"], first["k"]
    assert n >= 300 and k >= 2
    a, b = first["per_problem/sampled"], last["per_problem/sampled"]
    delta = [y - x for x, y in zip(a, b)]
    gain = sum(delta) / n
    # the noise of this evaluation size: two independent evaluations of one checkpoint at the start's
    # sampled accuracy differ by about sqrt(2) binomial standard errors over n x k samples
    p = first["acc/sampled"]
    noise = math.sqrt(2 * p * (1 - p) / (n * k))
    lo, hi = mean_ci(delta, n_boot=2000, seed=0)
    assert gain > 3 * noise and lo > 0, (first["acc/sampled"], last["acc/sampled"], noise, (lo, hi))
