"""``octo validate RECIPE``: does the readiness ranking of short probes predict the ranking after full RL?

    octo validate recipes/toy/validation.yaml --jobs 2 --doc docs/validation.md   # the experiment (~2 h, 2 cores)
    octo validate recipes/toy/validation.yaml --reduced                      # the pipeline check (minutes)

1. the mid-training stages the validated checkpoints need (each, and the stages it starts from), in dependency
   order (``octo cpt``'s ``run_stage``); a stage no validated checkpoint needs is not trained;
2. from the final checkpoint of every validated stage (``validation.checkpoints``), for every seed: a
   probe (``run_grpo_probe`` with the recipe's ``probe`` section, into ``probes/<id>``, so ``octo score RUN``
   scores them) and a full RL run (the same probe with ``validation.full_steps`` steps, into
   ``validation/full/<id>``); for ``validation.stair_vs_fixed.checkpoint``, full runs with a fixed long
   length limit too (``validation/fixed/<id>``);
3. ``validation/plan.json`` (which directory belongs to which checkpoint, the settings), then
   octo.analysis.validation: Kendall tau of each predictor's ranking against the full-RL ranking with
   bootstrap CIs, the OctoThinker findings, and the page ``validation/validation.md`` (and ``--doc``).

``--jobs N`` runs N GRPO runs at once, each in a worker process with 1/N of the torch threads (a tiny
model leaves cores idle); the probes go first, then the full and fixed-limit runs, longest first as the
probes' rollout tokens predict, so that no worker is left alone with a long run at the end. Workers die
with the command (PR_SET_PDEATHSIG), so a killed command leaves nothing writing.

Every run resumes: finished stages and runs are skipped, a killed one continues from its last
checkpoint, so rerunning the same command after an interruption picks up where it stopped.
``--reduced`` first applies the recipe's ``validation.reduced`` overrides (tiny sizes, one seed).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import shlex
import sys
import time

from octo import progress
from octo.config import (
    LengthScheduleConfig,
    Recipe,
    add_recipe_arguments,
    dump_recipe,
    load_recipe_dict,
    parse_recipe,
    stage_order,
)
from octo.errors import OctoError
from octo.jobs import Job, run_jobs
from octo.runio import PROBES_DIR, read_json, write_json_atomic


def validation_recipe(path: str, overrides: list[str], *, reduced: bool = False) -> Recipe:
    """The recipe as ``octo validate`` runs it: with ``reduced``, ``validation.reduced`` is applied before
    the user's overrides (which win)."""
    raw = load_recipe_dict(path)
    if not reduced:
        recipe = parse_recipe(raw, overrides)
    else:
        # the list is read from the recipe as written: the user's overrides apply to the reduced recipe
        listed = parse_recipe(copy.deepcopy(raw)).validation.reduced
        if not listed:
            raise OctoError(f"recipe {path} has no validation.reduced overrides, so --reduced has nothing to "
                            "apply; add them (see recipes/toy/validation.yaml) or drop --reduced")
        recipe = parse_recipe(raw, list(listed) + list(overrides))
    recipe.validate_validation()
    return recipe


def full_run_recipe(recipe: Recipe, max_len: LengthScheduleConfig | None = None, steps: int = 0,
                    eval_steps: tuple[int, ...] = ()) -> Recipe:
    """The recipe whose probe is a full RL run: ``validation.full_*`` replace the probe's length schedule, its
    handling of cut completions and its evaluation and checkpoint cadence, and (``max_len``, ``steps``) its length
    schedule and number of steps, ``eval_steps`` adds evaluations; it makes no step-0 sampling pass (the
    checkpoint's probes have made it, and the analysis reads theirs); everything else is the probe's."""
    v = recipe.validation
    steps = steps or v.full_steps
    mask = recipe.probe.mask_truncated_completions if v.full_mask_truncated_completions is None \
        else v.full_mask_truncated_completions
    probe = dataclasses.replace(recipe.probe, steps=steps, eval_every=min(v.full_eval_every, steps),
                                eval_steps=sorted({s for s in (*v.full_eval_steps, *eval_steps) if s < steps}),
                                save_every=v.full_save_every, start_samples=0,
                                max_len=max_len or v.full_max_len or recipe.probe.max_len,
                                mask_truncated_completions=mask)
    return dataclasses.replace(recipe, probe=probe)


def _schedule_text(cfg: LengthScheduleConfig) -> str:
    if cfg.kind == "stair":
        return "stair " + " -> ".join(f"{v} (step {k})" for k, v in sorted(cfg.stairs.items()))
    if cfg.kind == "constant":
        return f"fixed {cfg.max_len}"
    return f"{cfg.kind} {cfg.max_len} -> {cfg.end_len}"


