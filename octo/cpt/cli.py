"""``octo cpt RECIPE [--stage NAME]``: run mid-training stages of a recipe."""

from __future__ import annotations

import argparse
import sys

from octo.config import add_recipe_arguments, dump_recipe, recipe_from_args, stage_order
from octo.errors import OctoError


def add_cpt_arguments(parser: argparse.ArgumentParser) -> None:
    add_recipe_arguments(parser)
    parser.add_argument("--stage", action="append", default=[],
                        help="stage to run (repeatable; default: every stage in dependency order); the "
                             "stages it starts from must have finished")


def run_cpt(args: argparse.Namespace) -> int:
    from octo.context import RunContext
    from octo.cpt.trainer import run_stage

    recipe = recipe_from_args(args)
    for name in args.stage:
        if name not in recipe.cpt.stages:
            raise OctoError(f"--stage {name}: no such stage; the recipe's stages are "
                            f"{', '.join(recipe.cpt.stages) or '(none)'}")
    if args.dry_run:
        sys.stdout.write(dump_recipe(recipe))
        return 0
    ctx = RunContext(recipe)
    ctx.prepare()
    for stage in stage_order(recipe):
        if not args.stage or stage in args.stage:
            run_stage(ctx, stage)
    return 0
