"""What a stage starts from and what its full-state checkpoints hold beside the weights (seed 003's S).

``trainer_state.pt`` = {optimizer, packer, rng, step, tokens, inherited_lr, norms, rollbacks}: AdamW
moments, the data sampler's position, the torch and Python RNG states, and the spike guard's window.
"""

from __future__ import annotations

import random
from pathlib import Path

from octo.config import stage_seed
from octo.errors import OctoError


def rng_state() -> dict:
    import torch

    return {"torch": torch.get_rng_state(), "python": random.getstate()}


def set_rng_state(state: dict) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def param_groups(model, weight_decay: float) -> list[dict]:
    """AdamW groups: no weight decay on biases and norms."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "norm" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def load_optimizer(opt, state: dict, cfg, procs, model) -> None:
    """Restore AdamW moments and step counts; the recipe's betas and eps win over the restored ones.

    ``state`` is a full (single-process format) state dict; ``procs`` loads it (FSDP: every rank reads it
    whole and keeps its shard of the running ``model``'s parameters)."""
    procs.load_optimizer(model, opt, state)
    for group in opt.param_groups:
        group["betas"], group["eps"] = tuple(cfg.optimizer.betas), cfg.optimizer.eps


def init_model(ctx, stage: str):
    """(model, optimizer state or None, peak-lr fallback, init description) of a stage that starts."""
    from octo.assets import resolve
    from octo.cpt.checkpoint import load_trainer_state
    from octo.model import build_toy_model, load_model

    recipe = ctx.recipe
    scfg = recipe.cpt.stages[stage]
    if scfg.init == "random":
        return build_toy_model(recipe.model, ctx.tokenizer, stage_seed(recipe, stage)), None, None, "random init"
    if scfg.init == "model":
        return load_model(resolve(recipe.model.init), attn_implementation=recipe.model.attn_implementation), \
            None, None, f"weights of {recipe.model.init}"
    done = ctx.stage_done(scfg.init)
    if done is None:
        raise OctoError(f"stage '{stage}' starts from stage '{scfg.init}', which has not finished; "
                        f"run it first (octo cpt RECIPE --stage {scfg.init})")
    ckpt = ctx.run_dir / done["final_checkpoint"]
    model = load_model(ckpt, attn_implementation=recipe.model.attn_implementation)
    opt_state = load_trainer_state(ckpt)["optimizer"] if scfg.restore == "full" else None
    return model, opt_state, done["final_lr"], f"{scfg.restore} restore of {done['final_checkpoint']}"


def init_checkpoint(ctx, stage: str) -> Path | None:
    """The directory a fresh stage restores from (None for a random init)."""
    scfg = ctx.recipe.cpt.stages[stage]
    if scfg.init == "random":
        return None
    if scfg.init == "model":
        from octo.assets import resolve

        return resolve(ctx.recipe.model.init)
    return ctx.run_dir / ctx.stage_done(scfg.init)["final_checkpoint"]


def rollback(ctx, model, opt, ckpt: Path, procs) -> list[float]:
    """Reload weights, AdamW moments and RNG states of a full-state checkpoint into the running model and
    optimizer (seed 001 §5.4 rollback); returns the checkpoint's gradient-norm window. The packer is left
    where it is: the data since the checkpoint is not replayed."""
    from octo.cpt.checkpoint import load_trainer_state
    from octo.model import load_model

    loaded = load_model(ckpt, attn_implementation=ctx.recipe.model.attn_implementation)
    procs.load_weights(model, loaded.state_dict())
    del loaded
    state = load_trainer_state(ckpt)
    load_optimizer(opt, state["optimizer"], ctx.recipe.cpt, procs, model)
    set_rng_state(state["rng"])
    return [float(x) for x in state["norms"]]


def save_stage_checkpoint(ctx, stage: str, model, state: dict, lr: float) -> None:
    """Checkpoint ``step-<state['step']>`` with its manifest (the versions it is bound to: seed 003), then prune."""
    from octo.cpt.binding import recorded_overrides
    from octo.cpt.checkpoint import prune_checkpoints, save_checkpoint

    scfg = ctx.recipe.cpt.stages[stage]
    step = state["step"]
    ckpt_root = ctx.stage_dir(stage) / "checkpoints"
    manifest = {
        "stage": stage, "step": step, "tokens": state["tokens"], "lr": lr, "restore_mode": "full",
        "init": scfg.init, "init_restore": scfg.restore, "seed": stage_seed(ctx.recipe, stage),
        # the versions this checkpoint is bound to are those read now, not the run's first
        "tokenizer_hash": ctx.tokenizer_version,
        "data_fingerprints": {n: ctx.source(n).fingerprint for n in scfg.mixture},
        "mixture": scfg.mixture,
    }
    overrides = recorded_overrides(ctx, stage)
    if overrides:
        manifest["restore_overrides"] = overrides
    save_checkpoint(ckpt_root / f"step-{step}", model=model, tokenizer=ctx.tokenizer, trainer_state=state,
                    manifest=manifest)
    # gated checkpoints stay: `octo eval --select` may choose any of them
    every = ctx.recipe.cpt.gates.eval_every
    gated = set(range(every, step + 1, every)) if every else set()
    prune_checkpoints(ckpt_root, scfg.keep_last, keep={step} | gated, keep_every=scfg.keep_every)
