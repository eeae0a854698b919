"""GRPO runs at once: ``octo run`` and ``octo validate`` hand their probes (and full RL runs) to :func:`run_jobs`.

With ``jobs_at_once`` N > 1 each run goes to a spawned worker process with 1/N of the torch threads. A tiny model
leaves cores idle: on 2 cores two toy probes with one thread each generate about 1.8x as fast as one probe with
two (batched generation is latency-bound; benchmarks/quickstart_time.py). Workers die with the command
(PR_SET_PDEATHSIG), so a killed command leaves nothing writing, and every run resumes from its checkpoint.
"""

from __future__ import annotations

import os
import signal
from typing import Any, NamedTuple

from octo import progress
from octo.config import Recipe

_interrupted = False  # in a worker: a Ctrl-C reached it; runs queued behind the interrupted one do not start


class Job(NamedTuple):
    """One GRPO run: the recipe whose ``probe`` section it runs, its spec, its directory relative to the run
    directory, and what it is (for progress lines)."""

    recipe: Recipe
    spec: Any
    rel: str
    what: str


def _run_job(recipe: Recipe, spec, probe_dir: str, tokenizer_dir: str, threads: int, context: dict | None) -> str:
    """One GRPO run in a worker process (``--jobs``): its own torch threads and tokenizer; ``context`` (octo.plan's
    ``worker_context``) gives its lines their part label, the run's clock and ETA."""
    from octo.cpt.trainer import set_threads
    from octo.model import load_tokenizer
    from octo.probe.grpo import run_grpo_probe

    if _interrupted:
        raise KeyboardInterrupt
    if context is not None:
        progress.enter_worker(context)
    progress.quiet_libraries()
    set_threads(threads)
    run_grpo_probe(recipe, spec, probe_dir, tokenizer=load_tokenizer(tokenizer_dir))
    return probe_dir


def _on_interrupt(signum, frame) -> None:
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt


def _worker_init(parent_pid: int) -> None:
    """A worker dies with the command (PR_SET_PDEATHSIG), and a Ctrl-C stops its run and every run queued to it."""
    from octo.procs import die_with_parent

    die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, _on_interrupt)


def _interrupt_pool(pool, futures) -> None:
    """Ctrl-C during ``run_jobs``: no queued run starts, running ones stop at their interrupt point (their last
    checkpoint stays the resume point), and the command waits for them to stop before it exits."""
    for f in futures:
        f.cancel()
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        try:
            os.kill(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C reached them already; a `kill -INT` did not
        except OSError:
            pass
    pool.shutdown(wait=True, cancel_futures=True)


def run_jobs(ctx, jobs: list[Job], *, jobs_at_once: int = 1, threads: int = 0, plan=None, on_done=None) -> int:
    """Run (or resume, or skip) every GRPO run of ``jobs``, in order, up to ``jobs_at_once`` at a time in worker
    processes (each with an equal share of ``threads``, 0 = every core or OMP_NUM_THREADS); returns how many were not
    already done. The first failure stops the rest and is raised. ``plan`` (octo.plan.RunPlan, ``octo run``) labels
    the lines and learns each run's time; a run is handed to a worker only when one is free, so its time is its own.
    ``on_done()`` is called after each run this call completes (``octo validate`` records its wall time so far)."""
    from contextlib import nullcontext

    from octo.probe.grpo import run_grpo_probe

    todo = []
    for i, job in enumerate(jobs, 1):
        if (ctx.run_dir / job.rel / "DONE.json").exists():
            progress.info(f"[{i}/{len(jobs)}] {job.what} {job.spec.probe_id}: already complete, skipping")
            if plan is not None:
                plan.finished(plan.started("probe", job.spec.probe_id))
        else:
            todo.append((i, job))
    if jobs_at_once <= 1 or len(todo) <= 1:
        for i, (r, spec, rel, what) in todo:
            with plan.part("probe", spec.probe_id) if plan is not None else nullcontext():
                progress.info(f"[{i}/{len(jobs)}] {what} {spec.probe_id}")
                run_grpo_probe(r, spec, ctx.run_dir / rel, tokenizer=ctx.tokenizer)
            if on_done is not None:
                on_done()
        return len(todo)
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from octo.cpt.trainer import default_threads

    share = max(1, (threads or default_threads()) // jobs_at_once)
    progress.info(f"{len(todo)} GRPO runs, {jobs_at_once} at a time, {share} torch thread(s) each")
    queue, running = list(todo), {}
    # a killed command leaves no orphan still writing a run that the rerun will resume (PR_SET_PDEATHSIG)
    with ProcessPoolExecutor(max_workers=jobs_at_once, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_worker_init, initargs=(os.getpid(),)) as pool:
        try:
            while queue or running:
                while queue and len(running) < jobs_at_once:
                    i, (r, spec, rel, what) = queue.pop(0)
                    part = plan.started("probe", spec.probe_id) if plan is not None else None
                    context = {"run_started": progress.run_started_wall()}
                    if plan is not None:
                        context.update(plan.worker_context("probe", spec.probe_id))
                    progress.info(f"[{i}/{len(jobs)}] {what} {spec.probe_id}: in a worker")
                    running[pool.submit(_run_job, r, spec, str(ctx.run_dir / rel), str(ctx.tokenizer_dir), share,
                                        context)] = part
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    part = running.pop(future)
                    if plan is not None:
                        plan.finished(part)
                    if future.exception() is not None:
                        queue.clear()
                        raise future.exception()
                    if on_done is not None:
                        on_done()
        except KeyboardInterrupt:
            _interrupt_pool(pool, list(running))
            raise
    return len(todo)
