"""The mid-training loop: one stage of continued pre-training.

    octo cpt recipes/toy/quickstart.yaml --stage stable

A stage reads a token-weighted mixture of sources, packs it into isolated documents,
and trains with AdamW under the stage's LR schedule. It starts from a fresh toy model, from
``model.init`` weights, or from another stage's final checkpoint (``restore: full`` keeps
the AdamW moments — seed 003's R_full; ``weights`` starts a fresh optimizer, R_weights).
Every ``save_every`` steps and at the end it writes a full-state checkpoint; a stage that
was killed resumes from its newest good checkpoint and continues bit-for-bit (CPU).

Stability (seed 002): the gradient norm is clipped, and a step whose norm exceeds
mu + k * sigma over the previous ``cpt.spike.window`` accepted steps is a spike. ``spike.action``:
``log`` flags the row; ``skip`` drops the update (the step's data is consumed); ``rollback``
reloads weights, optimizer and RNG of the last good checkpoint and goes on with the data after
the spike (seed 001 §5.4: "roll back to the most recent stable checkpoint"). A non-finite step is
never applied. With ``cpt.kl.coef`` > 0 the loss gains beta * KL(p_theta0 || p_theta) on tokens of
the replay sources ``cpt.kl.sources`` (seed 001 §5.3), theta0 being the stage's starting weights.

Scale-out: launched by ``accelerate launch --num_processes W -m octo.cli cpt ...`` or ``torchrun``,
the loop runs data-parallel (DDP, or FSDP2 with recipes/accelerate/fsdp.yaml: octo.cpt.parallel);
every rank draws the same deterministic packer stream and trains on its share of the step's
micro-batches, so the global batch is the single-process one, and checkpoints keep the
single-process format. A single process never imports accelerate.
"""

from __future__ import annotations

import math
import os
import random
import time
from contextlib import nullcontext
from pathlib import Path

from octo import progress
from octo.context import RunContext
from octo.cpt.binding import check_restore, recorded_overrides
from octo.cpt.checkpoint import (
    latest_good_checkpoint,
    load_trainer_state,
    prune_checkpoints,
    remove_stale,
    save_checkpoint,
)
from octo.cpt.parallel import World, clip_grad_norm, world_size
from octo.cpt.schedules import LRSchedule
from octo.errors import OctoError
from octo.runio import (
    METRICS_FILE,
    JsonlWriter,
    read_json,
    truncate_jsonl,
    write_json_atomic,
)


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
    import torch

    torch.set_num_threads(n or os.cpu_count() or 1)


def stage_steps(ctx: RunContext, stage: str) -> int:
    cfg = ctx.recipe.cpt
    return max(1, math.ceil(ctx.recipe.cpt.stages[stage].tokens / cfg.batch_tokens))


