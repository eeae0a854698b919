"""A GRPO probe: a short RL run from one checkpoint, logged for readiness analysis.

    octo probe runs/quickstart/cpt/decay-long/checkpoints/step-8 --recipe recipes/toy/quickstart.yaml

Built on TRL's ``GRPOTrainer`` (its losses, optimizer and accelerate integration). Three
things are octo's own, through TRL's public hooks:

- generation goes through an octo rollout backend via ``rollout_func`` — that is the only
  way to change the generation limit from step to step (setting TRL's
  ``max_completion_length`` mid-run does nothing), so the max-length scheduler really
  bounds every rollout;
- the reward is ``octo.verifiers``' combined reward (or a negative control), and every
  component, the verifier statuses and the lengths are logged in the probe vocabulary
  (docs/run-directory.md) by a callback;
- held-out evaluation (greedy and sampled accuracy, pass@k, lengths, clip ratio) runs at
  step 0, every ``eval_every`` steps and at the end.

A probe writes TRL checkpoints every ``save_every`` steps; a probe killed at any point
resumes from the newest complete one, and its JSONL files are cut back to that step.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean, pstdev

from octo import progress
from octo.config import ProbeConfig, Recipe
from octo.cpt.checkpoint import MANIFEST, verify_checkpoint, write_file_manifest
from octo.errors import OctoError
from octo.probe.length import LengthSchedule
from octo.runio import (EVALS_FILE, METRICS_FILE, PROBE_META_FILE, SAMPLES_FILE, JsonlWriter, read_json,
                        read_jsonl, truncate_jsonl, write_error, write_json_atomic)

CKPT_RE = re.compile(r"^checkpoint-(\d+)$")


@dataclass
class ProbeSpec:
    """What one probe runs: a checkpoint, a seed, a control."""

    checkpoint: Path          # HF checkpoint directory
    checkpoint_id: str        # <stage>.step-<N>
    seed: int
    control: str | None       # None | "random" | "format"
    stage: str | None = None
    cpt_step: int | None = None
    cpt_tokens: int | None = None

    @property
    def probe_id(self) -> str:
        pid = self.checkpoint_id
        if self.seed_suffix:
            pid += f".seed-{self.seed}"
        if self.control:
            pid += f".control-{self.control}"
        return pid

    seed_suffix: bool = False


@dataclass
class _StepStats:
    """What the rollout function and the reward saw during the current step."""

    max_len: int = 0
    time_rollout: float = 0.0
    time_verify: float = 0.0
    time_sync: float = 0.0
    rows: list = field(default_factory=list)   # per completion dicts
    group: int = 1


# What transformers' Trainer writes into checkpoint-<N>/ before trainer_state.json, which comes last
# (any one of each tuple: the weights may be sharded).
_CKPT_FILES = (("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"), ("config.json",),
               ("optimizer.pt",), ("scheduler.pt",))


def probe_checkpoint_complete(d: Path, step: int) -> bool:
    """True when a TRL checkpoint-<N> directory was written to the end.

    The Trainer writes checkpoints in place (not under a temporary name), so a probe killed while
    saving leaves checkpoint-<N>/ with some files, and its checkpoint rotation, killed mid-way, a
    directory with some files removed. trainer_state.json is written last but not atomically:
    a kill during that write leaves a truncated file, and resuming from it would fail on every
    rerun. So it must parse and name step N, and the files written before it must all be there.
    """
    if not all(any((d / f).is_file() for f in names) for names in _CKPT_FILES + ((MANIFEST,),)):
        return False  # octo's manifest is written after the Trainer's files (ProbeCallback.on_save)
    try:
        state = json.loads((d / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(state, dict) and state.get("global_step") == step


def _latest_probe_checkpoint(ckpt_root: Path, *, remove_partial: bool = False) -> tuple[int, Path] | None:
    """The newest complete checkpoint; with ``remove_partial``, incomplete ones are deleted (resume
    only: the Trainer would otherwise write into, or rotate by mtime among, half-written directories)."""
    if not ckpt_root.exists():
        return None
    found = []
    for d in ckpt_root.iterdir():
        m = CKPT_RE.match(d.name)
        if not (m and d.is_dir()):
            continue
        if probe_checkpoint_complete(d, int(m.group(1))):
            problem = verify_checkpoint(d)
            if problem is None:
                found.append((int(m.group(1)), d))
            else:  # kept for inspection; resume falls back to an older one
                progress.info(f"warning: skipping damaged probe checkpoint: {problem}; "
                              "falling back to the previous one")
        elif remove_partial:
            progress.info(f"removing incomplete probe checkpoint {d.name} (the probe was stopped while writing it)")
            shutil.rmtree(d, ignore_errors=True)
    return max(found) if found else None


def probe_meta(cfg: ProbeConfig, spec: ProbeSpec) -> dict:
    """probe.json as a run starts: what it runs from and with which settings (``rollout_tokens`` comes at the end)."""
    return {
        "probe_id": spec.probe_id, "checkpoint_id": spec.checkpoint_id, "checkpoint": str(spec.checkpoint),
        "stage": spec.stage, "cpt_step": spec.cpt_step, "cpt_tokens": spec.cpt_tokens, "seed": spec.seed,
        "control": spec.control, "backend": cfg.rollout.backend, "steps": cfg.steps,
        "prompts_per_step": cfg.prompts_per_step, "num_generations": cfg.num_generations, "lr": cfg.lr,
        "beta": cfg.beta, "temperature": cfg.temperature, "loss_type": cfg.loss_type,
        "max_len": {"kind": cfg.max_len.kind, "max_len": cfg.max_len.max_len, "stairs": cfg.max_len.stairs},
        "eval_every": cfg.eval_every, "rollout_tokens": None,
    }


# what a run's results depend on; not: where the checkpoint lies (a moved run directory), the rollout backend
# (HF generate and vLLM sample the same policy; a killed run may resume on the other), what the run measured
_NOT_SETTINGS = ("probe_id", "checkpoint_id", "checkpoint", "backend", "rollout_tokens", "heldout_hash")


def check_run_settings(probe_dir: Path, meta: dict) -> None:
    """Refuse to skip or resume a GRPO run that was started with other settings than ``meta``'s (probe.json).

    The run directory's recipe check leaves a probe's length and cadence (``probe.steps``, ``eval_every``,
    ``save_every``, ``max_len``; octo.context.PER_RUN_KEYS) to this check: a finished run, or one with a
    checkpoint to resume, keeps the settings it was started with, or is refused by name. A run that never reached
    a checkpoint starts over anyway, with the new settings."""
    probe_dir = Path(probe_dir)
    path, ckpts = probe_dir / PROBE_META_FILE, probe_dir / "checkpoints"
    # a complete checkpoint counts; its files are not hashed here (resuming verifies them once)
    started = ckpts.is_dir() and any((m := CKPT_RE.match(d.name)) and d.is_dir()
                                     and probe_checkpoint_complete(d, int(m.group(1))) for d in ckpts.iterdir())
    if not path.exists() or not ((probe_dir / "DONE.json").exists() or started):
        return
    old = read_json(path)
    new = json.loads(json.dumps(meta))   # as it reads back (the stairs' keys become strings)
    diff = [k for k in new if k not in _NOT_SETTINGS and k in old and old[k] != new[k]]
    if diff:
        shown = ", ".join(f"{k} {_short(old[k])} there, {_short(new[k])} here" for k in diff[:4])
        raise OctoError(f"{probe_dir} was run with other settings ({shown}); delete that directory to run it again "
                        "with these, or pass another --run-dir")


def _short(value) -> str:
    if isinstance(value, dict) and value.get("kind") == "stair":
        return "stair " + "/".join(f"{k}:{v}" for k, v in value["stairs"].items())
    if isinstance(value, dict):   # the other length schedules: their kind and first limit
        return f"{value.get('kind')} {value.get('max_len')}"
    return str(value)


def run_probe(recipe: Recipe, spec: ProbeSpec, probe_dir: Path, *, tokenizer=None) -> dict:
    """Run (or resume, or skip if done) one probe; returns its probe.json."""
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from octo.evaluate import evaluate_problems, select_problems
    from octo.model import load_model, load_tokenizer
    from octo.rollout import make_backend
    from octo.verifiers import control_rewards, score_completions, shared_pool

    cfg: ProbeConfig = recipe.probe
    probe_dir = Path(probe_dir)
    meta = probe_meta(cfg, spec)
    check_run_settings(probe_dir, meta)
    if (probe_dir / "DONE.json").exists():
        progress.info(f"probe {spec.probe_id}: already complete, skipping")
        return read_json(probe_dir / PROBE_META_FILE)
    probe_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = tokenizer or load_tokenizer(spec.checkpoint)
    schedule = LengthSchedule(cfg.max_len)
    write_json_atomic(probe_dir / PROBE_META_FILE, meta)

    from octo.context import RunContext  # for problem files relative to the run

    ctx = RunContext(recipe)
    prompts = ctx.problems(recipe.data.prompts)
    heldout = select_problems(ctx.problems(recipe.data.heldout), cfg.eval_problems)
    meta["heldout_hash"] = hashlib.sha256(json.dumps([(p["question"], p["answer"]) for p in heldout])
                                          .encode()).hexdigest()[:16]
    write_json_atomic(probe_dir / PROBE_META_FILE, meta)
    dataset = Dataset.from_list([{"prompt": cfg.prompt_template.format(question=p["question"]),
                                  "answer": p["answer"]} for p in prompts])

    ckpt_root = probe_dir / "checkpoints"
    resume = _latest_probe_checkpoint(ckpt_root, remove_partial=True)
    resume_step = resume[0] if resume else 0
    for name in (METRICS_FILE, EVALS_FILE, SAMPLES_FILE):
        # without a checkpoint the probe starts over, step-0 evaluation included: keep no row (keeping
        # step <= 0 left the killed attempt's step-0 eval row, and the new one was appended after it)
        truncate_jsonl(probe_dir / name, keep_step_le=resume_step if resume else -1)
    if resume:
        progress.info(f"probe {spec.probe_id}: resuming from {resume[1].name}")
    else:
        progress.info(f"probe {spec.probe_id}: start from {spec.checkpoint_id}, {cfg.steps} steps, "
                      f"{cfg.prompts_per_step} prompts x {cfg.num_generations}")
    clip_history = [r.get("clip_ratio") for r in read_jsonl(probe_dir / METRICS_FILE)]

    model = load_model(spec.checkpoint, attn_implementation=recipe.model.attn_implementation)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    pool = shared_pool(recipe.verifier)
    stats = _StepStats(group=cfg.num_generations)
    backend_box: dict = {}

    def backend_for(trainer):
        if "b" not in backend_box:
            live = trainer.accelerator.unwrap_model(trainer.model) if trainer is not None else model
            backend_box["b"] = make_backend(cfg.rollout, tokenizer=tokenizer, model=live,
                                            model_path=str(spec.checkpoint))
            backend_box["synced"] = resume_step
        return backend_box["b"]

    def rollout_func(prompts: list[str], trainer) -> dict:
        backend = backend_for(trainer)
        step = trainer.state.global_step
        t0 = time.perf_counter()
        if backend_box["synced"] != step:
            backend.update_weights(trainer.accelerator.unwrap_model(trainer.model), step=step)
            backend_box["synced"] = step
        stats.time_sync = time.perf_counter() - t0
        stats.max_len = schedule.limit(step, clip_history)
        t0 = time.perf_counter()
        # TRL hands each prompt num_generations times in a row; generate n per distinct prompt.
        G = cfg.num_generations
        distinct = prompts[::G]
        ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in distinct]
        was_training = trainer.model.training
        trainer.model.eval()
        groups = backend.generate(ids, n=G, max_tokens=stats.max_len, temperature=cfg.temperature,
                                  seed=spec.seed * 1_000_003 + step)
        if was_training:
            trainer.model.train()
        stats.time_rollout = time.perf_counter() - t0
        out = {"prompt_ids": [], "completion_ids": [], "logprobs": [], "finish_reason": []}
        for p_ids, group in zip(ids, groups):
            for c in group:
                out["prompt_ids"].append(p_ids)
                out["completion_ids"].append(c.token_ids)
                out["logprobs"].append(c.logprobs)
                out["finish_reason"].append(c.finish_reason)
        return out

    def reward(prompts, completions, completion_ids=None, answer=None, finish_reason=None, trainer_state=None,
               **_):
        t0 = time.perf_counter()
        lengths = [len(c) for c in completion_ids]
        parts = score_completions(completions, answer, reward=recipe.probe.reward, verifier=recipe.verifier,
                                  lengths=lengths, max_len=stats.max_len, pool=pool)
        step = trainer_state.global_step if trainer_state is not None else 0
        if spec.control:
            totals = control_rewards(spec.control, completions, seed=spec.seed, step=step)
        else:
            totals = [p.total for p in parts]
        stats.time_verify = time.perf_counter() - t0
        stats.rows = [{"prompt": pr, "completion": c, "gold": g, "reward": t, "parts": p, "length": n,
                       "finish_reason": fr} for pr, c, g, t, p, n, fr in
                      zip(prompts, completions, answer, totals, parts, lengths, finish_reason)]
        return totals

    reward.__name__ = f"control_{spec.control}" if spec.control else "math_reward"

    metrics_w = JsonlWriter(probe_dir / METRICS_FILE)
    evals_w = JsonlWriter(probe_dir / EVALS_FILE)
    samples_w = JsonlWriter(probe_dir / SAMPLES_FILE)

    def run_eval(step: int, trainer=None) -> None:
        live = trainer.accelerator.unwrap_model(trainer.model) if trainer is not None else model
        was = live.training
        live.eval()
        # evaluations use the schedule's largest limit at every step, so the learning curve does not
        # jump when a stair step raises the training limit
        res = evaluate_problems(backend_for(trainer), tokenizer, heldout, template=cfg.prompt_template,
                                max_new_tokens=schedule.maximum, verifier=recipe.verifier,
                                pool=pool, k=cfg.eval_samples, temperature=cfg.temperature,
                                seed=spec.seed * 7 + 12345)
        if was:
            live.train()
        res.pop("_greedy")
        evals_w.write({"step": step, "max_len": schedule.maximum, **res})

    class ProbeCallback(TrainerCallback):
        def __init__(self):
            self.t_step = 0.0
            self.bar = None

        def on_save(self, args, state, control, **kw):
            # sizes and hashes of the Trainer's checkpoint files: a truncated or altered file is
            # found at resume (verify_checkpoint), which then falls back to an older checkpoint
            d = ckpt_root / f"checkpoint-{state.global_step}"
            if d.is_dir():
                write_file_manifest(d, {"probe_id": spec.probe_id, "step": state.global_step})

        def on_train_begin(self, args, state, control, **kw):
            self.bar = progress.bar(cfg.steps, spec.probe_id, initial=state.global_step)

        def on_step_begin(self, args, state, control, **kw):
            self.t_step = time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kw):
            if not logs or "loss" not in logs or not stats.rows:
                return
            rows = stats.rows
            parts = [r["parts"] for r in rows]
            correct = [int(p.result.correct) for p in parts]
            lengths = [r["length"] for r in rows]
            rewards = [r["reward"] for r in rows]
            G = stats.group
            zero_std = [pstdev(rewards[i:i + G]) == 0 for i in range(0, len(rewards), G)]
            comps = sorted({k for p in parts for k in p.components})
            step = state.global_step
            elapsed = time.perf_counter() - self.t_step
            row = {
                "step": step, "max_len": stats.max_len,
                "reward/mean": mean(rewards), "reward/std": pstdev(rewards),
                **{f"reward/{k}": mean(p.components.get(k, 0.0) for p in parts) for k in comps},
                "acc": mean(correct), "frac_zero_std": mean(zero_std),
                "len/mean": mean(lengths),
                "len/correct": mean([n for n, c in zip(lengths, correct) if c]) if any(correct) else None,
                "len/incorrect": mean([n for n, c in zip(lengths, correct) if not c]) if not all(correct) else None,
                "clip_ratio": mean(int(r["finish_reason"] == "length") for r in rows),
                "repeat_rate": mean(int(p.repeated) for p in parts),
                "multi_boxed_rate": mean(int(p.multi_boxed) for p in parts),
                "no_answer_rate": mean(int(p.result.status == "no_answer") for p in parts),
                "entropy": logs.get("entropy"), "kl": logs.get("kl"), "loss": logs.get("loss"),
                "grad_norm": logs.get("grad_norm"), "lr": logs.get("learning_rate"),
                "time/rollout": stats.time_rollout, "time/verify": stats.time_verify,
                "time/sync": stats.time_sync,
                "time/train": max(0.0, elapsed - stats.time_rollout - stats.time_verify - stats.time_sync),
            }
            clip_history.append(row["clip_ratio"])
            metrics_w.write(row)
            for r in rows[: cfg.log_samples]:
                res = r["parts"].result
                samples_w.write({"step": step, "prompt": r["prompt"], "completion": r["completion"],
                                 "gold": r["gold"], "reward": r["reward"], "status": res.status,
                                 "extracted": res.extracted, "length": r["length"],
                                 "finish_reason": r["finish_reason"]})
            if self.bar is not None:
                self.bar.update(1)
                self.bar.set_postfix(acc=f"{row['acc']:.2f}", len=f"{row['len/mean']:.0f}", refresh=False)

        def on_step_end(self, args, state, control, trainer=None, **kw):
            step = state.global_step
            if step % cfg.eval_every == 0 or step == cfg.steps:
                run_eval(step, trainer_ref["t"])

        def on_train_end(self, args, state, control, **kw):
            if self.bar is not None:
                self.bar.close()

    use_cpu = not torch.cuda.is_available()
    args = GRPOConfig(
        output_dir=str(ckpt_root), per_device_train_batch_size=cfg.prompts_per_step * cfg.num_generations,
        num_generations=cfg.num_generations, gradient_accumulation_steps=1, steps_per_generation=1,
        learning_rate=cfg.lr, lr_scheduler_type="constant", warmup_steps=0, max_steps=cfg.steps,
        beta=cfg.beta, temperature=cfg.temperature, loss_type=cfg.loss_type,
        mask_truncated_completions=cfg.mask_truncated_completions,
        max_completion_length=schedule.maximum, bf16=False, fp16=False, use_cpu=use_cpu,
        activation_checkpointing=False, logging_steps=1, save_strategy="steps", save_steps=cfg.save_every,
        save_total_limit=2, report_to=[], seed=spec.seed, data_seed=spec.seed, disable_tqdm=True,
        log_completions=False, dataloader_num_workers=0, shuffle_dataset=True,
    )
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = GRPOTrainer(model=model, reward_funcs=[reward], args=args, train_dataset=dataset,
                              processing_class=tokenizer, rollout_func=rollout_func,
                              callbacks=[ProbeCallback()])
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer_ref = {"t": trainer}
    try:
        if resume is None:
            run_eval(0, trainer)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.train(resume_from_checkpoint=str(resume[1]) if resume else None)
    except OctoError:
        raise
    except Exception as err:
        # the Trainer's checkpoint writes (torch.save, safetensors) fail on a full or read-only disk with
        # RuntimeError / SafetensorError: say so in one line, and drop the half-written checkpoint
        # (never a resume point: see probe_checkpoint_complete) to give the space back
        octo_err = write_error(err, ckpt_root, "write probe checkpoints in",
                               "the last complete checkpoint is intact")
        if octo_err is None:
            raise
        _latest_probe_checkpoint(ckpt_root, remove_partial=True)
        raise octo_err from None
    finally:
        metrics_w.close()
        evals_w.close()
        samples_w.close()
        b = backend_box.get("b")
        if b is not None:
            b.close()
    rows = read_jsonl(probe_dir / METRICS_FILE)
    per_step = cfg.prompts_per_step * cfg.num_generations
    meta["rollout_tokens"] = int(round(sum((r.get("len/mean") or 0) * per_step for r in rows)))
    write_json_atomic(probe_dir / PROBE_META_FILE, meta)
    write_json_atomic(probe_dir / "DONE.json", {"probe_id": spec.probe_id, "steps": len(rows)})
    evals = read_jsonl(probe_dir / EVALS_FILE)
    if evals:
        progress.info(f"probe {spec.probe_id}: done; held-out acc {evals[0]['acc']:.3f} -> {evals[-1]['acc']:.3f}"
                      + (f", sampled {evals[0].get('acc/sampled', 0):.3f} -> {evals[-1].get('acc/sampled', 0):.3f}"
                         if cfg.eval_samples else ""))
    return meta


def check_probe_checkpoint(path: Path) -> None:
    if not (Path(path) / "config.json").exists():
        raise OctoError(f"{path} is not a checkpoint directory (no config.json); pass a "
                        "cpt/<stage>/checkpoints/step-N directory")
