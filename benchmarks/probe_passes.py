"""The training step in one pass against length-grouped passes (octo.probe.passes), measured in the same run: two
``octo probe`` runs from the same checkpoint side by side, one torch thread each (as ``--jobs 2`` gives), one with
``probe.micro_batch_size: 0`` (TRL's one pass over the step, padded to its longest completion), one with ``--micro``.

    python benchmarks/probe_passes.py CHECKPOINT [CHECKPOINT ...] [--recipe recipes/toy/validation.yaml]
                                      [--steps 20] [--stairs 0:256] [--eval-every 0] [--eval-problems 20]
                                      [--micro 16] [--out /tmp/probe-passes]

A validation full run (120 steps, the recipe's stairs, its evaluations every 30 steps):
``--steps 120 --stairs 0:64,30:96,60:160,90:256 --eval-every 30 --eval-problems 300``.

Reports per checkpoint the seconds of TRL's step (``time/train``: its forward, backward and optimizer step, and the
held-out evaluations that end a step; the rollout excluded), of the rollouts, and of the whole run, the speed-ups,
and how far the two runs' logged metrics are apart at step 1 (the same rollouts and, up to float rounding, the
same step) and after. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from side_by_side import run_side_by_side

REPO = Path(__file__).resolve().parents[1]


def probe_sets(args, micro: int) -> list[str]:
    steps = args.steps
    return [f"validation.full_steps={steps * 100}", f"probe.steps={steps}",
            f"probe.eval_every={args.eval_every or steps * 10}", f"probe.save_every={steps * 10}",
            "probe.start_samples=0", f"probe.eval_problems={args.eval_problems}",
            f"probe.max_len={{kind: stair, stairs: {{{args.stairs}}}}}", f"probe.micro_batch_size={micro}"]


def stairs(spec: str) -> str:
    """``0:64,30:96`` as a YAML mapping's body (``0: 64, 30: 96``); argparse's ``type`` for ``--stairs``."""
    try:
        return ", ".join(f"{int(step)}: {int(limit)}" for step, limit in (s.split(":") for s in spec.split(",")))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{spec!r} is not STEP:LIMIT stairs, e.g. 0:64,30:96") from None


def rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "probe" / "metrics.jsonl").read_text().splitlines()]


def rel(a, b) -> float:
    return abs(a - b) / max(abs(a), abs(b), 1e-12)


def compare(checkpoint: Path, args) -> dict:
    outs = {m: args.out / f"{checkpoint.parent.parent.name}-{checkpoint.name}-m{m}" for m in (0, args.micro)}
    for out in outs.values():
        out.mkdir(parents=True, exist_ok=False)
    wall = run_side_by_side({m: (checkpoint, out, args.recipe, 0, probe_sets(args, m)) for m, out in outs.items()},
                            "probe with micro_batch_size")
    one, grouped = rows(outs[0]), rows(outs[args.micro])
    total = {m: {k: sum(r[f"time/{k}"] for r in rs) for k in ("train", "rollout")}
             for m, rs in ((0, one), (args.micro, grouped))}
    keys = ("reward/mean", "len/mean", "entropy", "loss", "grad_norm")
    same_rollouts = next((i for i, (a, b) in enumerate(zip(one, grouped)) if a["len/mean"] != b["len/mean"]), None)
    return {
        "checkpoint": str(checkpoint), "steps": args.steps, "stairs": args.stairs,
        "len/mean": round(sum(r["len/mean"] for r in one) / len(one), 1),
        "one_pass": {"train_s": round(total[0]["train"], 1), "rollout_s": round(total[0]["rollout"], 1),
                     "wall_s": round(wall[0], 1)},
        f"passes_of_{args.micro}": {"train_s": round(total[args.micro]["train"], 1),
                                    "rollout_s": round(total[args.micro]["rollout"], 1),
                                    "wall_s": round(wall[args.micro], 1)},
        "train_speedup": round(total[0]["train"] / total[args.micro]["train"], 2),
        "wall_speedup": round(wall[0] / wall[args.micro], 2),
        "step1_rel_diff": {k: float(f"{rel(one[0][k], grouped[0][k]):.1e}") for k in keys},
        "steps_with_equal_rollout_lengths": len(one) if same_rollouts is None else same_rollouts,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+", type=Path)
    ap.add_argument("--recipe", type=Path, default=REPO / "recipes" / "toy" / "validation.yaml")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--stairs", type=stairs, default="0:256", help="the length limit: STEP:LIMIT stairs, comma-separated")
    ap.add_argument("--eval-every", type=int, default=0, help="held-out evaluations (0: at the start and end)")
    ap.add_argument("--eval-problems", type=int, default=20)
    ap.add_argument("--micro", type=int, default=16)
    ap.add_argument("--out", type=Path, default=Path("/tmp/probe-passes"))
    args = ap.parse_args()
    if args.micro < 1:
        ap.error("--micro must be at least 1 (0 is the one-pass baseline this compares against)")
    missing = [str(c) for c in args.checkpoints if not (c / "config.json").exists()]
    if missing:
        ap.error(f"not a checkpoint directory (no config.json): {', '.join(missing)}")
    if args.out.exists() and any(args.out.iterdir()):
        ap.error(f"{args.out} is not empty (an earlier run's probes): pass another --out or remove it")
    print(json.dumps({"runs": [compare(c.resolve(), args) for c in args.checkpoints]}, indent=1))


if __name__ == "__main__":
    main()
