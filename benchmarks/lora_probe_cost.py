"""What a LoRA probe (``probe.lora``) costs against a full-fine-tuning probe, in one run, on the toy world.

    python benchmarks/lora_probe_cost.py [--steps 12] [--rank 16] [--overrides KEY=VALUE ...]

Builds one toy world and one toy model checkpoint (the quickstart recipe's model, random init, in a temporary
directory), then runs ``octo probe`` from it twice with the same settings, full and ``probe.lora.rank=<rank>``
(hf rollouts), one after the other. Prints one JSON object: per probe the median seconds per step of the step
(``time/step``, rollout + verify + sync + train), of ``time/train`` and of ``time/rollout`` (step 1 left out:
it pays for warm-up), the trainable parameters, and the bytes of one probe checkpoint; and the LoRA/full ratios.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
QUICKSTART = REPO / "recipes" / "toy" / "quickstart.yaml"

BASE = ["world.docs_per_source=200", "world.prompts=200", "world.heldout_per_level=20",
        "probe.prompts_per_step=8", "probe.num_generations=8", "probe.eval_problems=8", "probe.eval_samples=1",
        "probe.start_samples=0", "probe.max_len.kind=constant", "probe.max_len.max_len=48", "probe.log_samples=0"]


def prepare(run_dir: Path, overrides: list[str]) -> Path:
    """The run's world and tokenizer, and a random-init toy model saved as a checkpoint; returns it."""
    from octo.config import load_recipe_dict, parse_recipe
    from octo.context import random_init_checkpoint

    recipe = parse_recipe(copy.deepcopy(load_recipe_dict(QUICKSTART)), overrides + [f"run_dir={run_dir}"])
    return random_init_checkpoint(recipe, run_dir / "init-ckpt")


def trainable(ckpt: Path, rank: int | None) -> tuple[int, int]:
    """(trainable parameters, all parameters) of the probe's model, full or with LoRA adapters."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(ckpt)
    if rank is not None:
        from octo.probe.grpo import lora_peft_config
        from octo.rl_config import ProbeLoraConfig
        from peft import get_peft_model

        model = get_peft_model(model, lora_peft_config(ProbeLoraConfig(rank=rank)))
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def run_probe(name: str, run_dir: Path, ckpt: Path, overrides: list[str]) -> dict:
    cmd = [sys.executable, "-m", "octo.cli", "probe", str(ckpt), "--recipe", str(QUICKSTART), "--run-dir",
           str(run_dir), "--out", str(run_dir / "probes" / name)]
    for o in overrides:
        cmd += ["--set", o]
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if res.returncode != 0:
        raise SystemExit(f"lora_probe_cost: the {name} probe failed:\n{res.stderr[-3000:]}")
    pdir = run_dir / "probes" / name
    rows = [json.loads(ln) for ln in (pdir / "metrics.jsonl").read_text().splitlines() if ln.strip()][1:]

    def med(key):
        return round(statistics.median(r[key] for r in rows), 4)

    step = [r["time/rollout"] + r["time/verify"] + r["time/sync"] + r["time/train"] for r in rows]
    ckpts = sorted((pdir / "checkpoints").glob("checkpoint-*"), key=lambda d: int(d.name.split("-")[1]))
    return {"time/step": round(statistics.median(step), 4), "time/train": med("time/train"),
            "time/rollout": med("time/rollout"), "steps_timed": len(rows),
            "checkpoint_bytes": sum(f.stat().st_size for f in ckpts[-1].iterdir() if f.is_file())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--lora-lr", default="2.0e-4", help="probe.lr of the LoRA probe (the full one keeps its own)")
    ap.add_argument("--overrides", nargs="*", default=[], help="extra --set KEY=VALUE for both probes")
    args = ap.parse_args()
    common = BASE + [f"probe.steps={args.steps}", f"probe.save_every={args.steps}",
                     f"probe.eval_every={args.steps}"] + args.overrides
    lora = [f"probe.lora.rank={args.rank}", f"probe.lr={args.lora_lr}"]
    out: dict = {"settings": {"steps": args.steps, "rank": args.rank, "overrides": common}}
    with tempfile.TemporaryDirectory(prefix="octo-lora-cost-") as tmp:
        for name, extra, rank in (("full", [], None), ("lora", lora, args.rank)):
            run_dir = Path(tmp) / name   # one run directory each: the recipe record differs in probe.lora
            ckpt = prepare(run_dir, common + extra)
            out[name] = run_probe(name, run_dir, ckpt, common + extra)
            out[name]["trainable_params"], out[name]["params"] = trainable(ckpt, rank)
    out["ratio_lora_over_full"] = {k: round(out["lora"][k] / out["full"][k], 3)
                                   for k in ("time/step", "time/train", "time/rollout", "checkpoint_bytes",
                                             "trainable_params")}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
