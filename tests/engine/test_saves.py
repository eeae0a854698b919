"""Time-based saves (cpt.save_every_s, probe.save_every_s): an interrupt loses at most about that much work."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest

from tests.conftest import TINY_OVERRIDES


def _stage_checkpoints(tmp_path, quickstart_raw, extra):
    from octo.config import parse_recipe
    from octo.context import RunContext
    from octo.cpt.checkpoint import list_checkpoints
    from octo.cpt.trainer import run_stage

    recipe = parse_recipe(copy.deepcopy(quickstart_raw), TINY_OVERRIDES + [
        f"run_dir={tmp_path / 'run'}", "cpt.threads=1", "cpt.stages.pretrain.keep_last=10", *extra])
    ctx = RunContext(recipe)
    ctx.prepare()
    try:
        run_stage(ctx, "pretrain")
    finally:
        ctx.release()
    return [step for step, _ in list_checkpoints(ctx.stage_dir("pretrain") / "checkpoints")]


def test_a_stage_saves_by_the_clock_beside_its_steps(tmp_path, quickstart_raw):
    # pretrain: 4 steps, save_every 0 (only the last); a clock limit passed at every step saves every step
    assert _stage_checkpoints(tmp_path / "clock", quickstart_raw, ["cpt.save_every_s=1.0e-9"]) == [1, 2, 3, 4]
    assert _stage_checkpoints(tmp_path / "off", quickstart_raw, ["cpt.save_every_s=0"]) == [4]
    # a spike rollback goes to the newest checkpoint: the clock must not choose it
    assert _stage_checkpoints(tmp_path / "rollback", quickstart_raw,
                              ["cpt.save_every_s=1.0e-9", "cpt.spike.action=rollback"]) == [4]


@pytest.mark.parametrize("limit,due", [(1.0e-9, True), (0.0, False), (3600.0, False)])
def test_a_probe_asks_the_trainer_for_a_save_by_the_clock(tmp_path, limit, due):
    from octo.probe.callback import ProbeMetricsCallback

    cb = ProbeMetricsCallback(tmp_path, "stable.step-16", rollouts=None, reward=None, evaluate=None, start=None,
                              evaluates_at=lambda step: False, log_samples=0,
                              save_every_s=limit)
    control = SimpleNamespace(should_save=False)
    cb.on_step_end(SimpleNamespace(max_steps=40), SimpleNamespace(global_step=3), control)
    assert control.should_save is due
    cb.close()


def test_a_rerun_may_change_how_often_it_saves(tiny_recipe):
    import yaml

    from octo.config import dump_recipe
    from octo.reuse import recipe_diff

    old = yaml.safe_load(dump_recipe(tiny_recipe))
    new = copy.deepcopy(old)
    new["cpt"]["save_every_s"], new["probe"]["save_every_s"] = 5.0, 0.0
    assert recipe_diff(old, new) == []
    new["cpt"]["seq_len"] = 64
    assert recipe_diff(old, new) == ["cpt.seq_len"]


@pytest.mark.slow
def test_a_probe_saves_by_the_clock_beside_its_steps(tmp_path):
    """TRL honours the callback's request: with a clock limit passed at every step, a checkpoint after each step
    (the Trainer keeps the last two), where the step schedule alone saves none before the end."""
    from octo.config import load_recipe_dict, parse_recipe
    from octo.probe.grpo import ProbeSpec, run_grpo_probe
    from tests.conftest import QUICKSTART
    from tests.probe.test_probe import _prepare

    base = TINY_OVERRIDES + ["probe.steps=3", "probe.save_every=100", "probe.eval_every=100", "probe.eval_problems=2",
                             "probe.eval_samples=1", "probe.start_samples=0", "probe.max_len.stairs={0: 6}"]
    found = {}
    for name, limit in (("clock", "1.0e-9"), ("off", "0")):
        run_dir = tmp_path / name
        ckpt = _prepare(run_dir, base)
        recipe = parse_recipe(copy.deepcopy(load_recipe_dict(QUICKSTART)),
                              base + [f"run_dir={run_dir}", f"probe.save_every_s={limit}"])
        spec = ProbeSpec(checkpoint=ckpt, checkpoint_id="init.step-0", seed=0, control=None)
        run_grpo_probe(recipe, spec, run_dir / "probes" / spec.probe_id)
        found[name] = sorted(d.name for d in (run_dir / "probes" / spec.probe_id / "checkpoints").glob("checkpoint-*"))
    assert found["clock"] == ["checkpoint-2", "checkpoint-3"]
    assert "checkpoint-2" not in found["off"] and "checkpoint-1" not in found["off"]
