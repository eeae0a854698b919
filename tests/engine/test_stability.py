"""Stability engineering in a stage (seed 002 / seed 001 §5.3-5.4): gradient-norm spikes are detected
(||g|| > mu + k sigma over the previous window of accepted steps) and logged, skipped or rolled back to
the last good checkpoint; the KL to the stage's starting weights on replay tokens.

A spike is made by tests/engine/poisoned_cpt.py, which scales the loss of one step by 1e4, and the real detection and actions handle it. Each stage here is the tiny
recipe's ``pretrain`` (random init) for 16 steps of 512 tokens, one CPU thread: about a second.
"""

from __future__ import annotations

import copy
import math
import shutil
from pathlib import Path

import pytest

from tests.conftest import TINY_OVERRIDES
from tests.engine.poisoned_cpt import scale_loss

STEPS = 16
POISON = 8  # the step whose loss is multiplied by 1e4
STAGE_OVERRIDES = [
    "cpt.threads=1", f"cpt.stages.pretrain.tokens={STEPS * 512}", "cpt.gates.problems=0",
    "cpt.spike.window=4", "cpt.spike.k=30.0",
]


def stage_ctx(base_ctx, quickstart_raw, run_dir: Path, *overrides: str):
    """A prepared run directory for the tiny recipe, its world and tokenizer copied from ``base_ctx``."""
    from octo.config import parse_recipe
    from octo.context import RunContext

    run_dir.mkdir(parents=True)
    for name in ("world", "tokenizer"):
        shutil.copytree(base_ctx.run_dir / name, run_dir / name)
    shutil.copy2(base_ctx.run_dir / "manifest.json", run_dir / "manifest.json")
    recipe = parse_recipe(copy.deepcopy(quickstart_raw),
                          TINY_OVERRIDES + STAGE_OVERRIDES + list(overrides) + [f"run_dir={run_dir}"])
    ctx = RunContext(recipe)
    ctx.prepare()
    return ctx


def run_pretrain(ctx, monkeypatch=None, poison: dict[int, float] | None = None) -> list[dict]:
    """Run the pretrain stage (loss of step s scaled by poison[s]); its metrics rows."""
    from octo.cpt import trainer
    from octo.runio import read_jsonl

    if monkeypatch is not None and poison:
        scale_loss(lambda step: poison.get(step, 1.0), monkeypatch.setattr)
    trainer.run_stage(ctx, "pretrain")
    return read_jsonl(ctx.stage_dir("pretrain") / "metrics.jsonl")


def weights(ckpt: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(ckpt / "model.safetensors"))


def same_tensors(a: dict, b: dict) -> bool:
    import torch

    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def ckpt(ctx, step: int) -> Path:
    return ctx.stage_dir("pretrain") / "checkpoints" / f"step-{step}"


def no_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("time/step", "tokens_per_s")} for r in rows]


@pytest.fixture(scope="module")
def skip_run(tmp_path_factory, tiny_ctx, quickstart_raw):
    """action skip, a checkpoint after every step."""
    mp = pytest.MonkeyPatch()
    ctx = stage_ctx(tiny_ctx, quickstart_raw, tmp_path_factory.mktemp("skip") / "run", "cpt.spike.action=skip",
                    "cpt.stages.pretrain.save_every=1", "cpt.stages.pretrain.keep_last=20")
    try:
        rows = run_pretrain(ctx, mp, {POISON: 1.0e4})
    finally:
        mp.undo()
        ctx.release()
    return ctx, rows


def test_skip_drops_the_update_and_training_continues(skip_run):
    from octo.cpt.checkpoint import load_trainer_state

    ctx, rows = skip_run
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    assert [r["step"] for r in rows if r["spike"]] == [POISON]
    assert [r["step"] for r in rows if r["skipped"]] == [POISON]
    assert not any(r["rollback"] for r in rows)
    assert rows[POISON - 1]["grad_norm"] > 1000 * rows[POISON - 2]["grad_norm"]
    assert all(math.isfinite(r["loss"]) for r in rows[POISON:]) and rows[-1]["loss"] < rows[0]["loss"]
    # no optimizer step at the spike: weights and moments after it are those before it, but its data was used
    before, after = ckpt(ctx, POISON - 1), ckpt(ctx, POISON)
    assert same_tensors(weights(before), weights(after))
    s0, s1 = load_trainer_state(before), load_trainer_state(after)
    assert all(same_tensors(s0["optimizer"]["state"][i], s1["optimizer"]["state"][i]) for i in s0["optimizer"]["state"])
    assert s1["packer"]["mixture"] != s0["packer"]["mixture"]
    assert not same_tensors(weights(after), weights(ckpt(ctx, POISON + 1)))  # training goes on


