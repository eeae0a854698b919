"""``octo probe CHECKPOINT --recipe RECIPE``: a GRPO probe from one checkpoint."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from octo.config import add_recipe_arguments, dump_recipe, recipe_from_args
from octo.errors import OctoError
from octo.runio import checkpoint_id, checkpoint_location


def checkpoint_identity(path: Path) -> tuple[str, str | None, int | None]:
    """(checkpoint id, stage, step) of a checkpoint path: <stage>.step-<N> for cpt/<stage>/checkpoints/step-<N>,
    else the directory's name."""
    where = checkpoint_location(path)
    if where is None:
        return Path(path).name, None, None
    _, stage, step = where
    return checkpoint_id(stage, step), stage, step


def add_probe_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="checkpoint directory (HF format), e.g. "
                                           "runs/x/cpt/stable/checkpoints/step-40")
    parser.add_argument("--recipe", required=True, help="recipe whose probe/data/verifier sections are used")
    add_recipe_arguments(parser, recipe_required=False)
    parser.add_argument("--seed", type=int, default=None, help="probe seed (default: the recipe's first)")
    parser.add_argument("--control", choices=["random", "format"], default=None,
                        help="run a negative-control probe instead of the real reward")
    parser.add_argument("--out", default=None, help="probe directory (default: <run>/probes/<probe-id>)")


def run_probe(args: argparse.Namespace) -> int:
    from octo.context import RunContext
    from octo.model import load_tokenizer
    from octo.probe.grpo import ProbeSpec, check_probe_checkpoint, run_grpo_probe

    args.recipe, recipe_path = args.recipe, args.recipe
    recipe = recipe_from_args(argparse.Namespace(recipe=recipe_path, overrides=args.overrides,
                                                 run_dir=args.run_dir))
    if args.dry_run:
        sys.stdout.write(dump_recipe(recipe))
        return 0
    ckpt = Path(args.checkpoint)
    if not ckpt.exists():
        raise OctoError(f"checkpoint {ckpt} does not exist")
    check_probe_checkpoint(ckpt)
    ckpt_id, stage, step = checkpoint_identity(ckpt.resolve())
    seed = args.seed if args.seed is not None else recipe.probe.seeds[0]
    spec = ProbeSpec(checkpoint=ckpt, checkpoint_id=ckpt_id, seed=seed, control=args.control, stage=stage,
                     cpt_step=step, seed_suffix=seed != recipe.probe.seeds[0])
    ctx = RunContext(recipe)
    ctx.prepare()
    out = Path(args.out) if args.out else ctx.run_dir / "probes" / spec.probe_id
    run_grpo_probe(recipe, spec, out, tokenizer=load_tokenizer(ckpt))
    print(out)
    return 0
