"""The mid-training loop: one stage of continued pre-training.

    octo cpt recipes/toy/quickstart.yaml --stage stable

A stage reads a token-weighted mixture of sources, packs it into isolated documents,
and trains with AdamW under the stage's LR schedule. It starts from a fresh toy model, from
``model.init`` weights, or from another stage's final checkpoint (``restore: full`` keeps
the AdamW moments — seed 003's R_full; ``weights`` starts a fresh optimizer, R_weights).
Every ``save_every`` steps and at the end it writes a full-state checkpoint; a stage that
was killed resumes from its newest good checkpoint and continues bit-for-bit (CPU).

The loop (:func:`run_stage`) calls named parts: the gradient is clipped and the spike guard
(octo.cpt.stability, seed 002) decides whether the update is applied, skipped or rolled back; with
``cpt.kl.coef`` > 0 the loss gains the KL term of octo.cpt.stability (seed 001 §5.3); checkpoints hold the
full state of octo.cpt.state; gates and the stop rule come from octo.cpt.gating.

Scale-out: launched by ``accelerate launch --num_processes W -m octo.cli cpt ...`` or ``torchrun``,
the loop runs data-parallel (DDP, or FSDP2 with recipes/accelerate/fsdp.yaml: octo.cpt.parallel);
every rank draws the same deterministic packer stream and trains on its share of the step's
micro-batches, so the global batch is the single-process one, and checkpoints keep the
single-process format. A single process never imports accelerate (octo.cpt.parallel.LocalProcess).

Why octo's own checkpoints and not ``Accelerator.save_state``: a checkpoint is one format whatever the
world size (a 2-process FSDP checkpoint resumes in one process and back), it carries the packer's
position and the spike window beside the weights, and its manifest binds the tokenizer and data
versions (seed 003); ``save_state`` writes per-process RNG files and the sharded layout of the run
that wrote it.
"""

from __future__ import annotations

import math
import os
import random
import time
from pathlib import Path

from octo import progress
from octo.config import stage_seed
from octo.context import RunContext
from octo.cpt.binding import check_restore
from octo.cpt.checkpoint import latest_good_checkpoint, load_trainer_state, remove_stale
from octo.cpt.gating import gate_checkpoint, gate_verdict, stop_reason, stop_verdict
from octo.cpt.parallel import clip_grad_norm, processes
from octo.cpt.schedules import LRSchedule
from octo.cpt.stability import SpikeGuard, Verdict
from octo.cpt.state import (init_checkpoint, init_model, load_optimizer, param_groups, rng_state, rollback,
                            save_stage_checkpoint, set_rng_state)
from octo.errors import OctoError
from octo.runio import METRICS_FILE, STAGE_DONE_FILE, JsonlWriter, read_json, read_jsonl, truncate_jsonl, \
    write_json_atomic


def run_stage(ctx: RunContext, stage: str) -> dict:
    """Train one stage to its token budget (resuming if it was interrupted); returns DONE info."""
    done = ctx.stage_done(stage)
    if done is not None:
        progress.info(f"stage {stage}: already complete ({done['final_checkpoint']}), skipping")
        return done
    set_threads(ctx.recipe.cpt.threads)
    progress.quiet_libraries()   # before the first gates and checkpoint loads, not only with the bar
    run = StageRun(ctx, stage)
    try:
        while run.step < run.end:
            t0 = time.perf_counter()
            lr = run.set_lr()
            loss, kl = run.forward_backward(run.next_batches())
            grad_norm = clip_grad_norm(run.params, run.grad_clip)   # under FSDP: the norm over all shards
            verdict = run.guard.judge(grad_norm, loss, run.step + 1, run.last_good_checkpoint)
            run.apply(verdict, grad_norm)                           # the update, a skip, or a rollback
            run.step += 1
            run.log_step(lr, loss, kl, grad_norm, verdict, time.perf_counter() - t0)
            if run.checkpoint_due():
                run.save_checkpoint(lr)
            if run.gate_due() and run.gate_and_stop():
                break
    finally:
        run.close()
    return run.finish()


