"""The probe's TRL callback: one metrics row per GRPO step, sampled completions, held-out evaluations.

Rows use the probe vocabulary of docs/run-directory.md. This module subclasses transformers'
``TrainerCallback``, so only the probe imports it.
"""

from __future__ import annotations

import time
from pathlib import Path
from statistics import mean, pstdev

from transformers import TrainerCallback

from octo import progress
from octo.accuracy import group_success_counts
from octo.cpt.checkpoint import write_file_manifest
from octo.probe.reward import ProbeReward, ScoredBatch
from octo.probe.rollouts import ProbeRollouts
from octo.runio import EVALS_FILE, METRICS_FILE, SAMPLES_FILE, START_FILE, JsonlWriter


def _mean_or_none(xs: list) -> float | None:
    return mean(xs) if xs else None


def metrics_row(step: int, batch: ScoredBatch, group: int, logs: dict) -> dict:
    """The step's rollout and reward statistics (per completion means) and TRL's training figures (``logs``)."""
    parts = batch.parts
    correct = [int(p.result.correct) for p in parts]
    rewards, lengths = batch.rewards, batch.lengths
    zero_std = [pstdev(rewards[i:i + group]) == 0 for i in range(0, len(rewards), group)]
    components = sorted({k for p in parts for k in p.components})
    return {
        "step": step,
        "reward/mean": mean(rewards), "reward/std": pstdev(rewards),
        **{f"reward/{k}": mean(p.components.get(k, 0.0) for p in parts) for k in components},
        "acc": mean(correct), "frac_zero_std": mean(zero_std),
        "per_group/correct": group_success_counts(correct, group),
        "len/mean": mean(lengths),
        "len/correct": _mean_or_none([n for n, c in zip(lengths, correct) if c]),
        "len/incorrect": _mean_or_none([n for n, c in zip(lengths, correct) if not c]),
        "clip_ratio": mean(int(fr == "length") for fr in batch.finish_reasons),
        "repeat_rate": mean(int(p.repeated) for p in parts),
        "multi_boxed_rate": mean(int(p.multi_boxed) for p in parts),
        "no_answer_rate": mean(int(p.result.status == "no_answer") for p in parts),
        "entropy": logs.get("entropy"), "kl": logs.get("kl"), "loss": logs.get("loss"),
        "grad_norm": logs.get("grad_norm"), "lr": logs.get("learning_rate"),
    }


def sample_rows(step: int, batch: ScoredBatch, n: int) -> list[dict]:
    """samples.jsonl rows of the step's first ``n`` completions."""
    return [{"step": step, "prompt": batch.prompts[i], "completion": batch.completions[i], "gold": batch.golds[i],
             "reward": batch.rewards[i], "status": batch.parts[i].result.status,
             "extracted": batch.parts[i].result.extracted, "length": batch.lengths[i],
             "finish_reason": batch.finish_reasons[i]} for i in range(min(n, len(batch.rewards)))]


class ProbeMetricsCallback(TrainerCallback):
    """Writes metrics.jsonl and samples.jsonl after every step, evals.jsonl after the steps that ``evaluates_at``
    (the probe's ``ProbeConfig.evaluates_at``) accepts and at the end, start.jsonl once before the first step, and a
    file manifest into every checkpoint the Trainer saves (a truncated or altered file is then found at resume, which
    falls back to an older checkpoint)."""

    def __init__(self, probe_dir: Path, probe_id: str, *, rollouts: ProbeRollouts, reward: ProbeReward,
                 evaluate, start, evaluates_at, log_samples: int, save_every_s: float = 0.0):
        self.probe_dir, self.probe_id = Path(probe_dir), probe_id
        self.rollouts, self.reward, self.evaluate, self.start = rollouts, reward, evaluate, start
        self.evaluates_at, self.log_samples = evaluates_at, log_samples
        self.metrics = JsonlWriter(self.probe_dir / METRICS_FILE)
        self.evals = JsonlWriter(self.probe_dir / EVALS_FILE)
        self.samples = JsonlWriter(self.probe_dir / SAMPLES_FILE)
        self.t_step = 0.0
        self.bar = None
        self.save_every_s = save_every_s
        self.t_saved = time.monotonic()   # the time-based save counts from the probe's start in this process

    def write_eval(self, step: int) -> None:
        with progress.activity(f"{self.probe_id}: held-out evaluation at step {step}"):
            row = self.evaluate()
        self.evals.write({"step": step, **row})

    def write_start(self, prompts: list[dict], heldout: list[dict]) -> None:
        """start.jsonl: the step-0 sampling pass (success counts for pass@k, headroom, learnable mass)."""
        with progress.activity(f"{self.probe_id}: step-0 sampling pass"):
            rows = self.start(heldout=heldout, prompts=prompts)
        if rows:
            with JsonlWriter(self.probe_dir / START_FILE, mode="w") as out:
                for row in rows:
                    out.write(row)

    def on_train_begin(self, args, state, control, **kw):
        self.bar = progress.bar(args.max_steps, self.probe_id, initial=state.global_step)

    def on_step_begin(self, args, state, control, **kw):
        self.t_step = time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kw):
        batch = self.reward.batch
        if not logs or "loss" not in logs or batch is None:
            return
        ro = self.rollouts
        elapsed = time.perf_counter() - self.t_step
        row = {"step": state.global_step, "max_len": ro.max_len,
               **metrics_row(state.global_step, batch, args.num_generations, logs),
               "time/rollout": ro.time_rollout, "time/verify": batch.seconds, "time/sync": ro.time_sync,
               "time/train": max(0.0, elapsed - ro.time_rollout - batch.seconds - ro.time_sync)}
        ro.clip_history.append(row["clip_ratio"])
        self.metrics.write(row)
        for sample in sample_rows(state.global_step, batch, self.log_samples):
            self.samples.write(sample)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(acc=f"{row['acc']:.2f}", len=f"{row['len/mean']:.0f}", refresh=False)

    def on_step_end(self, args, state, control, **kw):
        progress.note_step(state.global_step)
        if self.evaluates_at(state.global_step) or state.global_step == args.max_steps:
            self.write_eval(state.global_step)
        # a time-based save (probe.save_every_s) beside the Trainer's every save_steps: after the evaluation,
        # whose row the checkpoint's step then covers
        if self.save_every_s and time.monotonic() - self.t_saved >= self.save_every_s:
            control.should_save = True

    def on_save(self, args, state, control, **kw):
        d = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if d.is_dir():
            write_file_manifest(d, {"probe_id": self.probe_id, "step": state.global_step})
        self.t_saved = time.monotonic()
        progress.note_saved(state.global_step)

    def on_train_end(self, args, state, control, **kw):
        if self.bar is not None:
            self.bar.close()

    def close(self) -> None:
        for writer in (self.metrics, self.evals, self.samples):
            writer.close()