def _describe(recipe: Recipe, stage: str) -> str:
    s = recipe.cpt.stages[stage]
    mix = ", ".join(f"{k} {v:g}" for k, v in s.mixture.items())
    start = "random init" if s.init == "random" else f"from {s.init}"
    return f"{start}, {s.tokens:,} tokens, {s.schedule.kind} LR; mixture {mix}"


def _expected_cost(run_dir, plan_rows: dict, job: Job) -> float:
    """Rollout tokens a GRPO run is expected to generate: its steps x its checkpoint's probes' tokens per step
    (probe.json), 0 where no probe has finished."""
    per_step = []
    for rel in plan_rows[job.spec.stage]["probes"]:
        meta = read_json(run_dir / rel / "probe.json") if (run_dir / rel / "DONE.json").exists() else {}
        if meta.get("rollout_tokens") and meta.get("steps"):
            per_step.append(meta["rollout_tokens"] / meta["steps"])
    return job.recipe.probe.steps * sum(per_step) / len(per_step) if per_step else 0.0


def longest_first(run_dir, plan_rows: dict, jobs: list[Job]) -> list[Job]:
    """``jobs`` by expected rollout tokens, largest first (stable: equal costs keep their order)."""
    return sorted(jobs, key=lambda j: -_expected_cost(run_dir, plan_rows, j))


