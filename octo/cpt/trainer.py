"""The mid-training loop: one stage of continued pre-training.

    octo cpt recipes/toy/quickstart.yaml --stage stable

A stage reads a token-weighted mixture of sources, packs it into isolated documents,
and trains with AdamW under the stage's LR schedule. It starts from a fresh toy model, from
``model.init`` weights, or from another stage's final checkpoint (``restore: full`` keeps
the AdamW moments — seed 003's R_full; ``weights`` starts a fresh optimizer, R_weights).
Every ``save_every`` steps and at the end it writes a full-state checkpoint; a stage that
was killed resumes from its newest good checkpoint and continues bit-for-bit (CPU).

Stability (seed 002): the gradient norm is clipped, and a step whose norm exceeds
mu + k * sigma over the previous window is logged as a spike (and skipped, with
``spike.action: skip``).
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path

from octo import progress
from octo.context import RunContext
from octo.cpt.checkpoint import (latest_good_checkpoint, load_trainer_state, prune_checkpoints, remove_stale,
                                 save_checkpoint)
from octo.cpt.schedules import LRSchedule
from octo.errors import OctoError
from octo.runio import METRICS_FILE, JsonlWriter, read_json, truncate_jsonl, write_json_atomic


def _param_groups(model, weight_decay: float):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "norm" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _rng_state() -> dict:
    import torch

    return {"torch": torch.get_rng_state(), "python": random.getstate()}


def _set_rng_state(state: dict) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def set_threads(n: int) -> None:
    import os

    import torch

    torch.set_num_threads(n or os.cpu_count() or 1)


def stage_steps(ctx: RunContext, stage: str) -> int:
    cfg = ctx.recipe.cpt
    return max(1, math.ceil(ctx.recipe.cpt.stages[stage].tokens / cfg.batch_tokens))


def _init_model(ctx: RunContext, stage: str):
    """(model, optimizer state or None, peak-lr fallback, init description)."""
    from octo.model import build_toy_model, load_model

    recipe = ctx.recipe
    scfg = recipe.cpt.stages[stage]
    if scfg.init == "random":
        return build_toy_model(recipe.model, ctx.tokenizer, recipe.seed), None, None, "random init"
    if scfg.init == "model":
        return load_model(recipe.model.init, attn_implementation=recipe.model.attn_implementation), None, None, \
            f"weights of {recipe.model.init}"
    done = ctx.stage_done(scfg.init)
    if done is None:
        raise OctoError(f"stage '{stage}' starts from stage '{scfg.init}', which has not finished; "
                        f"run it first (octo cpt RECIPE --stage {scfg.init})")
    ckpt = ctx.run_dir / done["final_checkpoint"]
    model = load_model(ckpt, attn_implementation=recipe.model.attn_implementation)
    opt_state = load_trainer_state(ckpt)["optimizer"] if scfg.restore == "full" else None
    return model, opt_state, done["final_lr"], f"{scfg.restore} restore of {done['final_checkpoint']}"


def run_stage(ctx: RunContext, stage: str) -> dict:
    """Train one stage to its token budget (resuming if it was interrupted); returns DONE info."""
    import torch
    import torch.nn.functional as F

    from octo.data.mixture import TokenMixture
    from octo.data.packing import Packer, packed_logits
    from octo.data.sources import DocStream

    recipe = ctx.recipe
    scfg = recipe.cpt.stages[stage]
    cfg = recipe.cpt
    sdir = ctx.stage_dir(stage)
    done = ctx.stage_done(stage)
    if done is not None:
        progress.info(f"stage {stage}: already complete ({done['final_checkpoint']}), skipping")
        return done
    set_threads(cfg.threads)
    total = stage_steps(ctx, stage)
    micro_per_step = cfg.batch_tokens // (cfg.seq_len * cfg.micro_batch_size)

    streams = {name: DocStream(ctx.source(name).train, recipe.seed, name) for name in scfg.mixture}
    packer = Packer(TokenMixture(streams, scfg.mixture), cfg.seq_len)

    # a process killed while writing or pruning a checkpoint leaves a .tmp-/.del- directory: never a
    # resume point (its name is not step-<N>), but it holds a model's worth of disk
    remove_stale(sdir / "checkpoints", log=progress.info)
    resume = latest_good_checkpoint(sdir / "checkpoints", log=progress.info)
    if resume is not None:
        from octo.model import load_model

        start_step, ckpt = resume
        model = load_model(ckpt, attn_implementation=recipe.model.attn_implementation)
        state = load_trainer_state(ckpt)
        opt_state, inherited_lr = state["optimizer"], state["inherited_lr"]
        packer.load_state_dict(state["packer"])
        _set_rng_state(state["rng"])
        norms = [float(x) for x in state["norms"]]
        progress.info(f"stage {stage}: resuming from {ckpt.relative_to(ctx.run_dir)} (step {start_step}/{total})")
    else:
        start_step = 0
        torch.manual_seed(recipe.seed)
        random.seed(recipe.seed)
        model, opt_state, inherited_lr, how = _init_model(ctx, stage)
        norms = []
        progress.info(f"stage {stage}: start ({how}), {total} steps x {cfg.batch_tokens} tokens")
    peak = scfg.schedule.lr if scfg.schedule.lr is not None else inherited_lr
    final = scfg.schedule.final_lr if scfg.schedule.final_lr is not None else 0.1 * peak
    sched = LRSchedule(scfg.schedule.kind, peak, final, total, scfg.schedule.warmup_steps)

    model.train()
    model.config.use_cache = False
    opt = torch.optim.AdamW(_param_groups(model, cfg.optimizer.weight_decay), lr=peak,
                            betas=tuple(cfg.optimizer.betas), eps=cfg.optimizer.eps)
    if opt_state is not None:
        opt.load_state_dict(opt_state)
        for group in opt.param_groups:  # the recipe's settings win over the restored ones
            group["betas"], group["eps"] = tuple(cfg.optimizer.betas), cfg.optimizer.eps

    if start_step == 0 and scfg.init == "random":
        _write_gates(ctx, stage, model, step=0, tokens=0, checkpoint=None)

    truncate_jsonl(sdir / METRICS_FILE, keep_step_le=start_step)
    writer = JsonlWriter(sdir / METRICS_FILE)
    params = [p for p in model.parameters() if p.requires_grad]
    spike_cfg = (20, 6.0)  # window, k (seed 002: ||g|| > mu + k sigma)
    bar = progress.bar(total, stage, initial=start_step)
    tokens = start_step * cfg.batch_tokens
    try:
        for step in range(start_step, total):
            t0 = time.perf_counter()
            lr = sched(step)
            for group in opt.param_groups:
                group["lr"] = lr
            batches = [packer.next_batch(cfg.micro_batch_size) for _ in range(micro_per_step)]
            n_targets = int(sum((b["labels"][:, 1:] != -100).sum() for b in batches))
            loss_value = 0.0
            for b in batches:
                logits = packed_logits(model, b["input_ids"], b["position_ids"])
                loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)).float(),
                                       b["labels"][:, 1:].reshape(-1), ignore_index=-100,
                                       reduction="sum") / max(1, n_targets)
                loss.backward()
                loss_value += loss.item()
            clip = cfg.optimizer.grad_clip if cfg.optimizer.grad_clip > 0 else float("inf")
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, clip))
            window, k = spike_cfg
            recent = norms[-window:]
            spike = False
            if len(recent) == window:
                mu = sum(recent) / window
                sd = math.sqrt(sum((x - mu) ** 2 for x in recent) / window)
                spike = grad_norm > mu + k * max(sd, 1e-12)
            finite = math.isfinite(grad_norm) and math.isfinite(loss_value)
            skipped = not finite
            if skipped:
                opt.zero_grad(set_to_none=True)
            else:
                opt.step()
                opt.zero_grad(set_to_none=True)
                norms.append(grad_norm)
            tokens += cfg.batch_tokens
            dt = time.perf_counter() - t0
            row = {"step": step + 1, "tokens": tokens, "lr": lr, "loss": loss_value, "grad_norm": grad_norm,
                   "spike": spike, "skipped": skipped, "time/step": dt, "tokens_per_s": cfg.batch_tokens / dt}
            row.update({f"mix/{k_}": v for k_, v in packer.mixture.shares().items()})
            writer.write(row)
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.3f}", lr=f"{lr:.2e}", refresh=False)
            is_last = step + 1 == total
            if is_last or (scfg.save_every and (step + 1) % scfg.save_every == 0):
                state = {"optimizer": opt.state_dict(), "packer": packer.state_dict(), "rng": _rng_state(),
                         "step": step + 1, "tokens": tokens, "inherited_lr": inherited_lr,
                         "norms": norms[-window:]}
                _save(ctx, stage, model, state, step + 1, tokens, lr, final=is_last)
    finally:
        bar.close()
        writer.close()
    final_ckpt = sdir / "checkpoints" / f"step-{total}"
    model.eval()
    _write_gates(ctx, stage, model, step=total, tokens=tokens, checkpoint=final_ckpt)
    done = {"stage": stage, "init": scfg.init, "restore": scfg.restore,
            "final_checkpoint": str(final_ckpt.relative_to(ctx.run_dir)), "step": total, "tokens": tokens,
            "final_lr": sched(total - 1)}
    write_json_atomic(sdir / "DONE.json", done)
    last = _last_row(sdir / METRICS_FILE)
    progress.info(f"stage {stage}: done, {total} steps, loss {last.get('loss', float('nan')):.3f}")
    return done


def _last_row(path: Path) -> dict:
    from octo.runio import read_jsonl

    rows = read_jsonl(path)
    return rows[-1] if rows else {}


def _save(ctx: RunContext, stage: str, model, state: dict, step: int, tokens: int, lr: float, *,
          final: bool) -> None:
    scfg = ctx.recipe.cpt.stages[stage]
    ckpt_root = ctx.stage_dir(stage) / "checkpoints"
    manifest = {
        "stage": stage, "step": step, "tokens": tokens, "lr": lr, "restore_mode": "full",
        "init": scfg.init, "init_restore": scfg.restore, "seed": ctx.recipe.seed,
        "tokenizer_hash": ctx.manifest["tokenizer_hash"],
        "data_fingerprints": {n: ctx.manifest["data_fingerprints"][n] for n in scfg.mixture},
        "mixture": scfg.mixture,
    }
    save_checkpoint(ckpt_root / f"step-{step}", model=model, tokenizer=ctx.tokenizer, trainer_state=state,
                    manifest=manifest)
    prune_checkpoints(ckpt_root, scfg.keep_last, keep={step})


def _write_gates(ctx: RunContext, stage: str, model, *, step: int, tokens: int, checkpoint: Path | None) -> None:
    from octo.cpt.gates import evaluate_gates
    from octo.runio import GATES_FILE

    row = evaluate_gates(ctx, model)
    ckpt_id = f"{stage}.step-{step}"
    row = {"step": step, "tokens": tokens,
           "checkpoint": str(checkpoint.relative_to(ctx.run_dir)) if checkpoint else None,
           "checkpoint_id": ckpt_id, **row}
    path = ctx.stage_dir(stage) / GATES_FILE
    truncate_jsonl(path, keep_step_le=step - 1 if step else -1)
    with JsonlWriter(path) as w:
        w.write(row)
    acc = row.get("acc/toy")
    progress.info(f"gates {ckpt_id}: ppl/general {row['ppl/general']:.2f}"
                  + (f", acc/toy {acc:.3f}" if acc is not None else ""))


def read_done(ctx: RunContext, stage: str) -> dict:
    done = ctx.stage_done(stage)
    if done is None:
        raise OctoError(f"stage '{stage}' has not finished in {ctx.run_dir}; run octo cpt first")
    return read_json(ctx.stage_dir(stage) / "DONE.json")