def loss_scale(step: int) -> float:
    """Factor on the loss of optimizer step ``step`` (1-based): 1.0 in training.

    A seam for fault-injection tests, which scale one step's loss by a huge factor so that the
    real spike detection and actions below have a spike to handle.
    """
    return 1.0


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

    from octo.data.packing import packed_logits, stage_packer

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
    dist = World(micro_per_step) if world_size() > 1 else None
    main = dist is None or dist.rank == 0
    log = progress.info if main else (lambda message: None)
    kl_on = cfg.kl.coef > 0

    packer = stage_packer(ctx, stage)
    packer.track_sources = kl_on  # per-token source ids for the KL on replay tokens

    # a process killed while writing or pruning a checkpoint leaves a .tmp-/.del- directory: never a
    # resume point (its name is not step-<N>), but it holds a model's worth of disk
    if main:
        remove_stale(sdir / "checkpoints", log=progress.info)
    if dist is not None:
        dist.barrier()
    resume = latest_good_checkpoint(sdir / "checkpoints", log=log)
    if resume is not None:
        from octo.model import load_model

        start_step, ckpt = resume
        model = load_model(ckpt, attn_implementation=recipe.model.attn_implementation)
        state = load_trainer_state(ckpt)
        opt_state, inherited_lr = state["optimizer"], state["inherited_lr"]
        packer.load_state_dict(state["packer"])
        _set_rng_state(state["rng"])
        norms = [float(x) for x in state["norms"]]
        rollbacks = int(state.get("rollbacks", 0))
        check_restore(ctx, stage, ckpt, event="resume", mode="full", check_data=True, record=main)
        log(f"stage {stage}: resuming from {ckpt.relative_to(ctx.run_dir)} (step {start_step}/{total})")
    else:
        start_step = 0
        torch.manual_seed(recipe.seed)
        random.seed(recipe.seed)
        model, opt_state, inherited_lr, how = _init_model(ctx, stage)
        init_ckpt = _init_checkpoint(ctx, stage)
        if init_ckpt is not None:
            mode = "weights" if scfg.init == "model" else scfg.restore
            check_restore(ctx, stage, init_ckpt, event="start", mode=mode, check_data=False, record=main)
        norms = []
        rollbacks = 0
        log(f"stage {stage}: start ({how}), {total} steps x {cfg.batch_tokens} tokens")
    ref = _reference_model(ctx, stage, model if resume is None else None) if kl_on else None
    peak = scfg.schedule.lr if scfg.schedule.lr is not None else inherited_lr
    final = scfg.schedule.final_lr if scfg.schedule.final_lr is not None else 0.1 * peak
    sched = LRSchedule(scfg.schedule.kind, peak, final, total, scfg.schedule.warmup_steps)

    model.train()
    model.config.use_cache = False
    if dist is not None:
        if ref is not None:
            ref.to(dist.device)
        model = dist.shard(model)  # FSDP: before the optimizer, which must hold the sharded parameters
    opt = torch.optim.AdamW(_param_groups(model, cfg.optimizer.weight_decay), lr=peak,
                            betas=tuple(cfg.optimizer.betas), eps=cfg.optimizer.eps)
    if opt_state is not None:
        _load_optimizer(opt, opt_state, cfg, dist, model)

    # raw_model: the unsharded model rank 0 checkpoints and gates (FSDP: gathered into at every save)
    raw_model = model
    if dist is not None:
        model, opt = dist.prepare(model, opt)
        raw_model = dist.plain(model)

    eval_every = cfg.gates.eval_every
    if start_step == 0 and scfg.init in ("random", "model") and main:
        _write_gates(ctx, stage, raw_model, step=0, tokens=0, checkpoint=None)
    elif start_step and eval_every and start_step % eval_every == 0 and start_step < total and main \
            and _gate_verdict(ctx, stage, start_step) is None:
        # killed between saving a gated checkpoint and writing its gates: evaluate it now
        _write_gates(ctx, stage, raw_model, step=start_step, tokens=start_step * cfg.batch_tokens,
                     checkpoint=sdir / "checkpoints" / f"step-{start_step}")
    if dist is not None:
        dist.barrier()
    stopped = _stop_verdict(ctx, stage, start_step) if start_step else None
    end = start_step if stopped else total

    if main:
        truncate_jsonl(sdir / METRICS_FILE, keep_step_le=start_step)
    writer = JsonlWriter(sdir / METRICS_FILE) if main else None
    params = [p for p in model.parameters() if p.requires_grad]
    window, k = cfg.spike.window, cfg.spike.k  # seed 002: spike when ||g|| > mu + k sigma
    replay = _source_index(packer, cfg.kl.sources) if kl_on else None
    bar = progress.bar(total, stage, initial=start_step) if main else _NoBar()
    tokens = start_step * cfg.batch_tokens
    try:
        for step in range(start_step, end):
            t0 = time.perf_counter()
            lr = sched(step)
            for group in opt.param_groups:
                group["lr"] = lr
            batches = [packer.next_batch(cfg.micro_batch_size) for _ in range(micro_per_step)]
            n_targets = int(sum((b["labels"][:, 1:] != -100).sum() for b in batches))
            n_kl = 0
            if kl_on:
                for b in batches:
                    b["kl_mask"] = (b["labels"][:, 1:] != -100) & torch.isin(b.pop("source_ids")[:, 1:], replay)
                n_kl = int(sum(b["kl_mask"].sum() for b in batches))
            scale = loss_scale(step + 1)
            loss_value = kl_value = 0.0
            mine = batches if dist is None else batches[dist.rank::dist.size]
            for i, b in enumerate(mine):
                if dist is not None:
                    b = {key: v.to(dist.device) for key, v in b.items()}
                sync = nullcontext() if dist is None else dist.no_sync(model, last=i == len(mine) - 1)
                with sync:
                    logits = packed_logits(model, b["input_ids"], b["position_ids"])
                    loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)).float(),
                                           b["labels"][:, 1:].reshape(-1), ignore_index=-100,
                                           reduction="sum") / max(1, n_targets)
                    if scale != 1.0:
                        loss = loss * scale
                    loss_value += loss.item()
                    if n_kl:
                        kl = _replay_kl(logits, ref, b) / n_kl
                        kl_value += kl.item()
                        loss = loss + cfg.kl.coef * kl
                    if dist is None:
                        loss.backward()
                    else:
                        dist.acc.backward(loss * dist.size)
            if dist is not None:
                loss_value, kl_value = dist.sum(loss_value, kl_value)
            clip = cfg.optimizer.grad_clip if cfg.optimizer.grad_clip > 0 else float("inf")
            grad_norm = clip_grad_norm(params, clip)  # under FSDP: the norm over all shards
            recent = norms[-window:]
            spike = False
            threshold = None
            if len(recent) == window:
                mu = sum(recent) / window
                sd = math.sqrt(sum((x - mu) ** 2 for x in recent) / window)
                threshold = mu + k * max(sd, 1e-12)
                spike = grad_norm > threshold
            finite = math.isfinite(grad_norm) and math.isfinite(loss_value)
            action = "step"
            if not finite:  # never applied, whatever spike.action says
                action = "rollback" if cfg.spike.action == "rollback" else "skip"
            elif spike:
                action = {"log": "step", "skip": "skip", "rollback": "rollback"}[cfg.spike.action]
            target = None
            if action == "rollback":
                target = latest_good_checkpoint(sdir / "checkpoints", log=log)
                if target is None:
                    action = "skip"
                elif rollbacks >= cfg.spike.max_rollbacks:
                    raise OctoError(f"stage {stage}: gradient-norm spike at step {step + 1} after "
                                    f"{rollbacks} rollbacks (cpt.spike.max_rollbacks); lower the LR or clean the "
                                    "data, or raise max_rollbacks, then rerun to resume from the last checkpoint")
            if action == "step":
                opt.step()
                opt.zero_grad(set_to_none=True)
                norms.append(grad_norm)
            else:
                opt.zero_grad(set_to_none=True)
            if action == "rollback":
                norms = _rollback(ctx, model, opt, target[1], dist)
                rollbacks += 1
            if spike or not finite:
                log(_event_message(stage, step + 1, grad_norm, threshold, finite, action, target,
                                   cfg.spike.action, rollbacks, cfg.spike.max_rollbacks))
            tokens += cfg.batch_tokens
            dt = time.perf_counter() - t0
            row = {"step": step + 1, "tokens": tokens, "lr": lr, "loss": loss_value, "grad_norm": grad_norm,
                   "spike": spike, "skipped": action != "step", "rollback": action == "rollback",
                   "time/step": dt, "tokens_per_s": cfg.batch_tokens / dt}
            if target is not None:
                row["rollback_to"] = target[0]
            if kl_on:
                row["kl"] = kl_value
            row.update({f"mix/{k_}": v for k_, v in packer.mixture.shares().items()})
            if writer is not None:
                writer.write(row)
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.3f}", lr=f"{lr:.2e}", refresh=False)
            is_last = step + 1 == total
            gate_now = bool(eval_every) and (step + 1) % eval_every == 0 and not is_last
            if is_last or gate_now or (scfg.save_every and (step + 1) % scfg.save_every == 0):
                # under FSDP every rank takes part in gathering the full state to rank 0
                opt_full = opt.state_dict() if dist is None else dist.full_state(model, opt)
                if main:
                    state = {"optimizer": opt_full, "packer": packer.state_dict(), "rng": _rng_state(),
                             "step": step + 1, "tokens": tokens, "inherited_lr": inherited_lr,
                             "norms": norms[-window:], "rollbacks": rollbacks}
                    _save(ctx, stage, raw_model, state, step + 1, tokens, lr, final=is_last)
                if dist is not None:
                    dist.barrier()  # a rollback on any rank may read this checkpoint
            if gate_now:
                if main:
                    _write_gates(ctx, stage, raw_model, step=step + 1, tokens=tokens,
                                 checkpoint=sdir / "checkpoints" / f"step-{step + 1}")
                if dist is not None:
                    dist.barrier()
                stopped = _stop_verdict(ctx, stage, step + 1)
                if stopped:
                    end = step + 1
                    log(f"stage {stage}: {stopped} at step {end} (cpt.gates.on_stop: stop); the stage ends "
                        f"at checkpoint step-{end}")
                    break
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    final_ckpt = sdir / "checkpoints" / f"step-{end}"
    done = {"stage": stage, "init": scfg.init, "restore": scfg.restore,
            "final_checkpoint": str(final_ckpt.relative_to(ctx.run_dir)), "step": end,
            "tokens": end * cfg.batch_tokens, "final_lr": sched(end - 1)}
    if stopped:
        done["stopped"] = stopped
    if main:
        raw_model.eval()
        if not stopped:  # a stopped stage's last checkpoint was gated when the rule fired
            _write_gates(ctx, stage, raw_model, step=total, tokens=tokens, checkpoint=final_ckpt)
        write_json_atomic(sdir / "DONE.json", done)
        last = _last_row(sdir / METRICS_FILE)
        progress.info(f"stage {stage}: done, {end} steps, loss {last.get('loss', float('nan')):.3f}"
                      + (f" (stopped: {stopped})" if stopped else ""))
    if dist is not None:
        dist.barrier()
    return done


