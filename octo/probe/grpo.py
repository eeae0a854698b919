"""A GRPO probe: a short RL run from one checkpoint, logged for readiness analysis.

    octo probe runs/quickstart/cpt/decay-long/checkpoints/step-8 --recipe recipes/toy/quickstart.yaml

TRL's ``GRPOTrainer`` (its losses, optimizer and accelerate integration; with ``probe.micro_batch_size``, its passes
grouped by completion length: octo.probe.passes) with three octo parts, through TRL's public hooks:

- :class:`~octo.probe.rollouts.ProbeRollouts`, the ``rollout_func``: the rollout backend and the
  max-length schedule (and the held-out evaluations, on the same backend);
- :class:`~octo.probe.reward.ProbeReward`: the verifier's ``MathReward`` (or a ``ControlReward`` in its
  place), picklable like TRL's own reward functions;
- :class:`~octo.probe.callback.ProbeMetricsCallback`: metrics.jsonl, samples.jsonl and evals.jsonl in
  the probe vocabulary (docs/run-directory.md); held-out evaluation at step 0, every ``eval_every``
  steps, at the ``eval_steps`` and at the end.

A probe writes TRL checkpoints every ``save_every`` steps and after any step that ends ``save_every_s`` seconds
after the last checkpoint; a probe killed at any point resumes from
the newest complete one (octo.probe.checkpoints), and its JSONL files are cut back to that step.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from octo import progress
from octo.config import ProbeConfig, Recipe
from octo.errors import OctoError
from octo.probe.checkpoints import latest_probe_checkpoint
from octo.probe.length import LengthSchedule
from octo.probe.reward import ProbeReward
from octo.probe.rollouts import ProbeRollouts
from octo.reuse import check_probe_dir
from octo.runio import (CHECKPOINTS_DIR, EVALS_FILE, METRICS_FILE, PROBE_META_FILE, SAMPLES_FILE, STAGE_DONE_FILE,
                        START_FILE, read_json, read_jsonl, truncate_jsonl, write_error, write_json_atomic)
from octo.schema import to_dict

DONE_FILE = STAGE_DONE_FILE


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


def probe_meta(cfg: ProbeConfig, spec: ProbeSpec) -> dict:
    """probe.json as a run starts: what it runs from and with which settings (``rollout_tokens`` comes at the end)."""
    return {
        "probe_id": spec.probe_id, "checkpoint_id": spec.checkpoint_id, "checkpoint": str(spec.checkpoint),
        "stage": spec.stage, "cpt_step": spec.cpt_step, "cpt_tokens": spec.cpt_tokens, "seed": spec.seed,
        "control": spec.control, "backend": cfg.rollout.backend, "steps": cfg.steps,
        "prompts_per_step": cfg.prompts_per_step, "num_generations": cfg.num_generations, "lr": cfg.lr,
        "beta": cfg.beta, "temperature": cfg.temperature, "loss_type": cfg.loss_type,
        "max_len": {"kind": cfg.max_len.kind, "max_len": cfg.max_len.max_len, "stairs": cfg.max_len.stairs},
        "eval_every": cfg.eval_every, "eval_steps": sorted(cfg.eval_steps), "start_samples": cfg.start_samples,
        "start_max_len": cfg.start_max_len,
        "start_heldout_problems": cfg.start_heldout_problems, "start_prompt_problems": cfg.start_prompt_problems,
        "lora": to_dict(cfg.lora) if cfg.lora else None,
        "rollout_tokens": None,
    }


def run_grpo_probe(recipe: Recipe, spec: ProbeSpec, probe_dir: Path, *, tokenizer=None) -> dict:
    """Run (or resume, or skip if done) one probe; returns its probe.json."""
    from octo.model import load_tokenizer

    cfg: ProbeConfig = recipe.probe
    probe_dir = Path(probe_dir)
    progress.quiet_libraries()   # before the model loads (a worker process calls it here too)
    meta = probe_meta(cfg, spec)
    check_probe_dir(probe_dir, meta)
    if (probe_dir / DONE_FILE).exists():
        progress.info(f"probe {spec.probe_id}: already complete, skipping")
        return read_json(probe_dir / PROBE_META_FILE)
    peft_config = lora_peft_config(cfg.lora) if cfg.lora else None   # before any work: peft may be missing
    probe_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = tokenizer or load_tokenizer(spec.checkpoint)
    write_json_atomic(probe_dir / PROBE_META_FILE, meta)
    prompts, heldout = _problems(recipe)
    meta["heldout_hash"] = hashlib.sha256(json.dumps([(p["question"], p["answer"]) for p in heldout])
                                          .encode()).hexdigest()[:16]
    write_json_atomic(probe_dir / PROBE_META_FILE, meta)
    resume = _resume_point(probe_dir, spec, cfg)
    progress.begin_position(f"probe {spec.probe_id}", step=resume[0] if resume else 0, total=cfg.steps)
    trainer, callback = _build_trainer(recipe, spec, probe_dir, tokenizer, prompts, heldout, resume, peft_config)
    try:
        if resume is None:
            callback.write_eval(0)
            callback.write_start(prompts, heldout)
        _train(trainer, resume, probe_dir / CHECKPOINTS_DIR)
    finally:
        callback.close()
        callback.rollouts.close()
    return _finish(probe_dir, cfg, spec, meta)


def _problems(recipe: Recipe) -> tuple[list[dict], list[dict]]:
    """The RL prompts and the held-out problems (``probe.eval_problems`` of them, every level represented)."""
    from octo.context import RunContext  # for problem files relative to the run
    from octo.accuracy import select_problems

    ctx = RunContext(recipe)
    return ctx.problems(recipe.data.prompts), select_problems(ctx.problems(recipe.data.heldout),
                                                              recipe.probe.eval_problems)


def _resume_point(probe_dir: Path, spec: ProbeSpec, cfg: ProbeConfig) -> tuple[int, Path] | None:
    """The checkpoint to resume from (incomplete ones removed), with the JSONL files cut back to its step."""
    resume = latest_probe_checkpoint(probe_dir / CHECKPOINTS_DIR, remove_partial=True)
    for name in (METRICS_FILE, EVALS_FILE, SAMPLES_FILE, START_FILE):
        # without a checkpoint the probe starts over, step-0 evaluation included: keep no row
        truncate_jsonl(probe_dir / name, keep_step_le=resume[0] if resume else -1)
    if resume:
        progress.info(f"probe {spec.probe_id}: resuming from {resume[1].name}")
    else:
        progress.info(f"probe {spec.probe_id}: start from {spec.checkpoint_id}, {cfg.steps} steps, "
                      f"{cfg.prompts_per_step} prompts x {cfg.num_generations}")
    return resume


def lora_peft_config(lora):
    """peft's ``LoraConfig`` for ``probe.lora`` (a causal-LM task, no bias terms trained)."""
    try:
        from peft import LoraConfig
    except ImportError:
        raise OctoError("probe.lora needs the peft package, which is not installed; run "
                        "`pip install 'octo-midtrain[lora]'` (or `pip install peft`), or drop probe.lora") from None
    return LoraConfig(task_type="CAUSAL_LM", r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=list(lora.target_modules), bias="none")


