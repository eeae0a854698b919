"""What a validation full run's held-out evaluations cost, measured in the same run: one full RL run from a checkpoint
twice, side by side, one torch thread each (as ``octo validate --jobs 2`` gives), evaluated every ``--every`` steps
(the baseline: the recipe's cadence before ``validation.full_eval_steps``) and at the recipe's own steps.

    python benchmarks/full_run_evals.py CHECKPOINT [--recipe recipes/toy/validation.yaml] [--every 30]
                                        [--seed 1000] [--out /tmp/full-run-evals] [--reduced] [--set KEY=VALUE ...]

The full run is ``octo validate``'s (octo.validate.full_run_recipe: ``validation.full_steps``, the full length
stair, its handling of cut completions); ``--set`` overrides the recipe as for ``octo validate`` (the world and
model of the run directory the checkpoint comes from, e.g. ``--set model.num_layers=5``), after the recipe's
``validation.reduced`` overrides with ``--reduced`` (``octo validate --reduced``'s tiny sizes). Both runs train the same
rollouts and weights (how often a run is evaluated does not change what it trains: tests/probe/test_probe.py), so
the difference of their wall times is what the extra evaluations cost. Prints one JSON object: each run's wall
seconds and evaluation steps, the saving, and whether the two runs' training metrics and their evaluations at the
steps both made are equal.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from side_by_side import run_side_by_side  # noqa: E402


def full_run_sets(recipe_path: Path, sets: list[str], every: int | None, reduced: bool = False) -> list[str]:
    """``octo probe --set`` overrides that make a probe the recipe's full run (evaluated every ``every`` steps
    instead of at the recipe's steps when ``every`` is given)."""
    from octo.probe.length import LengthSchedule
    from octo.validate import full_run_recipe, validation_recipe

    if reduced:
        sets = [*validation_recipe(str(recipe_path), []).validation.reduced, *sets]
    recipe = validation_recipe(str(recipe_path), list(sets))
    p = full_run_recipe(recipe).probe
    stairs = ", ".join(f"{k}: {v}" for k, v in sorted(p.max_len.stairs.items())) if p.max_len.kind == "stair" else ""
    length = (f"probe.max_len={{kind: stair, stairs: {{{stairs}}}}}" if stairs
              else f"probe.max_len={{kind: constant, max_len: {LengthSchedule(p.max_len).maximum}}}")
    # the probe section now runs the full run: the probe-to-full-run budget check does not apply
    return [*sets, "validation.max_probe_ratio=1", f"probe.steps={p.steps}", f"probe.save_every={p.save_every}",
            "probe.start_samples=0", length,
            f"probe.mask_truncated_completions={str(p.mask_truncated_completions).lower()}",
            f"probe.eval_every={every or p.eval_every}", f"probe.eval_steps={[] if every else p.eval_steps}"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--recipe", type=Path, default=REPO / "recipes" / "toy" / "validation.yaml")
    ap.add_argument("--every", type=int, default=30, help="the baseline's evaluation cadence (steps)")
    ap.add_argument("--seed", type=int, default=1000, help="the full run's seed (octo validate's first: 1000)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/full-run-evals"))
    ap.add_argument("--reduced", action="store_true", help="apply the recipe's validation.reduced overrides first")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    if args.every < 1:
        ap.error("--every must be at least 1")
    if not (args.checkpoint / "config.json").exists():
        ap.error(f"{args.checkpoint} is not a checkpoint directory (no config.json)")
    if args.out.exists() and any(args.out.iterdir()):
        ap.error(f"{args.out} is not empty (an earlier run's): pass another --out or remove it")
    from octo.errors import OctoError
    from octo.runio import read_jsonl

    try:
        variants = {"every": full_run_sets(args.recipe, args.sets, args.every, args.reduced),
                    "recipe": full_run_sets(args.recipe, args.sets, None, args.reduced)}
    except OctoError as err:
        ap.error(str(err))
    outs = {k: args.out / k for k in variants}
    for out in outs.values():
        out.mkdir(parents=True)
    wall = run_side_by_side({k: (args.checkpoint, outs[k], args.recipe, args.seed, sets)
                             for k, sets in variants.items()}, "full run")
    metrics = {k: [{m: v for m, v in r.items() if not m.startswith("time/")}
                   for r in read_jsonl(o / "probe" / "metrics.jsonl")] for k, o in outs.items()}
    evals = {k: {r["step"]: r for r in read_jsonl(o / "probe" / "evals.jsonl")} for k, o in outs.items()}
    shared = sorted(set(evals["every"]) & set(evals["recipe"]))
    same_evals = all(evals["every"][s]["per_problem/greedy"] == evals["recipe"][s]["per_problem/greedy"]
                     and evals["every"][s].get("per_problem/sampled") == evals["recipe"][s].get("per_problem/sampled")
                     for s in shared)
    n_every, n_recipe = len(evals["every"]), len(evals["recipe"])
    print(json.dumps({
        "checkpoint": str(args.checkpoint), "seed": args.seed, "steps": len(metrics["recipe"]),
        "baseline": {"eval_steps": sorted(evals["every"]), "wall_s": round(wall["every"], 1)},
        "recipe": {"eval_steps": sorted(evals["recipe"]), "wall_s": round(wall["recipe"], 1)},
        "saved_s": round(wall["every"] - wall["recipe"], 1),
        "saved_share": round(1 - wall["recipe"] / wall["every"], 3),
        "seconds_per_evaluation": round((wall["every"] - wall["recipe"]) / (n_every - n_recipe), 1)
        if n_every != n_recipe else None,
        "same_training_metrics": metrics["every"] == metrics["recipe"],
        "same_evaluations_at_shared_steps": same_evals, "shared_eval_steps": shared,
    }, indent=1))


if __name__ == "__main__":
    main()
