"""``octo cpt RECIPE [--stage NAME]``: run mid-training stages of a recipe.

Data-parallel on W processes (DDP or FSDP2; see octo.cpt.parallel, recipes/accelerate/ and the README):

    accelerate launch --config_file recipes/accelerate/ddp.yaml --num_processes 2 -m octo.cli cpt RECIPE
    accelerate launch --config_file recipes/accelerate/fsdp.yaml --num_processes 2 -m octo.cli cpt RECIPE
    torchrun --nproc_per_node 2 -m octo.cli cpt RECIPE
"""

from __future__ import annotations

import argparse
import sys

from octo.config import add_recipe_arguments, dump_recipe, recipe_from_args, stage_order
from octo.errors import OctoError


def add_cpt_arguments(parser: argparse.ArgumentParser) -> None:
    from octo.cpt.binding import add_mismatch_argument

    add_recipe_arguments(parser)
    add_mismatch_argument(parser)
    parser.add_argument("--stage", action="append", default=[],
                        help="stage to run (repeatable; default: every stage in dependency order); the "
                             "stages it starts from must have finished")


def run_cpt(args: argparse.Namespace) -> int:
    from octo.context import RunContext
    from octo.cpt.parallel import process_state
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
    ctx.allow_mismatch = set(args.allow_mismatch)
    # under accelerate launch / torchrun: rank 0 prepares (and locks) the run directory, the others read it
    world = process_state()
    if world is None or world.is_main_process:
        ctx.prepare()
    if world is not None:
        world.wait_for_everyone()
    try:
        for stage in stage_order(recipe):
            if not args.stage or stage in args.stage:
                run_stage(ctx, stage)
    except BaseException:
        if world is not None:
            world.destroy_process_group()
        raise
    if world is not None:
        _end_process_group(world)
    return 0


def _end_process_group(world) -> None:
    """After the stages: free what still refers to the process group (under FSDP a stage's sharded model outlives
    the stage in reference cycles until a collection), wait for every rank, then destroy the group. A model
    freed only at interpreter exit, after the group, could abort the process (SIGABRT, "terminate called without
    an active exception") once its work was done, and the launcher reports a failed run."""
    import gc

    gc.collect()
    world.wait_for_everyone()
    world.destroy_process_group()
