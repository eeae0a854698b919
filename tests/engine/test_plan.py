"""octo.plan: the parts of a run in order with their status, budget and estimate; the run's ETA; --dry-run."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from octo import progress
from octo.context import RunContext
from octo.plan import RunPlan, Timing, dry_run, measure
from tests.conftest import QUICKSTART, TINY_OVERRIDES

TIMING = Timing(train_token_s=1e-4, decode_token_s=1e-3, batch=4, measured_s=0.5)


@pytest.fixture(autouse=True)
def _clean():
    yield
    progress.set_part(None)
    progress.set_run_eta(None)


def test_the_parts_in_order_with_budgets_and_estimates(tiny_recipe):
    plan = RunPlan.build(RunContext(tiny_recipe), timing=TIMING)
    assert [(p.kind, p.name, p.label) for p in plan.parts] == [
        ("stage", "pretrain", "stage 1/5"), ("stage", "stable", "stage 2/5"), ("stage", "decay-long", "stage 3/5"),
        ("stage", "decay-short", "stage 4/5"), ("stage", "decay-hybrid", "stage 5/5"),
        ("probe", "stable.step-16", "probe 1/4"), ("probe", "decay-long.step-2", "probe 2/4"),
        ("probe", "decay-short.step-2", "probe 3/4"), ("probe", "decay-hybrid.step-2", "probe 4/4")]
    assert {p.status for p in plan.parts} == {"run"}
    stable = plan.parts[1]
    assert stable.steps == 16 and stable.budget == "16 steps x 512 tokens (8,192 tokens)"
    assert plan.parts[5].budget == "2 steps x 2 prompts x 2 generations, max length 16"
    # the stable stage trains 8 x more tokens than a decay branch: its estimate (training + one gate) is larger
    assert stable.estimate_s > plan.parts[2].estimate_s > 0
    assert plan.eta() == pytest.approx(sum(p.estimate_s for p in plan.parts))
    text = plan.describe()
    assert "  stage 2/5 stable: run; 16 steps x 512 tokens (8,192 tokens), estimate " in text
    assert "estimated time: " in text and "random weights" in text


def test_the_eta_scales_what_is_left_by_actual_over_estimated(tiny_recipe):
    plan = RunPlan.build(RunContext(tiny_recipe), timing=TIMING)
    stages = [p for p in plan.parts if p.kind == "stage"]
    probes = [p for p in plan.parts if p.kind == "probe"]
    with plan.part("stage", "pretrain") as p:
        assert p is stages[0]
    stages[0].actual_s = 2 * stages[0].estimate_s             # the stages run at half the estimated speed
    left_stages = sum(p.estimate_s for p in stages[1:])
    left_probes = sum(p.estimate_s for p in probes)
    # the probes borrow the stages' ratio until one of them has run
    assert plan.eta() == pytest.approx(2 * left_stages + 2 * left_probes)
    for p in stages[1:]:
        p.actual_s = p.estimate_s * 2
    probes[0].actual_s = probes[0].estimate_s / 2              # the probes run twice as fast as estimated
    assert plan.eta() == pytest.approx(sum(p.estimate_s for p in probes[1:]) / 2)
    plan.jobs = 3                                              # three probes at once
    assert plan.eta() == pytest.approx(sum(p.estimate_s for p in probes[1:]) / 2 / 3)


def test_a_part_in_progress_says_its_label_and_the_eta(tiny_recipe, capsys):
    plan = RunPlan.build(RunContext(tiny_recipe), timing=TIMING)
    plan.install()
    with plan.part("probe", "decay-long.step-2"):
        progress.info("probe decay-long.step-2: start")
    plan.uninstall()
    err = capsys.readouterr().err
    assert "[probe 2/4] probe decay-long.step-2: start; run ETA " in err
    ctx = plan.worker_context("probe", "decay-short.step-2")
    assert ctx["part"] == "probe 3/4" and ctx["deadline"] > time.time()


def test_statuses_from_the_run_directory(tiny_recipe):
    from octo.cpt.trainer import run_stage

    ctx = RunContext(tiny_recipe)
    ctx.prepare()
    try:
        run_stage(ctx, "pretrain")
    finally:
        ctx.release()
    (ctx.stage_dir("pretrain") / "DONE.json").rename(ctx.stage_dir("pretrain") / "DONE.moved")
    probe = ctx.run_dir / "probes" / "decay-long.step-2"
    probe.mkdir(parents=True)
    (probe / "DONE.json").write_text(json.dumps({"probe_id": "decay-long.step-2", "steps": 2}))
    plan = RunPlan.build(RunContext(tiny_recipe), timing=TIMING)
    pretrain = plan.parts[0]
    assert (pretrain.status, pretrain.start_step) == ("resume", 4)       # its final checkpoint, no DONE.json
    assert pretrain.estimate_s < plan.parts[1].estimate_s
    (ctx.stage_dir("pretrain") / "DONE.moved").rename(ctx.stage_dir("pretrain") / "DONE.json")
    plan = RunPlan.build(RunContext(tiny_recipe), timing=TIMING)
    assert plan.parts[0].status == "done" and plan.parts[0].estimate_s == 0
    assert [p.status for p in plan.parts if p.kind == "probe"] == ["run", "done", "run", "run"]
    text = dry_run(tiny_recipe)
    assert "stage 1/5 pretrain: skip (already done)" in text and "probe 2/4 decay-long.step-2: skip" in text
    assert f"run directory: {ctx.run_dir.resolve()} (exists" in text


def test_the_timing_is_of_the_recipes_model(tiny_recipe):
    timing, note = measure(tiny_recipe)
    assert note == "" and timing.train_token_s > 0 and timing.decode_token_s > 0
    assert timing.batch == 4                          # probe.prompts_per_step x num_generations, under batch_size


def test_a_model_too_large_to_time_gives_no_estimate(tiny_recipe):
    import dataclasses

    big = dataclasses.replace(tiny_recipe, model=dataclasses.replace(tiny_recipe.model, hidden_size=8192,
                                                                    num_heads=64, num_kv_heads=64,
                                                                    intermediate_size=32768, num_layers=40))
    plan = RunPlan.build(RunContext(big))
    assert plan.timing is None and plan.eta() is None and all(p.estimate_s is None for p in plan.parts)
    assert "estimated time: unknown (a " in plan.describe()


def _octo(*args):
    return subprocess.run([sys.executable, "-m", "octo.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_dry_run_says_the_plan_and_writes_nothing(tmp_path):
    run_dir = tmp_path / "never"
    sets = [a for o in TINY_OVERRIDES for a in ("--set", o)]
    res = _octo("run", QUICKSTART, "--dry-run", "--run-dir", run_dir, *sets)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert f"run directory: {run_dir} (new)" in out
    for line in ("stage 1/5 pretrain: run; 4 steps x 512 tokens (2,048 tokens), estimate ",
                 "stage 5/5 decay-hybrid: run; 2 steps x 512 tokens",
                 "probe 4/4 decay-hybrid.step-2: run; 2 steps x 2 prompts x 2 generations, max length 16, estimate ",
                 "estimated time: "):
        assert line in out, out
    assert "cpt:" not in out                          # the recipe's YAML is behind --print-recipe
    assert not run_dir.exists()
