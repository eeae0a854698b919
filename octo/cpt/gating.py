"""Gating during a stage: gate a checkpoint, write its gates.jsonl row with the stop rule's verdict.

The verdict (analysis/gates.py: stability gap against the reference M(0), the stop rule) needs the
gates rows of the run's stages so far and nothing else: they are read from the stages' gates.jsonl.
"""

from __future__ import annotations

import random
from pathlib import Path

from octo import progress
from octo.runio import CPT_DIR, GATES_FILE, checkpoint_id, JsonlWriter, read_jsonl, truncate_jsonl


def gate_checkpoint(ctx, stage: str, model, *, step: int, checkpoint: Path | None) -> None:
    """Gate the model as checkpoint ``step`` of ``stage`` and write the row, with the stop rule's verdict.

    Generation draws from the RNGs; they are restored afterwards, so a run with gates trains exactly
    like one without. Rows of a stage trained from random init get no verdict: its reference (the base
    model, seed 001 M(0)) is its own final checkpoint, unknown until it ends.
    """
    import torch

    from octo.cpt.gates import evaluate_gates

    py_state = random.getstate()
    ckpt_id = checkpoint_id(stage, step)
    with torch.random.fork_rng(devices=[]), progress.activity(f"gates {ckpt_id}"):
        row = evaluate_gates(ctx, model)
    random.setstate(py_state)
    row = {"step": step, "tokens": step * ctx.recipe.cpt.batch_tokens,
           "checkpoint": str(checkpoint.relative_to(ctx.run_dir)) if checkpoint else None,
           "checkpoint_id": ckpt_id, **row}
    path = ctx.stage_dir(stage) / GATES_FILE
    truncate_jsonl(path, keep_step_le=step - 1 if step else -1)
    verdict = _verdict(ctx, stage, row) if ctx.recipe.cpt.stages[stage].init != "random" else None
    if verdict is not None:
        row["verdict"] = verdict
    with JsonlWriter(path) as w:
        w.write(row)
    acc_key = f"acc/{ctx.recipe.cpt.gates.benchmark}"
    acc = row.get(acc_key)
    progress.info(f"gates {ckpt_id}: ppl/general {row['ppl/general']:.2f}"
                  + (f", {acc_key} {acc:.3f}" if acc is not None else "")
                  + (f"; {verdict_words(ctx, stage, step, verdict)}" if verdict else ""))


def stop_reason(verdict: str) -> str:
    """'general regression' of the stored verdict 'stop: general regression'."""
    return verdict.split(":", 1)[1].strip() if verdict.startswith("stop:") else verdict


def verdict_words(ctx, stage: str, step: int, verdict: str) -> str:
    """The verdict as the terminal says it: the stop rule's verdict (stored as 'stop: <reason>') is a stop only
    when it ends the stage (``cpt.gates.on_stop: stop`` at a checkpoint before the stage's last); otherwise
    the stage and the run go on, and the line says so."""
    from octo.cpt.trainer import stage_steps

    if not verdict.startswith("stop:"):
        return verdict
    reason, on_stop = stop_reason(verdict), ctx.recipe.cpt.gates.on_stop
    if on_stop == "stop" and 0 < step < stage_steps(ctx, stage):
        return f"stop ({reason}): the stage ends at this checkpoint (cpt.gates.on_stop: stop)"
    why = ("cpt.gates.on_stop: flag" if on_stop != "stop" else
           "the stage's starting checkpoint; cpt.gates.on_stop: stop" if step == 0 else
           "the stage's last checkpoint; cpt.gates.on_stop: stop")
    return f"would stop ({reason}); the run goes on ({why})"


def _verdict(ctx, stage: str, row: dict) -> str | None:
    """The stop rule's verdict on ``row`` given the gates written so far by every stage of the run."""
    from octo.analysis.gates import gate_table
    from octo.analysis.load import Run, Stage

    root = ctx.run_dir / CPT_DIR
    inits = {name: scfg.init for name, scfg in ctx.recipe.cpt.stages.items()}
    others = sorted(d.name for d in root.iterdir() if d.is_dir() and d.name not in inits) if root.is_dir() else []
    stages = {}
    for name in list(inits) + others:
        path = ctx.stage_dir(name) / GATES_FILE
        rows = read_jsonl(path) if path.exists() else []
        if name == stage:
            rows.append(row)
        if rows:   # by step, a repeated step keeping its last row, as octo.analysis reads them
            by_step = {r["step"]: r for r in rows if isinstance(r.get("step"), int)}
            stages[name] = Stage(name=name, path=path.parent, metrics=[], gates=[by_step[k] for k in sorted(by_step)],
                                 done=None, init=inits.get(name))
    table = gate_table(Run(path=ctx.run_dir, name=ctx.run_dir.name, recipe=None, stages=stages),
                       ctx.recipe.analysis)
    return next((r.get("verdict") for r in table["rows"] if r["checkpoint_id"] == row["checkpoint_id"]), None)


def gate_verdict(ctx, stage: str, step: int) -> str | None:
    """The verdict written for checkpoint ``step`` of ``stage`` ('' when gated without one; None: not gated)."""
    path = ctx.stage_dir(stage) / GATES_FILE
    for row in read_jsonl(path) if path.exists() else []:
        if row.get("step") == step:
            return row.get("verdict") or ""
    return None


def stop_verdict(ctx, stage: str, step: int) -> str | None:
    """The stop rule's verdict at ``step`` when it fired and ``cpt.gates.on_stop`` is ``stop``."""
    if ctx.recipe.cpt.gates.on_stop != "stop":
        return None
    verdict = gate_verdict(ctx, stage, step)
    return verdict if verdict and verdict.startswith("stop:") else None
