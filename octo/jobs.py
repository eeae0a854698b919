"""GRPO runs at once: ``octo run`` and ``octo validate`` hand their probes (and full RL runs) to :func:`run_jobs`.

With ``jobs_at_once`` N > 1 each run goes to a spawned worker process with 1/N of the torch threads. A tiny model
leaves cores idle: on 2 cores two toy probes with one thread each generate about 1.8x as fast as one probe with
two (batched generation is latency-bound; benchmarks/quickstart_time.py). Workers die with the command
(PR_SET_PDEATHSIG), so a killed command leaves nothing writing, and every run resumes from its checkpoint.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from octo import progress
from octo.config import Recipe


class Job(NamedTuple):
    """One GRPO run: the recipe whose ``probe`` section it runs, its spec, its directory relative to the run
    directory, and what it is (for progress lines)."""

    recipe: Recipe
    spec: Any
    rel: str
    what: str


def _run_job(recipe: Recipe, spec, probe_dir: str, tokenizer_dir: str, threads: int) -> str:
    """One GRPO run in a worker process (``--jobs``): its own torch threads and tokenizer."""
    from octo.cpt.trainer import set_threads
    from octo.model import load_tokenizer
    from octo.probe.grpo import run_grpo_probe

    progress.quiet_libraries()
    set_threads(threads)
    run_grpo_probe(recipe, spec, probe_dir, tokenizer=load_tokenizer(tokenizer_dir))
    return probe_dir


def run_jobs(ctx, jobs: list[Job], *, jobs_at_once: int = 1, threads: int = 0) -> int:
    """Run (or resume, or skip) every GRPO run of ``jobs``, in order, up to
    ``jobs_at_once`` at a time in worker processes (each with an equal share of ``threads``, 0 = every core);
    returns how many were not already done. The first failure stops the rest and is raised."""
    import os

    from octo.probe.grpo import run_grpo_probe

    todo = []
    for i, job in enumerate(jobs, 1):
        if (ctx.run_dir / job.rel / "DONE.json").exists():
            progress.info(f"[{i}/{len(jobs)}] {job.what} {job.spec.probe_id}: already complete, skipping")
        else:
            todo.append((i, job))
    if jobs_at_once <= 1 or len(todo) <= 1:
        for i, (r, spec, rel, what) in todo:
            progress.info(f"[{i}/{len(jobs)}] {what} {spec.probe_id}")
            run_grpo_probe(r, spec, ctx.run_dir / rel, tokenizer=ctx.tokenizer)
        return len(todo)
    import multiprocessing
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

    # the verifier workers' initializer: the kernel kills a worker when this command dies (PR_SET_PDEATHSIG), so
    # a killed command leaves no orphan still writing a run that the rerun will resume
    from octo.verifiers.worker import _die_with_parent

    share = max(1, (threads or os.cpu_count() or 1) // jobs_at_once)
    progress.info(f"{len(todo)} GRPO runs, {jobs_at_once} at a time, {share} torch thread(s) each")
    with ProcessPoolExecutor(max_workers=jobs_at_once, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_die_with_parent, initargs=(os.getpid(),)) as pool:
        futures = {}
        for i, (r, spec, rel, what) in todo:
            progress.info(f"[{i}/{len(jobs)}] queued: {what} {spec.probe_id}")
            futures[pool.submit(_run_job, r, spec, str(ctx.run_dir / rel), str(ctx.tokenizer_dir), share)] = rel
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f for f in done if f.exception() is not None]
        if failed:
            for f in pending:
                f.cancel()
            raise failed[0].exception()
    return len(todo)
