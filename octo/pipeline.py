"""``octo run RECIPE``: the whole loop on one recipe.

1. prepare the run directory (toy world, tokenizer, manifest);
2. every mid-training stage in dependency order (pretrain -> stable -> decay branches);
3. a GRPO probe from the final checkpoint of every stage in ``probe.checkpoints`` (per seed,
   plus a negative control when asked);
4. readiness scores (``scores.json``) and the report (``report/index.html``, ``report.md``).

Every step skips what is already complete, so rerunning the same command after an
interruption (Ctrl-C, kill -9) resumes from the last checkpoint and says so.
"""

from __future__ import annotations

import argparse
import sys
import time

from octo import progress
from octo.config import Recipe, add_recipe_arguments, dump_recipe, recipe_from_args, stage_order
from octo.context import RunContext
from octo.errors import OctoError
from octo.runio import PROBES_DIR, checkpoint_id


def probe_specs(ctx: RunContext, *, stages: list[str] | None = None, seeds: list[int] | None = None) -> list:
    """One probe per seed of the final checkpoint of every stage (default: probe.checkpoints x probe.seeds),
    plus the negative control when the recipe asks for one."""
    from octo.cpt.trainer import read_done
    from octo.probe.grpo import ProbeSpec

    recipe: Recipe = ctx.recipe
    seeds = recipe.probe.seeds if seeds is None else seeds
    specs = []
    for stage in recipe.probe.checkpoints if stages is None else stages:
        done = read_done(ctx, stage)
        base = dict(checkpoint=ctx.run_dir / done["final_checkpoint"],
                    checkpoint_id=checkpoint_id(stage, done["step"]), stage=stage, cpt_step=done["step"],
                    cpt_tokens=done["tokens"])
        for i, seed in enumerate(seeds):
            specs.append(ProbeSpec(seed=seed, control=None, seed_suffix=i > 0, **base))
        if recipe.probe.control != "none":
            specs.append(ProbeSpec(seed=seeds[0], control=recipe.probe.control, **base))
    return specs


def run_pipeline(recipe: Recipe, *, allow_mismatch: tuple[str, ...] = ()) -> dict:
    from octo.analysis import score_run, write_report
    from octo.cpt.trainer import run_stage
    from octo.jobs import Job, run_jobs
    from octo.plan import RunPlan

    t0 = time.monotonic()
    ctx = RunContext(recipe)
    ctx.allow_mismatch = set(allow_mismatch)
    progress.info(f"run {recipe.name} in {ctx.run_dir}")
    plan = RunPlan.build(ctx, jobs=recipe.probe.jobs)
    for line in plan.describe().splitlines():
        progress.info(f"plan: {line.strip()}")
    plan.install()   # every line says its part ("[stage 3/5]") and the run's ETA
    try:
        with progress.activity("preparing the run directory"):
            ctx.prepare()
        for stage in stage_order(recipe):
            with plan.part("stage", stage):
                run_stage(ctx, stage)
        probes = [Job(recipe, spec, f"{PROBES_DIR}/{spec.probe_id}", "probe") for spec in probe_specs(ctx)]
        run_jobs(ctx, probes, jobs_at_once=recipe.probe.jobs, threads=recipe.cpt.threads, plan=plan)
    finally:
        plan.uninstall()
    progress.info("scoring checkpoints")
    scores = score_run(ctx.run_dir)
    report = write_report(ctx.run_dir)
    progress.info(f"done in {time.monotonic() - t0:.0f}s; report: {report}")
    return scores


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    from octo.cpt.binding import add_mismatch_argument

    add_recipe_arguments(parser)
    add_mismatch_argument(parser)
    parser.add_argument("--jobs", type=int, default=None, metavar="N",
                        help="probes to run at once, each in a worker process with 1/N of the torch threads "
                             "(default: the recipe's probe.jobs)")
    parser.add_argument("--print-recipe", action="store_true",
                        help="print the resolved recipe (YAML) and exit; a run writes it to recipe.resolved.yaml")
    for action in parser._actions:   # octo run's --dry-run says the plan, not the recipe
        if "--dry-run" in action.option_strings:
            action.help = ("say what the run would do and exit, writing nothing: the run directory, each stage and "
                           "probe to run, resume or skip, their budgets and estimated times")


def run_run(args: argparse.Namespace) -> int:
    if args.jobs is not None:
        if args.jobs < 1:
            raise OctoError(f"--jobs must be at least 1 (got {args.jobs})")
        args.overrides = [*args.overrides, f"probe.jobs={args.jobs}"]
    recipe = recipe_from_args(args)
    if args.print_recipe:
        sys.stdout.write(dump_recipe(recipe))
        return 0
    if args.dry_run:
        from octo.plan import dry_run

        sys.stdout.write(dry_run(recipe))
        return 0
    scores = run_pipeline(recipe, allow_mismatch=tuple(args.allow_mismatch))
    rec = scores.get("recommended")
    if rec:
        print(f"recommended checkpoint: {rec} — {scores.get('reason', '')}")
    return 0