def test_log_flags_the_spike_and_applies_the_update(tmp_path, tiny_ctx, quickstart_raw, monkeypatch, capsys):
    ctx = stage_ctx(tiny_ctx, quickstart_raw, tmp_path / "run", "cpt.spike.action=log")
    rows = run_pretrain(ctx, monkeypatch, {POISON: 1.0e4})
    ctx.release()
    assert [r["step"] for r in rows if r["spike"]] == [POISON]
    assert not any(r["skipped"] for r in rows)
    err = capsys.readouterr().err
    assert f"stage pretrain step {POISON}: gradient-norm spike" in err and "update applied" in err


@pytest.fixture(scope="module")
def rollback_run(tmp_path_factory, tiny_ctx, quickstart_raw):
    """action rollback, a checkpoint every 3 steps; the weights right after each rollback."""
    from octo.cpt import trainer

    mp = pytest.MonkeyPatch()
    seen = []
    real = trainer.rollback

    def spy(ctx, model, opt, path, procs):
        norms = real(ctx, model, opt, path, procs)
        seen.append((path, {k: v.detach().clone() for k, v in model.state_dict().items()},
                     copy.deepcopy(opt.state_dict())))
        return norms

    mp.setattr(trainer, "rollback", spy)
    ctx = stage_ctx(tiny_ctx, quickstart_raw, tmp_path_factory.mktemp("rollback") / "run",
                    "cpt.spike.action=rollback", "cpt.stages.pretrain.save_every=3",
                    "cpt.stages.pretrain.keep_last=10")
    try:
        rows = run_pretrain(ctx, mp, {POISON: 1.0e4})
    finally:
        mp.undo()
        ctx.release()
    return ctx, rows, seen


def test_rollback_reloads_the_last_checkpoint_and_moves_past_the_data(rollback_run, skip_run, capsys):
    from octo.cpt.checkpoint import load_trainer_state

    ctx, rows, seen = rollback_run
    last_ckpt = POISON - 1 - (POISON - 1) % 3  # 6: the newest checkpoint before the spike
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    assert [r["step"] for r in rows if r["rollback"]] == [POISON]
    assert rows[POISON - 1]["spike"] and rows[POISON - 1]["skipped"] and rows[POISON - 1]["rollback_to"] == last_ckpt
    assert all(math.isfinite(r["loss"]) for r in rows[POISON:])
    # the weights and AdamW moments right after the rollback are the checkpoint's
    [(path, model_after, opt_after)] = seen
    assert path == ckpt(ctx, last_ckpt)
    assert same_tensors(model_after, weights(path))
    saved = load_trainer_state(path)["optimizer"]
    assert opt_after["state"].keys() == saved["state"].keys()
    assert all(same_tensors(opt_after["state"][i], saved["state"][i]) for i in saved["state"])
    # the data window (steps 7-8) is not replayed: after step 9 the data stream is where the skip run's is
    state9 = load_trainer_state(ckpt(ctx, 9))
    assert state9["packer"] == load_trainer_state(ckpt(skip_run[0], 9))["packer"]
    assert state9["rollbacks"] == 1
    # and the update of step 7 is gone, so the model differs from the skip run's
    assert not same_tensors(weights(ckpt(ctx, 9)), weights(ckpt(skip_run[0], 9)))
    assert (ctx.stage_dir("pretrain") / "DONE.json").exists()


def test_rollback_then_kill_resumes_exactly(rollback_run, tmp_path, tiny_ctx, quickstart_raw, monkeypatch):
    """Interrupted right after the rollback (resume replays from step-6 and rolls back again) and again
    after the next checkpoint (resume from step-9, which records the rollback): same metrics and weights."""

    ref_ctx, ref_rows, _ = rollback_run
    ctx = stage_ctx(tiny_ctx, quickstart_raw, tmp_path / "run", "cpt.spike.action=rollback",
                    "cpt.stages.pretrain.save_every=3", "cpt.stages.pretrain.keep_last=10")
    for stop in (POISON + 1, POISON + 3, None):
        def scale(step, stop=stop):
            if step == stop:
                raise KeyboardInterrupt
            return 1.0e4 if step == POISON else 1.0

        scale_loss(scale, monkeypatch.setattr)
        if stop is None:
            rows = run_pretrain(ctx)
        else:
            with pytest.raises(KeyboardInterrupt):
                run_pretrain(ctx)
    ctx.release()
    assert no_timing(rows) == no_timing(ref_rows)
    assert same_tensors(weights(ckpt(ctx, STEPS)), weights(ckpt(ref_ctx, STEPS)))