class _NoBar:
    """The progress bar of ranks other than 0: they train silently."""

    def update(self, n: int) -> None:
        pass

    def set_postfix(self, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


def _event_message(stage: str, step: int, grad_norm: float, threshold: float | None, finite: bool, action: str,
                   target: tuple[int, Path] | None, wanted: str, rollbacks: int, max_rollbacks: int) -> str:
    """One log line for a spike or a non-finite step and what was done about it."""
    what = (f"non-finite loss or gradient norm ({grad_norm:.4g})" if not finite else
            f"gradient-norm spike {grad_norm:.4g} > mu + k sigma = {threshold:.4g}")
    if action == "step":
        done = "update applied (cpt.spike.action: log)"
    elif action == "skip":
        done = "update skipped" + (" (no checkpoint to roll back to yet)" if wanted == "rollback" else "")
    else:
        done = (f"rolled back to checkpoint step-{target[0]} (weights, optimizer, RNG; rollback "
                f"{rollbacks}/{max_rollbacks}); the data of steps {target[0] + 1}-{step} is not replayed")
    return f"stage {stage} step {step}: {what}; {done}"


def _source_index(packer, names: list[str]):
    """Indices (in the packer's per-token source ids) of the listed sources present in this stage."""
    import torch

    return torch.tensor([i for i, n in enumerate(packer.source_names) if n in names], dtype=torch.long)


def _reference_model(ctx: RunContext, stage: str, start_model):
    """Frozen copy of the stage's starting weights theta0 (the KL reference of seed 001).

    A resumed stage rebuilds it from the stage's init (seeded and independent of the global RNG).
    """
    import copy

    import torch

    if start_model is not None:
        ref = copy.deepcopy(start_model)
    else:
        with torch.random.fork_rng(devices=[]):
            ref = _init_model(ctx, stage)[0]
    ref.eval()
    ref.config.use_cache = False
    ref.requires_grad_(False)
    return ref


def _replay_kl(logits, ref, batch):
    """Sum over the masked (replay) positions of KL(p_theta0 || p_theta) of the next-token
    distributions: seed 001's L_total = L_CPT + beta E_replay[KL(p_theta0(.|x) || p_theta(.|x))]."""
    import torch
    import torch.nn.functional as F

    from octo.data.packing import packed_logits

    mask = batch["kl_mask"]
    if not bool(mask.any()):
        return logits.sum() * 0.0
    with torch.no_grad():
        ref_logits = packed_logits(ref, batch["input_ids"], batch["position_ids"])
    logp = F.log_softmax(logits[:, :-1][mask].float(), dim=-1)
    logq = F.log_softmax(ref_logits[:, :-1][mask].float(), dim=-1)
    return (logq.exp() * (logq - logp)).sum()


def _load_optimizer(opt, state: dict, cfg, dist: World | None = None, model=None) -> None:
    """Restore AdamW moments and step counts; the recipe's betas and eps win over the restored ones.

    ``state`` is a full (single-process format) state dict; with several ranks ``dist`` loads it
    (FSDP: every rank reads it whole and keeps its shard of the running ``model``'s parameters)."""
    if dist is None:
        opt.load_state_dict(state)
    else:
        dist.load_optimizer(model, opt, state)
    for group in opt.param_groups:
        group["betas"], group["eps"] = tuple(cfg.optimizer.betas), cfg.optimizer.eps


def _rollback(ctx: RunContext, model, opt, ckpt: Path, dist: World | None) -> list[float]:
    """Reload weights, AdamW moments and RNG states of a full-state checkpoint into the running
    model and optimizer (seed 001 §5.4 rollback); returns the checkpoint's gradient-norm window.
    The packer is left where it is: the data since the checkpoint is not replayed."""
    import torch

    from octo.model import load_model

    cfg = ctx.recipe.cpt
    loaded = load_model(ckpt, attn_implementation=ctx.recipe.model.attn_implementation)
    if dist is None:
        with torch.no_grad():
            model.load_state_dict(loaded.state_dict())
    else:
        dist.load_weights(model, loaded.state_dict())
    del loaded
    state = load_trainer_state(ckpt)
    _load_optimizer(opt, state["optimizer"], cfg, dist, model)
    _set_rng_state(state["rng"])
    return [float(x) for x in state["norms"]]


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
        # the versions this checkpoint is bound to are those read now (seed 003), not the run's first
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


def _write_gates(ctx: RunContext, stage: str, model, *, step: int, tokens: int, checkpoint: Path | None) -> None:
    """Gate the model as checkpoint ``step`` of ``stage`` and write the row, with the stop rule's verdict.

    Generation draws from the RNGs; they are restored afterwards, so a run with gates trains exactly
    like one without. Rows of a stage trained from random init get no verdict: its reference (the base
    model, seed 001 M(0)) is its own final checkpoint, unknown until it ends.
    """
    import torch

    from octo.cpt.gates import evaluate_gates
    from octo.runio import GATES_FILE

    py_state = random.getstate()
    with torch.random.fork_rng(devices=[]):
        row = evaluate_gates(ctx, model)
    random.setstate(py_state)
    ckpt_id = f"{stage}.step-{step}"
    row = {"step": step, "tokens": tokens,
           "checkpoint": str(checkpoint.relative_to(ctx.run_dir)) if checkpoint else None,
           "checkpoint_id": ckpt_id, **row}
    path = ctx.stage_dir(stage) / GATES_FILE
    truncate_jsonl(path, keep_step_le=step - 1 if step else -1)
    verdict = None
    if ctx.recipe.cpt.stages[stage].init != "random":
        from octo.analysis.gates import gate_table
        from octo.analysis.load import load_run

        path.parent.mkdir(parents=True, exist_ok=True)  # so that load_run sees the stage
        run = load_run(ctx.run_dir, require_probes=False)  # the run's gates so far, this row added
        run.stages[stage].gates.append(row)
        table = gate_table(run, ctx.recipe.analysis)
        verdict = next((r.get("verdict") for r in table["rows"] if r["checkpoint_id"] == ckpt_id), None)
        if verdict is not None:
            row["verdict"] = verdict
    with JsonlWriter(path) as w:
        w.write(row)
    acc_key = f"acc/{ctx.recipe.cpt.gates.benchmark}"
    acc = row.get(acc_key)
    progress.info(f"gates {ckpt_id}: ppl/general {row['ppl/general']:.2f}"
                  + (f", {acc_key} {acc:.3f}" if acc is not None else "") + (f"; {verdict}" if verdict else ""))


def _gate_verdict(ctx: RunContext, stage: str, step: int) -> str | None:
    """The verdict written for checkpoint ``step`` of ``stage`` ('' when gated without one; None: not gated)."""
    from octo.runio import GATES_FILE, read_jsonl

    path = ctx.stage_dir(stage) / GATES_FILE
    for row in read_jsonl(path) if path.exists() else []:
        if row.get("step") == step:
            return row.get("verdict") or ""
    return None


def _stop_verdict(ctx: RunContext, stage: str, step: int) -> str | None:
    """The stop rule's verdict at ``step`` when it fired and ``cpt.gates.on_stop`` is ``stop``."""
    if ctx.recipe.cpt.gates.on_stop != "stop":
        return None
    verdict = _gate_verdict(ctx, stage, step)
    return verdict if verdict and verdict.startswith("stop:") else None


def _init_checkpoint(ctx: RunContext, stage: str) -> Path | None:
    """The directory a fresh stage restores from (None for a random init)."""
    scfg = ctx.recipe.cpt.stages[stage]
    if scfg.init == "random":
        return None
    if scfg.init == "model":
        return Path(ctx.recipe.model.init)
    return ctx.run_dir / ctx.stage_done(scfg.init)["final_checkpoint"]


def read_done(ctx: RunContext, stage: str) -> dict:
    done = ctx.stage_done(stage)
    if done is None:
        raise OctoError(f"stage '{stage}' has not finished in {ctx.run_dir}; run octo cpt first")
    return read_json(ctx.stage_dir(stage) / "DONE.json")