def machine() -> dict:
    """What an invocation's wall time was measured on, so that two timings can be compared: CPU cores, the CPU's
    model name, the GPU's (None: none), and a speed that tells apart machines of the same name (float32 256x256
    matrix products on one torch thread, in GFLOP/s: about 0.2 s)."""
    import os
    import platform

    import torch

    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a, b = torch.randn(256, 256), torch.randn(256, 256)
        for _ in range(3):
            a @ b
        n, t0 = 0, time.perf_counter()
        while (dt := time.perf_counter() - t0) < 0.2:
            a @ b
            n += 1
    finally:
        torch.set_num_threads(threads)
    return {"cpus": os.cpu_count(), "cpu": cpu or platform.processor() or platform.machine(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "gflops_1thread": round(2 * 256 ** 3 * n / dt / 1e9, 1)}


def run_validation(recipe: Recipe, *, command: str, full_command: str, reduced: bool, doc: str | None = None,
                   allow_mismatch: tuple[str, ...] = (), n_jobs: int = 1) -> dict:
    from octo.analysis.validation import PLAN_FILE, VALIDATION_DIR, write_validation
    from octo.context import RunContext
    from octo.cpt.trainer import run_stage, set_threads
    from octo.probe.grpo import probe_meta
    from octo.reuse import check_probe_dir

    t0 = time.monotonic()
    where = machine()   # before anything of the run loads the cores
    ctx = RunContext(recipe)
    ctx.allow_mismatch = set(allow_mismatch)
    progress.info(f"validate {recipe.name} in {ctx.run_dir}" + (" (reduced)" if reduced else ""))
    ctx.prepare()
    set_threads(recipe.cpt.threads)   # for the probes too, also when every stage is already done
    needed = stage_order(recipe, recipe.validation_checkpoints)   # the stages a validated checkpoint needs
    trained = [stage for stage in needed if ctx.stage_done(stage) is None]   # this invocation trains (or resumes)
    for stage in needed:
        run_stage(ctx, stage)
    jobs = _jobs(ctx, recipe)
    for job in jobs.probes + jobs.long_runs:   # a run started with other settings is refused before anything trains
        check_probe_dir(ctx.run_dir / job.rel, probe_meta(job.recipe.probe, job.spec))
    plan_path = ctx.run_dir / VALIDATION_DIR / PLAN_FILE
    earlier = read_json(plan_path).get("invocations", []) if plan_path.exists() else []
    # every invocation on this run directory: its wall time (to the analysis), the runs it executed, and of them
    # the probes with their length (a directory's probes may be rerun shorter: octo.reuse.PER_RUN_KEYS). Recorded
    # after the stages and after every finished run, so that a killed invocation keeps its time up to its last
    # finished run (complete: false), and the experiment's whole cost can be read from the directory. The CPT stages
    # it trained are recorded too: a stage trained elsewhere (copied in, `octo cpt`, or an invocation killed before
    # its stages were done, which records nothing) is a cost the directory cannot tell. And the machine it ran on: a
    # wall time means little without it
    invocation = {"wall_s": 0.0, "runs": 0, "of": len(jobs.probes) + len(jobs.long_runs), "probes": 0,
                  "probe_steps": recipe.probe.steps, "stages_trained": trained, "stages_needed": needed,
                  "complete": False, "machine": where}

    def record(run: str = "") -> None:
        invocation["runs"] += bool(run)
        invocation["probes"] += run == "probe"
        invocation["wall_s"] = round(time.monotonic() - t0, 1)
        write_json_atomic(plan_path, _plan(recipe, jobs, command=command, full_command=full_command, reduced=reduced,
                                           n_jobs=n_jobs, invocations=earlier + [invocation]))

    record()
    # probes first: they are cheap and give the readiness ranking early; then the long runs, longest first
    # (their probes' rollout tokens per step x steps), so that with --jobs no worker is left with a long run at
    # the end while the others idle
    run_jobs(ctx, jobs.probes, jobs_at_once=n_jobs, threads=recipe.cpt.threads, on_done=lambda: record("probe"))
    run_jobs(ctx, longest_first(ctx.run_dir, jobs.rows, jobs.long_runs), jobs_at_once=n_jobs,
             threads=recipe.cpt.threads, on_done=lambda: record("full"))
    invocation["complete"] = True
    record()
    progress.info("analysing: Kendall tau, findings, the validation page")
    result = write_validation(ctx.run_dir, doc=doc)
    progress.info(f"done in {time.monotonic() - t0:.0f}s; page: {ctx.run_dir / VALIDATION_DIR / 'validation.md'}"
                  + (f" and {doc}" if doc else ""))
    return result


@dataclasses.dataclass
class _Jobs:
    """The GRPO runs of a validation: probes, then full RL and fixed-limit runs, and per stage the directories."""

    probes: list[Job]
    long_runs: list[Job]
    rows: dict[str, dict]
    full_sched: LengthScheduleConfig
    fixed_len: int
    fixed_steps: int


def _jobs(ctx, recipe: Recipe) -> _Jobs:
    from octo.analysis.validation import FIXED_DIR, FULL_DIR
    from octo.pipeline import probe_specs
    from octo.probe.length import LengthSchedule

    v, sv = recipe.validation, recipe.validation.stair_vs_fixed
    stages = recipe.validation_checkpoints
    full = full_run_recipe(recipe)
    fixed_len = sv.fixed_len or LengthSchedule(full.probe.max_len).maximum
    fixed_steps = sv.steps or v.full_steps
    early = (sv.early_steps or fixed_steps // 2,)   # the steps stair_vs_fixed compares: evaluated in both kinds
    fixed = full_run_recipe(recipe, LengthScheduleConfig(kind="constant", max_len=fixed_len), steps=fixed_steps,
                            eval_steps=early)
    stair = full_run_recipe(recipe, eval_steps=early)
    rows = {s: {"stage": s, "probes": [], "full": [], "fixed": []} for s in stages}
    jobs = _Jobs([], [], rows, full.probe.max_len, fixed_len, fixed_steps)
    for spec in probe_specs(ctx, stages=stages, seeds=recipe.validation_seeds):
        rows[spec.stage]["checkpoint_id"] = spec.checkpoint_id
        jobs.probes.append(Job(recipe, spec, f"{PROBES_DIR}/{spec.probe_id}", "probe"))
        rows[spec.stage]["probes"].append(jobs.probes[-1].rel)
    for spec in probe_specs(ctx, stages=stages, seeds=recipe.validation_full_seeds):
        if spec.control:
            continue
        # independent of the probe's randomness; the stair and fixed-limit runs share theirs (a paired comparison)
        fspec = dataclasses.replace(spec, seed=spec.seed + v.full_seed_offset)
        run = stair if spec.stage == sv.checkpoint and not full.probe.evaluates_at(early[0]) else full
        jobs.long_runs.append(Job(run, fspec, f"{FULL_DIR}/{fspec.probe_id}", "full RL run"))
        rows[spec.stage]["full"].append(jobs.long_runs[-1].rel)
        if spec.stage == sv.checkpoint:
            jobs.long_runs.append(Job(fixed, fspec, f"{FIXED_DIR}/{fspec.probe_id}", f"fixed-{fixed_len} run"))
            rows[spec.stage]["fixed"].append(jobs.long_runs[-1].rel)
    return jobs


def _plan(recipe: Recipe, jobs: _Jobs, *, command: str, full_command: str, reduced: bool, n_jobs: int,
          invocations: list[dict]) -> dict:
    """RUN/validation/plan.json: what octo.analysis.validation reads (the directories and the settings)."""
    v, sv = recipe.validation, recipe.validation.stair_vs_fixed
    stages = recipe.validation_checkpoints
    return {
        "version": 1, "reduced": reduced, "command": command, "full_command": full_command,
        "seeds": recipe.validation_seeds, "full_seeds": [s + v.full_seed_offset for s in recipe.validation_full_seeds],
        "jobs": n_jobs, "checkpoints": [jobs.rows[s] for s in stages],
        "descriptions": {s: _describe(recipe, s) for s in stages},
        "probe": {"steps": recipe.probe.steps, "eval_every": recipe.probe.eval_every,
                  "max_len": _schedule_text(recipe.probe.max_len)},
        "full": {"steps": v.full_steps, "eval_every": v.full_eval_every, "eval_steps": sorted(v.full_eval_steps),
                 "max_len": _schedule_text(jobs.full_sched),
                 "mask_truncated": full_run_recipe(recipe).probe.mask_truncated_completions},
        "max_probe_ratio": v.max_probe_ratio, "ppl_metrics": list(v.ppl_metrics), "target_tau": v.target_tau,
        "findings": dataclasses.asdict(v.findings), "world_targets": dataclasses.asdict(v.world_targets),
        "stair_vs_fixed": {"checkpoint": sv.checkpoint, "fixed_len": jobs.fixed_len,
                           "stair": _schedule_text(jobs.full_sched),
                           "early_steps": sv.early_steps or jobs.fixed_steps // 2,
                           "steps": jobs.fixed_steps} if sv.checkpoint else None,
        "invocations": invocations,
    }


def add_validate_arguments(parser: argparse.ArgumentParser) -> None:
    from octo.cpt.binding import add_mismatch_argument

    add_recipe_arguments(parser)
    add_mismatch_argument(parser)
    parser.add_argument("--reduced", action="store_true",
                        help="apply the recipe's validation.reduced overrides first: the minutes-long pipeline "
                             "check (tiny sizes, few steps, one seed), not evidence about tau")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="GRPO runs (probes, full runs) at once, each in its own process with 1/N of the torch "
                             "threads (cpt.threads, 0 = every core or OMP_NUM_THREADS); a tiny model leaves cores "
                             "idle, so N = the core count is faster on CPU. Each run has its own rollout backend (a "
                             "vLLM server each)")
    parser.add_argument("--doc", default=None, metavar="PAGE.md",
                        help="also write the page here (e.g. docs/validation.md), its PNGs in a folder named "
                             "after it (docs/validation/)")


def _command(args: argparse.Namespace, *, reduced: bool) -> str:
    parts = ["octo", "validate", args.recipe] + (["--reduced"] if reduced else [])
    for o in args.overrides:
        parts += ["--set", o]
    if args.run_dir:
        parts += ["--run-dir", args.run_dir]
    if args.jobs > 1:
        parts += ["--jobs", str(args.jobs)]
    if args.doc:
        parts += ["--doc", args.doc]
    return shlex.join(parts)


def run_validate(args: argparse.Namespace) -> int:
    if args.jobs < 1:
        raise OctoError(f"--jobs must be 1 or more (got {args.jobs}): the number of GRPO runs at once")
    overrides = list(args.overrides) + ([f"run_dir={args.run_dir}"] if args.run_dir else [])
    recipe = validation_recipe(args.recipe, overrides, reduced=args.reduced)
    if args.dry_run:
        sys.stdout.write(dump_recipe(recipe))
        return 0
    full_args = argparse.Namespace(recipe=args.recipe, overrides=[], run_dir=None, doc=args.doc, jobs=args.jobs)
    result = run_validation(recipe, command=_command(args, reduced=args.reduced),
                            full_command=_command(full_args, reduced=False), reduced=args.reduced, doc=args.doc,
                            allow_mismatch=tuple(args.allow_mismatch), n_jobs=args.jobs)
    t = result["taus"]["readiness"]
    ci = "n/a" if not t["ci"] else f"[{t['ci'][0]:+.3f}, {t['ci'][1]:+.3f}]"
    if t["tau"] is not None:   # None: undefined (octo.analysis.stats.defined_tau)
        tau = f"{t['tau']:+.3f}"
    elif len(result["truth_ranking"]) == 1:
        tau = "n/a (undefined: every checkpoint ends full RL at the same accuracy)"
    else:
        tau = "n/a (undefined: every checkpoint has the same readiness)"
    print(f"Kendall tau (readiness vs full RL): {tau}, {int(result['ci_level'] * 100)}% CI {ci}"
          + (" (reduced run: checks the pipeline, not tau)" if args.reduced else ""))
    for f in result["findings"]:
        print(f"  {'yes' if f['holds'] else 'no ' if f['holds'] is not None else 'n/a'}  {f['claim']}")
    return 0
