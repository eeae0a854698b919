"""Checkpoints: HF-loadable, atomic, verified against the manifest, pruned."""

from __future__ import annotations

import pytest

from octo.cpt.checkpoint import (latest_good_checkpoint, list_checkpoints, load_trainer_state, prune_checkpoints,
                                 save_checkpoint, verify_checkpoint)


@pytest.fixture
def model(tiny_ctx):
    from octo.model import build_toy_model

    return build_toy_model(tiny_ctx.recipe.model, tiny_ctx.tokenizer, seed=0)


def _save(root, step, model, tok):
    import torch

    return save_checkpoint(root / f"step-{step}", model=model, tokenizer=tok,
                           trainer_state={"step": step, "t": torch.arange(3)}, manifest={"step": step})


def test_checkpoint_loads_with_transformers_and_verifies(tmp_path, model, tiny_ctx):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ck = _save(tmp_path, 3, model, tiny_ctx.tokenizer)
    assert verify_checkpoint(ck) is None
    loaded = AutoModelForCausalLM.from_pretrained(ck)
    assert not loaded.config.tie_word_embeddings
    assert loaded.config.head_dim >= 32
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model.eval()(ids).logits)
    assert AutoTokenizer.from_pretrained(ck).eos_token == tiny_ctx.tokenizer.eos_token
    assert load_trainer_state(ck)["step"] == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


def test_damaged_checkpoint_is_named_and_skipped(tmp_path, model, tiny_ctx):
    _save(tmp_path, 1, model, tiny_ctx.tokenizer)
    ck2 = _save(tmp_path, 2, model, tiny_ctx.tokenizer)
    weights = ck2 / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    problem = verify_checkpoint(ck2)
    assert "model.safetensors" in problem and "truncated" in problem
    logged = []
    step, path = latest_good_checkpoint(tmp_path, log=logged.append)
    assert step == 1 and "skipping damaged checkpoint" in logged[0]


def test_incomplete_temp_dir_is_not_a_checkpoint(tmp_path, model, tiny_ctx):
    _save(tmp_path, 1, model, tiny_ctx.tokenizer)
    (tmp_path / ".tmp-step-2-999").mkdir()          # a writer killed mid-write
    (tmp_path / "step-3").mkdir()                   # no manifest: never renamed into place by octo
    assert [s for s, _ in list_checkpoints(tmp_path)] == [1, 3]
    assert latest_good_checkpoint(tmp_path, log=lambda m: None)[0] == 1


def test_prune_keeps_last_and_listed(tmp_path, model, tiny_ctx):
    for s in (1, 2, 3, 4):
        _save(tmp_path, s, model, tiny_ctx.tokenizer)
    prune_checkpoints(tmp_path, keep_last=2, keep={1})
    assert [s for s, _ in list_checkpoints(tmp_path)] == [1, 3, 4]


def test_prune_keep_every_exact(tmp_path, model, tiny_ctx):
    for s in range(1, 11):
        _save(tmp_path, s, model, tiny_ctx.tokenizer)
    prune_checkpoints(tmp_path, keep_last=2, keep_every=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-10", "step-3", "step-6", "step-9"]


@pytest.mark.parametrize("steps,save_every,keep_last,keep_every,expected", [
    (14, 2, 2, 6, ["step-12", "step-14", "step-6"]),   # multiples of 6 forever, the last two
    (13, 4, 1, 8, ["step-13", "step-8"]),              # the final checkpoint is kept though not a multiple
    (13, 4, 1, 0, ["step-13"]),                        # keep_every off: the final one only
])
def test_stage_retention_directory_list(tmp_path, tiny_ctx, quickstart_raw, steps, save_every, keep_last, keep_every,
                                        expected):
    from tests.engine.test_stability import run_pretrain, stage_ctx

    ctx = stage_ctx(tiny_ctx, quickstart_raw, tmp_path / "run", f"cpt.stages.pretrain.tokens={steps * 512}",
                    f"cpt.stages.pretrain.save_every={save_every}", f"cpt.stages.pretrain.keep_last={keep_last}",
                    f"cpt.stages.pretrain.keep_every={keep_every}")
    run_pretrain(ctx)
    ctx.release()
    assert sorted(p.name for p in (ctx.stage_dir("pretrain") / "checkpoints").iterdir()) == expected