def _build_trainer(recipe: Recipe, spec: ProbeSpec, probe_dir: Path, tokenizer, prompts: list[dict],
                   heldout: list[dict], resume: tuple[int, Path] | None, peft_config=None):
    """TRL's GRPOTrainer with octo's rollouts, reward and metrics callback; returns (trainer, callback).

    With ``peft_config`` (a LoRA probe) TRL wraps the model in a ``PeftModel``; peft injects the adapters into the
    loaded model object itself, so the rollouts, which hold that object, generate from the adapted policy."""
    import warnings

    import hashlib
    import json

    import pyarrow as pa
    from datasets import Dataset
    from datasets.table import InMemoryTable
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from octo.model import load_model
    from octo.probe.callback import ProbeMetricsCallback
    from octo.probe.passes import trainer_class
    from octo.verifiers import ControlReward, MathReward, shared_pool

    cfg = recipe.probe
    rows = [{"prompt": cfg.prompt_template.format(question=p["question"]), "answer": p["answer"]} for p in prompts]
    # a fingerprint of our own: datasets' default one pickles the arrow table, which fails under Python 3.12 with
    # the pyarrow 26 of the GPU machine (scripts/gpu-check.sh: "Can't pickle <class 'MonthDayNano'>")
    dataset = Dataset(InMemoryTable(pa.Table.from_pylist(rows)),
                      fingerprint=hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16])
    model = load_model(spec.checkpoint, attn_implementation=recipe.model.attn_implementation)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    pool = shared_pool(recipe.verifier)
    rollouts = ProbeRollouts(cfg, tokenizer=tokenizer, model=model, model_path=str(spec.checkpoint), seed=spec.seed,
                             synced_step=resume[0] if resume else 0,
                             clip_history=[r.get("clip_ratio") for r in read_jsonl(probe_dir / METRICS_FILE)])
    control = ControlReward(spec.control, seed=spec.seed) if spec.control else None
    if control is not None:
        control.calls = resume[0] if resume else 0   # its draw of step s is the one an unbroken run makes
    reward = ProbeReward(MathReward(cfg.reward, recipe.verifier), control)
    callback = ProbeMetricsCallback(probe_dir, spec.probe_id, rollouts=rollouts, reward=reward,
                                    evaluate=partial(rollouts.evaluate, heldout, verifier=recipe.verifier, pool=pool),
                                    start=partial(rollouts.start_pass, pool=pool),
                                    evaluates_at=cfg.evaluates_at, log_samples=cfg.log_samples,
                                    save_every_s=cfg.save_every_s)
    if peft_config is not None:
        _check_lora_targets(model, peft_config.target_modules)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = trainer_class()(model=model, reward_funcs=[reward], args=_grpo_config(cfg, spec, probe_dir),
                                  train_dataset=dataset, processing_class=tokenizer, rollout_func=rollouts,
                                  callbacks=[callback], peft_config=peft_config)
    rollouts.trainer = trainer   # held-out evaluations push the current weights first
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    return trainer, callback


