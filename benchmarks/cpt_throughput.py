"""CPT throughput: octo's stage loop vs a plain ``transformers.Trainer`` on the same tiny Llama and data.

    python benchmarks/cpt_throughput.py [--steps 10] [--seq-len 256] [--micro 16] [--accum 1]
                                        [--threads 2] [--warmup 2]

Both train the toy Llama of recipes/toy/scratch.yaml (``octo.model.build_toy_model``, same seed, same initial
weights) from scratch for the same number of optimizer steps, each step ``--accum`` micro-batches
of ``--micro`` rows of at most ``--seq-len`` tokens, AdamW with the same settings, on the
recipes/toy/scratch.yaml's ``pretrain`` mixture of a toy world's documents:

- octo: ``octo.cpt.trainer.run_stage`` on stage ``pretrain`` — documents packed into full rows with
  EOS boundaries and per-document positions (no padding). Seconds are the rows' ``time/step``
  (data packing + forward + backward + optimizer step).
- Trainer: the usual padded-per-document batching — one document per row (the documents octo's
  sampler drew, in that order, cut at ``--seq-len``), ``DataCollatorForLanguageModeling``-style
  padding to the longest row of each micro-batch with pad labels -100, the Trainer's default
  seeded shuffling. Seconds are wall time between the end of step ``warmup`` and the end of the last
  step (``TrainerCallback.on_step_end``).

Figures exclude the first ``--warmup`` steps. ``tokens_per_s`` counts document tokens (the tokens
trained on); ``slots_per_s`` counts every position computed (pads included). ``padding_waste`` is the
share of positions in the batches actually fed to the model that hold no document token. Each side
runs in its own subprocess so that ``peak_rss_mb`` (``ru_maxrss``) is its own. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
SCRATCH = REPO / "recipes" / "toy" / "scratch.yaml"  # the quickstart from random init: it has the pretrain stage
LR = 2.0e-3


def figures(tokens: int, slots: int, seconds: float) -> dict:
    """Document tokens/s, positions/s and padding waste of ``slots`` positions holding ``tokens`` tokens."""
    return {"tokens": tokens, "seconds": round(seconds, 3), "tokens_per_s": round(tokens / seconds, 1),
            "slots_per_s": round(slots / seconds, 1), "padding_waste": round(1 - tokens / slots, 4)}


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KiB


def recipe(args, run_dir: Path):
    from octo.config import load_recipe

    batch = args.seq_len * args.micro * args.accum
    return load_recipe(SCRATCH, [
        f"run_dir={run_dir}", "world.docs_per_source=600", "world.prompts=50", "world.heldout_per_level=5",
        f"cpt.seq_len={args.seq_len}", f"cpt.micro_batch_size={args.micro}", f"cpt.batch_tokens={batch}",
        f"cpt.threads={args.threads}", f"cpt.stages.pretrain.tokens={batch * args.steps}",
        f"cpt.stages.pretrain.schedule.lr={LR}", "cpt.stages.pretrain.schedule.kind=constant",
        "cpt.stages.pretrain.schedule.warmup_steps=0",
        "cpt.gates.heldout_docs=1", "cpt.gates.problems=0", "cpt.gates.if_items=0",
    ])


def run_octo(args, run_dir: Path) -> dict:
    from octo.context import RunContext
    from octo.cpt.trainer import run_stage
    from octo.data.cli import draw
    from octo.runio import read_jsonl

    ctx = RunContext(recipe(args, run_dir))
    ctx.prepare()
    run_stage(ctx, "pretrain")
    rows = read_jsonl(ctx.stage_dir("pretrain") / "metrics.jsonl")[args.warmup:]
    seconds = sum(r["time/step"] for r in rows)
    batch = ctx.recipe.cpt.batch_tokens
    # the rows octo trained on, drawn again from the same sampler (stage_packer): a position holds a document
    # token when it equals the token at that place of the sampled documents laid end to end
    res = draw(ctx, "pretrain", args.steps * batch)
    seqs = res.sequences
    stream = [t for _, d in res.pulled for t in d.ids]
    flat = [t for ids, _, _ in seqs for t in ids]
    slots = len(flat)
    doc_tokens = sum(a == b for a, b in zip(flat, stream))
    out = figures(batch * len(rows), batch * len(rows), seconds)
    out["padding_waste"] = round(1 - doc_tokens / slots, 4)
    out["loss_masked_share"] = round(sum(x == -100 for _, _, lab in seqs for x in lab) / slots, 4)
    out["final_loss"] = round(read_jsonl(ctx.stage_dir("pretrain") / "metrics.jsonl")[-1]["loss"], 4)
    return out


def run_trainer(args, run_dir: Path) -> dict:
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from octo.context import RunContext
    from octo.data.cli import draw
    from octo.model import build_toy_model

    torch.set_num_threads(args.threads)
    ctx = RunContext(recipe(args, run_dir))  # the prepared run directory, read only
    tok = ctx.tokenizer
    n_rows = args.steps * args.micro * args.accum
    pulled = []
    tokens = args.seq_len * n_rows
    while len(pulled) < n_rows:  # the documents octo's sampler draws, in its order
        pulled = draw(ctx, "pretrain", tokens).pulled
        tokens *= 2
    docs = [{"input_ids": d.ids[:args.seq_len]} for _, d in pulled[:n_rows]]
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    counts: list[tuple[int, int]] = []

    def collate(rows):
        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, :len(r["input_ids"])] = torch.tensor(r["input_ids"])
            mask[i, :len(r["input_ids"])] = 1
        labels = ids.masked_fill(mask == 0, -100)
        counts.append((int(mask.sum()), mask.numel()))
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    ends: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, *_a, **_k):
            ends.append(time.perf_counter())

    model = build_toy_model(ctx.recipe.model, tok, ctx.recipe.seed)
    opt = ctx.recipe.cpt.optimizer
    targs = TrainingArguments(
        output_dir=str(run_dir / "hf-trainer"), per_device_train_batch_size=args.micro,
        gradient_accumulation_steps=args.accum, max_steps=args.steps, learning_rate=LR,
        lr_scheduler_type="constant", warmup_steps=0, weight_decay=opt.weight_decay, adam_beta1=opt.betas[0],
        adam_beta2=opt.betas[1], adam_epsilon=opt.eps, max_grad_norm=opt.grad_clip, logging_strategy="no",
        save_strategy="no", report_to=[], use_cpu=True, dataloader_num_workers=0, seed=ctx.recipe.seed,
        remove_unused_columns=False, disable_tqdm=True)
    trainer = Trainer(model=model, args=targs, train_dataset=docs, data_collator=collate, callbacks=[Clock()])
    trainer.train()
    timed = counts[args.warmup * args.accum:args.steps * args.accum]
    out = figures(sum(c[0] for c in timed), sum(c[1] for c in timed), ends[-1] - ends[args.warmup - 1])
    every = counts[:args.steps * args.accum]
    out["padding_waste"] = round(1 - sum(c[0] for c in every) / sum(c[1] for c in every), 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--micro", type=int, default=16)
    ap.add_argument("--accum", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--worker", choices=["octo", "trainer"], help=argparse.SUPPRESS)
    ap.add_argument("--run-dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        from octo import progress

        progress.quiet_libraries()
        fn = run_octo if args.worker == "octo" else run_trainer
        t0 = time.perf_counter()
        out = fn(args, Path(args.run_dir))
        out["peak_rss_mb"] = peak_rss_mb()
        out["process_seconds"] = round(time.perf_counter() - t0, 1)
        print(json.dumps(out))
        return
    with tempfile.TemporaryDirectory(prefix="octo-bench-cpt-") as tmp:
        from octo.context import RunContext

        run_dir = Path(tmp) / "run"
        ctx = RunContext(recipe(args, run_dir))
        ctx.prepare()  # world + tokenizer once, so both workers read the same documents
        ctx.release()
        res = {}
        for worker in ("trainer", "octo"):
            cmd = [sys.executable, __file__, "--worker", worker, "--run-dir", str(run_dir)] + [
                f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k not in ("worker", "run_dir")]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                sys.stderr.write(proc.stderr)
                raise SystemExit(f"{worker} worker failed (exit {proc.returncode})")
            res[worker] = json.loads(proc.stdout.strip().splitlines()[-1])
    octo, hf = res["octo"], res["trainer"]
    print(json.dumps({
        "config": {"steps": args.steps, "warmup_steps_excluded": args.warmup, "seq_len": args.seq_len,
                   "micro_batch": args.micro, "accum": args.accum, "threads": args.threads,
                   "model": "quickstart toy Llama (hidden 128, 3 layers)", "data": "quickstart pretrain mixture"},
        "octo": octo, "trainer": hf,
        "ratio_tokens_per_s": round(octo["tokens_per_s"] / hf["tokens_per_s"], 3),
        "ratio_slots_per_s": round(octo["slots_per_s"] / hf["slots_per_s"], 3),
        "targets": {"ratio_tokens_per_s": ">= 1.0", "octo_padding_waste": "< 0.01"},
    }, indent=1))


if __name__ == "__main__":
    main()