class StageRun:
    """One stage in training: the processes, model, optimizer, data, spike guard and KL term, and the parts
    of a step. ``step`` counts the optimizer steps done; the stage trains until ``end``."""

    def __init__(self, ctx: RunContext, stage: str):
        from octo.data.packing import stage_packer

        self.ctx, self.stage = ctx, stage
        self.cfg, self.scfg = ctx.recipe.cpt, ctx.recipe.cpt.stages[stage]
        self.sdir = ctx.stage_dir(stage)
        self.total = stage_steps(ctx, stage)
        self.micro_per_step = self.cfg.batch_tokens // (self.cfg.seq_len * self.cfg.micro_batch_size)
        self.procs = processes(self.micro_per_step)
        self.main = self.procs.rank == 0
        self.packer = stage_packer(ctx, stage)
        self.packer.track_sources = self.cfg.kl.coef > 0  # per-token source ids for the KL on replay tokens
        model, opt_state, inherited_lr = self._restore_or_start()
        self.inherited_lr = inherited_lr
        self.kl = None
        if self.cfg.kl.coef > 0:
            from octo.cpt.stability import ReplayKL

            self.kl = ReplayKL.for_stage(ctx, stage, model if self.step == 0 else None, self.packer)
        sched = self.scfg.schedule
        peak = sched.lr if sched.lr is not None else inherited_lr
        final = sched.final_lr if sched.final_lr is not None else 0.1 * peak
        self.sched = LRSchedule(sched.kind, peak, final, self.total, sched.warmup_steps)
        self._build_optimizer(model, opt_state, peak)
        self.grad_clip = self.cfg.optimizer.grad_clip if self.cfg.optimizer.grad_clip > 0 else float("inf")
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.stopped = self._gate_start()
        self.end = self.step if self.stopped else self.total
        if self.main:
            truncate_jsonl(self.sdir / METRICS_FILE, keep_step_le=self.step)
        self.writer = JsonlWriter(self.sdir / METRICS_FILE) if self.main else None
        self.bar = progress.bar(self.total, stage, initial=self.step, disable=not self.main)
        self.t_saved = time.monotonic()   # the time-based save (cpt.save_every_s) counts from here
        if self.main:
            progress.begin_position(f"stage {stage}", step=self.step, total=self.total)

    def log(self, message: str) -> None:
        if self.main:
            progress.info(message)

    # --- start ------------------------------------------------------------------------------
    def _restore_or_start(self):
        """Resume from the newest good checkpoint, or start (seeded) from the stage's init; sets ``step`` and
        the spike guard; returns (model, optimizer state or None, inherited lr)."""
        from octo.model import load_model

        ctx, stage = self.ctx, self.stage
        # a process killed while writing or pruning a checkpoint leaves a .tmp-/.del- directory: never a
        # resume point (its name is not step-<N>), but it holds a model's worth of disk
        if self.main:
            remove_stale(self.sdir / "checkpoints", log=progress.info)
        self.procs.barrier()
        resume = latest_good_checkpoint(self.sdir / "checkpoints", log=self.log)
        if resume is not None:
            self.step, ckpt = resume
            model = load_model(ckpt, attn_implementation=ctx.recipe.model.attn_implementation)
            state = load_trainer_state(ckpt)
            self.packer.load_state_dict(state["packer"])
            set_rng_state(state["rng"])
            self.guard = SpikeGuard(self.cfg.spike, stage, norms=state["norms"], rollbacks=state.get("rollbacks", 0))
            check_restore(ctx, stage, ckpt, event="resume", mode="full", check_data=True, record=self.main)
            self.log(f"stage {stage}: resuming from {ckpt.relative_to(ctx.run_dir)} (step {self.step}/{self.total})")
            return model, state["optimizer"], state["inherited_lr"]
        import torch

        self.step = 0
        seed = stage_seed(ctx.recipe, stage)
        torch.manual_seed(seed)
        random.seed(seed)
        model, opt_state, inherited_lr, how = init_model(ctx, stage)
        start = init_checkpoint(ctx, stage)
        if start is not None:
            mode = "weights" if self.scfg.init == "model" else self.scfg.restore
            check_restore(ctx, stage, start, event="start", mode=mode, check_data=False, record=self.main)
        self.guard = SpikeGuard(self.cfg.spike, stage)
        self.log(f"stage {stage}: start ({how}), {self.total} steps x {self.cfg.batch_tokens} tokens")
        return model, opt_state, inherited_lr

    def _build_optimizer(self, model, opt_state: dict | None, peak: float) -> None:
        """AdamW on the (sharded) model, its state restored; ``raw_model`` is the unsharded model rank 0
        checkpoints and gates (FSDP: gathered into at every save)."""
        import torch

        model.train()
        model.config.use_cache = False
        if self.kl is not None:
            self.procs.place(self.kl.reference)
        model = self.procs.shard(model)  # FSDP: before the optimizer, which must hold the sharded parameters
        opt = torch.optim.AdamW(param_groups(model, self.cfg.optimizer.weight_decay), lr=peak,
                                betas=tuple(self.cfg.optimizer.betas), eps=self.cfg.optimizer.eps)
        if opt_state is not None:
            load_optimizer(opt, opt_state, self.cfg, self.procs, model)
        self.model, self.opt = self.procs.prepare(model, opt)
        self.raw_model = self.procs.plain(self.model)

    def _gate_start(self) -> str | None:
        """Gates of step 0 (a stage from random or model init), or of a gated checkpoint a kill left ungated;
        returns the stop verdict that ended the stage at its checkpoint, if any."""
        step, every = self.step, self.cfg.gates.eval_every
        if self.main and step == 0 and self.scfg.init in ("random", "model"):
            gate_checkpoint(self.ctx, self.stage, self.raw_model, step=0, checkpoint=None)
        elif self.main and step and every and step % every == 0 and step < self.total \
                and gate_verdict(self.ctx, self.stage, step) is None:
            gate_checkpoint(self.ctx, self.stage, self.raw_model, step=step, checkpoint=self._ckpt_dir(step))
        self.procs.barrier()
        return stop_verdict(self.ctx, self.stage, step) if step else None

    # --- one step ---------------------------------------------------------------------------
    def set_lr(self) -> float:
        lr = self.sched(self.step)
        for group in self.opt.param_groups:
            group["lr"] = lr
        return lr

    def next_batches(self) -> list[dict]:
        """The step's global micro-batches: every rank draws all of them from the same deterministic packer."""
        return [self.packer.next_batch(self.cfg.micro_batch_size) for _ in range(self.micro_per_step)]

    def lm_loss(self, logits, batch: dict, n_targets: int):
        """Next-token cross-entropy of one micro-batch, summed and divided by the step's target count."""
        import torch.nn.functional as F

        return F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)).float(),
                               batch["labels"][:, 1:].reshape(-1), ignore_index=-100, reduction="sum") / n_targets

    def forward_backward(self, batches: list[dict]) -> tuple[float, float]:
        """Gradients of the step's loss (plus beta * KL) from this rank's micro-batches; returns (loss, KL) of
        the whole step."""
        from octo.data.packing import packed_logits

        n_targets = max(1, int(sum((b["labels"][:, 1:] != -100).sum() for b in batches)))
        n_kl = self.kl.mask(batches) if self.kl is not None else 0
        loss_value = kl_value = 0.0
        procs = self.procs
        mine = batches[procs.rank::procs.size]
        for i, b in enumerate(mine):
            b = procs.to_device(b)
            with procs.no_sync(self.model, last=i == len(mine) - 1):
                logits = packed_logits(self.model, b["input_ids"], b["position_ids"])
                loss = self.lm_loss(logits, b, n_targets)
                loss_value += loss.item()
                if n_kl:
                    kl = self.kl(logits, b) / n_kl
                    kl_value += kl.item()
                    loss = loss + self.kl.coef * kl
                procs.backward(loss)
        if procs.size > 1:
            loss_value, kl_value = procs.sum(loss_value, kl_value)
        return loss_value, kl_value

    def last_good_checkpoint(self) -> tuple[int, Path] | None:
        return latest_good_checkpoint(self.sdir / "checkpoints", log=self.log)

    def apply(self, verdict: Verdict, grad_norm: float) -> None:
        """Apply the update, or drop it, or roll back to the verdict's checkpoint; say so on a spike."""
        if verdict.action == "step":
            self.opt.step()
            self.guard.accepted(grad_norm)
        self.opt.zero_grad(set_to_none=True)
        if verdict.action == "rollback":
            self.guard.rolled_back(rollback(self.ctx, self.model, self.opt, verdict.target[1], self.procs))
        if verdict.spike or not verdict.finite:
            self.log(self.guard.message(self.step + 1, grad_norm, verdict))

    def log_step(self, lr: float, loss: float, kl: float, grad_norm: float, verdict: Verdict, dt: float) -> None:
        """The step's metrics row (rank 0) and the progress bar."""
        row = {"step": self.step, "tokens": self.tokens, "lr": lr, "loss": loss, "grad_norm": grad_norm,
               "spike": verdict.spike, "skipped": verdict.action != "step", "rollback": verdict.action == "rollback",
               "time/step": dt, "tokens_per_s": self.cfg.batch_tokens / dt}
        if verdict.target is not None:
            row["rollback_to"] = verdict.target[0]
        if self.kl is not None:
            row["kl"] = kl
        row.update({f"mix/{name}": v for name, v in self.packer.mixture.shares().items()})
        if self.writer is not None:
            self.writer.write(row)
            progress.note_step(self.step)
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", refresh=False)

    # --- checkpoints and gates --------------------------------------------------------------
    @property
    def tokens(self) -> int:
        return self.step * self.cfg.batch_tokens

    def _ckpt_dir(self, step: int) -> Path:
        return self.sdir / "checkpoints" / f"step-{step}"

    def gate_due(self) -> bool:
        every = self.cfg.gates.eval_every
        return bool(every) and self.step % every == 0 and self.step != self.total

    def checkpoint_due(self) -> bool:
        every = self.scfg.save_every
        return (self.step == self.total or self.gate_due() or bool(every and self.step % every == 0)
                or self.save_time_due())

    def save_time_due(self) -> bool:
        """``cpt.save_every_s`` seconds since the last checkpoint (or since this process began the stage): a
        Ctrl-C or a kill loses at most that much work. Every rank saves when any rank's clock says so."""
        limit = self.cfg.save_every_s
        if not limit or self.cfg.spike.action == "rollback":
            return False   # a rollback's target is the newest checkpoint: it must not depend on the clock
        due = time.monotonic() - self.t_saved >= limit
        if self.procs.size > 1:
            due = self.procs.sum(float(due))[0] > 0
        return due

    def save_checkpoint(self, lr: float) -> None:
        """A full-state checkpoint of this step; under FSDP every rank takes part in gathering it to rank 0."""
        opt_full = self.procs.full_state(self.model, self.opt)
        if self.main:
            state = {"optimizer": opt_full, "packer": self.packer.state_dict(), "rng": rng_state(),
                     "step": self.step, "tokens": self.tokens, "inherited_lr": self.inherited_lr,
                     **self.guard.state()}
            save_stage_checkpoint(self.ctx, self.stage, self.raw_model, state, lr)
            progress.note_saved(self.step)
        self.procs.barrier()  # a rollback on any rank may read this checkpoint
        self.t_saved = time.monotonic()

    def gate_and_stop(self) -> bool:
        """Gate this step's checkpoint; True when the stop rule ends the stage here (``cpt.gates.on_stop``)."""
        if self.main:
            gate_checkpoint(self.ctx, self.stage, self.raw_model, step=self.step, checkpoint=self._ckpt_dir(self.step))
        self.procs.barrier()
        self.stopped = stop_verdict(self.ctx, self.stage, self.step)
        if self.stopped:
            self.end = self.step
            self.log(f"stage {self.stage}: stopped at step {self.end} by the gates' stop rule "
                     f"({stop_reason(self.stopped)}; cpt.gates.on_stop: stop); the stage ends at checkpoint "
                     f"step-{self.end}")
        return bool(self.stopped)

    # --- end --------------------------------------------------------------------------------
    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()

    def finish(self) -> dict:
        """Gates of the final checkpoint (unless the stop rule already gated it) and DONE.json."""
        end = self.end
        final_ckpt = self._ckpt_dir(end)
        done = {"stage": self.stage, "init": self.scfg.init, "restore": self.scfg.restore,
                "final_checkpoint": str(final_ckpt.relative_to(self.ctx.run_dir)), "step": end,
                "tokens": end * self.cfg.batch_tokens, "final_lr": self.sched(end - 1)}
        if self.stopped:
            done["stopped"] = self.stopped
        if self.main:
            self.raw_model.eval()
            if not self.stopped:
                gate_checkpoint(self.ctx, self.stage, self.raw_model, step=self.total, checkpoint=final_ckpt)
            write_json_atomic(self.sdir / STAGE_DONE_FILE, done)
            rows = read_jsonl(self.sdir / METRICS_FILE)
            loss = rows[-1].get("loss", float("nan")) if rows else float("nan")
            progress.info(f"stage {self.stage}: done, {end} steps, loss {loss:.3f}"
                          + (f" (stopped by the gates: {stop_reason(self.stopped)})" if self.stopped else ""))
            progress.end_position()
        self.procs.barrier()
        return done


def default_threads() -> int:
    """The threads that ``cpt.threads: 0`` means: OMP_NUM_THREADS where it is set to a positive integer (torch's own
    default reads it too), otherwise every core."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(env) if env.isdigit() and int(env) > 0 else (os.cpu_count() or 1)


def set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n or default_threads())


def stage_steps(ctx: RunContext, stage: str) -> int:
    return max(1, math.ceil(ctx.recipe.cpt.stages[stage].tokens / ctx.recipe.cpt.batch_tokens))


def read_done(ctx: RunContext, stage: str) -> dict:
    done = ctx.stage_done(stage)
    if done is None:
        raise OctoError(f"stage '{stage}' has not finished in {ctx.run_dir}; run octo cpt first")
    return read_json(ctx.stage_dir(stage) / STAGE_DONE_FILE)