def _check_lora_targets(model, targets) -> None:
    """Every target must name a linear module of the model (peft matches a name at the end of a module path): peft
    raises a bare ValueError when none matches and says nothing when only some do."""
    import torch

    linear = [name for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in linear)]
    if missing:
        leaves = sorted({n.rsplit(".", 1)[-1] for n in linear})
        raise OctoError(f"probe.lora.target_modules names {', '.join(missing)}, which is no linear module of "
                        f"{model.config.model_type}; choose among {', '.join(leaves)}")


def _grpo_config(cfg: ProbeConfig, spec: ProbeSpec, probe_dir: Path):
    """TRL's settings for one probe: one generation per optimizer step, a constant learning rate, float32."""
    import dataclasses

    import torch
    from trl import GRPOConfig

    # transformers 5.2x calls it activation_checkpointing, earlier 5.x (the GPU machine's 5.17) gradient_checkpointing
    names = {f.name for f in dataclasses.fields(GRPOConfig)}
    checkpointing = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    batch = cfg.per_step
    micro = cfg.micro_batch_size or batch
    return GRPOConfig(**{checkpointing: False},
        output_dir=str(probe_dir / CHECKPOINTS_DIR),
        # one generation of the whole batch per optimizer step, trained in batch / micro accumulated passes
        per_device_train_batch_size=micro, num_generations=cfg.num_generations,
        gradient_accumulation_steps=batch // micro, steps_per_generation=batch // micro,
        learning_rate=cfg.lr, lr_scheduler_type="constant", warmup_steps=0, max_steps=cfg.steps,
        beta=cfg.beta, temperature=cfg.temperature, loss_type=cfg.loss_type,
        mask_truncated_completions=cfg.mask_truncated_completions,
        max_completion_length=LengthSchedule(cfg.max_len).maximum, bf16=False, fp16=False,
        use_cpu=not torch.cuda.is_available(), logging_steps=1,
        save_strategy="steps", save_steps=cfg.save_every, save_total_limit=2, report_to=[], seed=spec.seed,
        data_seed=spec.seed, disable_tqdm=True, log_completions=False, dataloader_num_workers=0,
        shuffle_dataset=True,
    )


def _train(trainer, resume: tuple[int, Path] | None, ckpt_root: Path) -> None:
    """``trainer.train``, with a failed checkpoint write said in one line."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.train(resume_from_checkpoint=str(resume[1]) if resume else None)
    except OctoError:
        raise
    except Exception as err:
        # the Trainer's checkpoint writes (torch.save, safetensors) fail on a full or read-only disk with
        # RuntimeError / SafetensorError: say so in one line, and drop the half-written checkpoint
        # (never a resume point: see probe_checkpoint_complete) to give the space back
        octo_err = write_error(err, ckpt_root, "write probe checkpoints in", "the last complete checkpoint is intact")
        if octo_err is None:
            raise
        latest_probe_checkpoint(ckpt_root, remove_partial=True)
        raise octo_err from None


def _finish(probe_dir: Path, cfg: ProbeConfig, spec: ProbeSpec, meta: dict) -> dict:
    """probe.json with the rollout tokens the probe generated, then DONE.json."""
    rows = read_jsonl(probe_dir / METRICS_FILE)
    meta["rollout_tokens"] = int(round(sum((r.get("len/mean") or 0) * cfg.per_step for r in rows)))
    write_json_atomic(probe_dir / PROBE_META_FILE, meta)
    write_json_atomic(probe_dir / DONE_FILE, {"probe_id": spec.probe_id, "steps": len(rows)})
    progress.end_position()
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
