"""benchmarks/full_run_evals.py: a full run evaluated at the recipe's steps against the same run evaluated every N
steps, side by side; the two must train alike, so the wall-time difference is the evaluations' cost. Also
benchmarks/probe_passes.py and the side-by-side launcher both use (benchmarks/side_by_side.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "benchmarks" / "full_run_evals.py"
PASSES = REPO / "benchmarks" / "probe_passes.py"
VALIDATION = REPO / "recipes" / "toy" / "validation.yaml"


def _bench(*args, timeout=600):
    return subprocess.run([sys.executable, str(BENCH), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def _checkpoint(run_dir: Path) -> Path:
    """A fresh tiny model of the reduced validation recipe (its world and tokenizer), saved as a checkpoint."""
    from octo.context import random_init_checkpoint
    from octo.validate import validation_recipe

    recipe = validation_recipe(str(VALIDATION), [f"run_dir={run_dir}"], reduced=True)
    return random_init_checkpoint(recipe, run_dir / "init-ckpt")


@pytest.mark.multiproc
def test_the_recipe_evaluates_less_and_trains_the_same(tmp_path):
    ckpt = _checkpoint(tmp_path / "run")
    # evaluated every 2 steps against the recipe's steps 5 and the ends: more evaluations, the same training
    sets = ["validation.full_steps=10", "validation.max_probe_ratio=0.2", "validation.full_eval_steps=[5]",
            "validation.stair_vs_fixed.early_steps=5", "validation.stair_vs_fixed.steps=10",
            "validation.full_save_every=10", "probe.eval_problems=8"]
    res = _bench(ckpt, "--reduced", "--every", "2", "--out", tmp_path / "out", *(a for s in sets for a in ("--set", s)))
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout)
    assert out["baseline"]["eval_steps"] == [0, 2, 4, 6, 8, 10] and out["recipe"]["eval_steps"] == [0, 5, 10]
    assert out["shared_eval_steps"] == [0, 10]
    assert out["same_training_metrics"] is True and out["same_evaluations_at_shared_steps"] is True
    assert isinstance(out["saved_s"], float) and out["seconds_per_evaluation"] is not None


@pytest.mark.parametrize("args, says", [
    (["nosuch-dir"], "is not a checkpoint directory"),
    ([REPO, "--every", "0"], "--every must be at least 1"),
])
def test_bad_arguments_are_one_line_and_exit_2(args, says):
    res = _bench(*args)
    assert res.returncode == 2 and says in res.stderr and "Traceback" not in res.stderr


def test_a_bad_recipe_value_is_one_line_and_exit_2(tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text("{}")
    res = _bench(ckpt, "--set", "validation.full_eval_steps=[500]", "--out", tmp_path / "out")
    assert res.returncode == 2 and "steps must lie in 1..120" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.multiproc
def test_probe_passes_runs_one_pass_and_grouped_passes_side_by_side(tmp_path):
    ckpt = _checkpoint(tmp_path / "run")
    dry = subprocess.run([sys.executable, "-m", "octo.cli", "validate", str(VALIDATION), "--reduced", "--dry-run"],
                         capture_output=True, text=True, cwd=REPO)
    assert dry.returncode == 0, dry.stderr
    recipe = tmp_path / "reduced.yaml"
    recipe.write_text(dry.stdout)
    res = subprocess.run([sys.executable, str(PASSES), str(ckpt), "--recipe", str(recipe), "--steps", "2",
                          "--stairs", "0:12", "--eval-problems", "4", "--micro", "1", "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=600, cwd=REPO)
    assert res.returncode == 0, res.stderr[-3000:]
    (run,) = json.loads(res.stdout)["runs"]
    # both probes start from the same rollouts: step 1 generates alike, its loss agrees up to float rounding
    assert run["steps"] == 2 and run["steps_with_equal_rollout_lengths"] >= 1
    assert run["step1_rel_diff"]["len/mean"] == 0 and run["step1_rel_diff"]["loss"] < 1e-3
    assert run["one_pass"]["wall_s"] > 0 and run["passes_of_1"]["wall_s"] > 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"{tmp_path.name}-init-ckpt-m{m}" for m in (0, 1)]


def test_a_failed_side_by_side_run_stops_the_benchmark_with_its_log(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    from side_by_side import run_side_by_side

    out = tmp_path / "bad"
    out.mkdir()
    with pytest.raises(SystemExit, match=r"the full run 'bad' failed; see .*bad/log"):
        run_side_by_side({"bad": (tmp_path / "no-such-checkpoint", out, VALIDATION, 0, [])}, "full run")
    assert (out / "log").read_text().strip()   # the run's own one-line reason is in its log