def test_rollback_limit_and_no_checkpoint_yet(tmp_path, tiny_ctx, quickstart_raw, monkeypatch, capsys):
    from octo.errors import OctoError

    ctx = stage_ctx(tiny_ctx, quickstart_raw, tmp_path / "a", "cpt.spike.action=rollback",
                    "cpt.spike.max_rollbacks=0", "cpt.stages.pretrain.save_every=3")
    with pytest.raises(OctoError, match=f"spike at step {POISON} after 0 rollbacks .*max_rollbacks"):
        run_pretrain(ctx, monkeypatch, {POISON: 1.0e4})
    ctx.release()
    # before the first checkpoint there is nothing to roll back to: the update is skipped, said so
    ctx = stage_ctx(tiny_ctx, quickstart_raw, tmp_path / "b", "cpt.spike.action=rollback",
                    "cpt.stages.pretrain.save_every=12")
    rows = run_pretrain(ctx, monkeypatch, {POISON: 1.0e4})
    ctx.release()
    assert [(r["step"], r["skipped"], r["rollback"]) for r in rows if r["spike"]] == [(POISON, True, False)]
    assert "update skipped (no checkpoint to roll back to yet)" in capsys.readouterr().err


# --- KL to the reference on replay tokens ---------------------------------------------------------

def _replay_kl_to_init(ctx, model) -> float:
    """Mean per-token KL(p_theta0 || p_theta) over held-out web documents, theta0 = the stage's init."""
    import torch
    import torch.nn.functional as F

    from octo.model import build_toy_model

    ref = build_toy_model(ctx.recipe.model, ctx.tokenizer, ctx.recipe.seed).eval()
    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for doc in ctx.source("web").heldout[:16]:
            ids = torch.tensor([doc.ids[:128]])
            logp = F.log_softmax(model(ids).logits.float(), -1)
            logq = F.log_softmax(ref(ids).logits.float(), -1)
            total += float((logq.exp() * (logq - logp)).sum())
            n += ids.numel()
    return total / n


def test_kl_to_reference_on_replay_tokens(tmp_path, tiny_ctx, quickstart_raw):
    from octo.model import load_model

    runs = {}
    for name, extra in (("default", []), ("coef0", ["cpt.kl.sources=[web]"]),
                        ("coef1", ["cpt.kl.coef=1.0", "cpt.kl.sources=[web]"])):
        ctx = stage_ctx(tiny_ctx, quickstart_raw, tmp_path / name, *extra)
        runs[name] = (ctx, run_pretrain(ctx))
        ctx.release()
    default, coef0, coef1 = (runs[n][1] for n in ("default", "coef0", "coef1"))
    # coef 0: no reference model, no KL column, exactly the loss curve of a recipe without cpt.kl
    assert "kl" not in coef0[0] and [r["loss"] for r in coef0] == [r["loss"] for r in default]
    # coef > 0 tracks per-token sources without changing the data: step 1 (theta = theta0, KL = 0) has the
    # same loss; step 2 nearly (the KL gradient at theta0 is 0 but for rounding: p - q of equal logits)
    assert coef1[0]["kl"] == 0.0 and coef1[0]["loss"] == default[0]["loss"]
    assert coef1[1]["loss"] == pytest.approx(default[1]["loss"], rel=1e-6)
    assert all(r["kl"] > 0 for r in coef1[2:]) and all(math.isfinite(r["loss"]) for r in coef1)
    # and the model stays closer to its starting point on replay data
    kl = {n: _replay_kl_to_init(runs[n][0], load_model(ckpt(runs[n][0], STEPS))) for n in ("coef0", "coef1")}
    assert kl["coef1"] < 0.8 * kl["coef0"], kl


def test_stability_config_errors(quickstart_raw):
    from octo.config import parse_recipe
    from octo.errors import ConfigError

    cases = [
        (["cpt.kl.coef=0.5"], "cpt.kl.sources", "needs replay sources"),
        (["cpt.kl.coef=0.5", "cpt.kl.sources=[nope]"], "cpt.kl.sources[0]", "'nope' is not a source"),
        (["cpt.spike.action=undo"], "cpt.spike.action", "log"),
        (["cpt.spike.window=1"], "cpt.spike.window", ">= 2"),
        (["cpt.stages.stable.save_every=4", "cpt.stages.stable.keep_every=6"], "cpt.stages.stable.keep_every",
         "multiple of save_every=4"),
    ]
    for overrides, key, words in cases:
        with pytest.raises(ConfigError) as info:
            parse_recipe(copy.deepcopy(quickstart_raw), overrides)
        assert key in str(info.value) and words in str(info.value), str(info.value)
