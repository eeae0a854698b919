"""A pool of verifier worker processes with a hard per-item timeout.

    with VerifierPool(VerifierConfig(timeout_s=5.0, workers=2)) as pool:
        results = pool.verify_batch(golds=["72", "\\frac{1}{2}"], completions=[c1, c2])

Processes, because math-verify's ``signal.alarm`` works only on a main thread and code stuck in C
ignores signals: a worker runs each item under an interval timer (soft timeout), and the pool kills
a worker that has not answered ``kill_grace_s`` after ``timeout_s`` (hard timeout) and starts a fresh
one. Plain-number answers never leave the caller (:func:`~octo.verifiers.check.decide_fast`: about
50 µs per item on the 2-core development machine, against 1-50 ms for a worker round trip); the rest
are answered from the :class:`VerdictCache`, sent once per batch when equal, and preferably to the
worker that parsed the same gold last (a GRPO group shares its gold).

One dispatcher thread per pool owns the workers (so the parent-death signal follows the pool, not a
short-lived caller thread); callers from any thread queue items and wait on futures.
"""

from __future__ import annotations

import atexit
import collections
import itertools
import json
import os
import pickle
import select
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field, replace

from octo.errors import OctoError
from octo.schema import to_dict
from octo.verifiers.check import Prepared, VerifyResult, _no_answer, decide_fast, prepare
from octo.verifiers.config import VerifierConfig
from octo.verifiers.worker import WorkerProcess as _Worker

_STARTUP_TIMEOUT_S = 120.0
_MAX_START_FAILURES = 3
# the counters of VerifierPool.stats(), each present (0) from the start
STATS = ("local", "cache_hits", "remote", "started", "kills", "deaths", "retried")


def for_item(result: VerifyResult, prep: Prepared) -> VerifyResult:
    """Another item's result for an item with the same :attr:`Prepared.key`."""
    extracted = result.extracted if prep.extraction.deferred else prep.extraction.answer
    return replace(result, extracted=extracted, method=prep.extraction.method, n_boxed=prep.n_boxed)


class VerdictCache:
    """math-verify verdicts by :attr:`Prepared.key`, and whether a gold parses. Only verdicts math-verify reached (ok,
    wrong, gold_unparseable) are kept: a timeout may not repeat on a quieter machine. Least recently used entries go
    first."""

    def __init__(self, size: int):
        self.size = size
        self._pairs: collections.OrderedDict[tuple, VerifyResult] = collections.OrderedDict()
        self._golds: collections.OrderedDict[str, VerifyResult | None] = collections.OrderedDict()
        self._lock = threading.Lock()

    def lookup(self, prep: Prepared) -> VerifyResult | None:
        if self.size == 0:
            return None
        with self._lock:
            if prep.gold in self._golds:
                self._golds.move_to_end(prep.gold)
                bad_gold = self._golds[prep.gold]
                if bad_gold is not None:
                    return for_item(bad_gold, prep)
                if prep.answer is None and not prep.extraction.deferred:
                    return _no_answer(prep)
            hit = self._pairs.get(prep.key)
            if hit is None:
                return None
            self._pairs.move_to_end(prep.key)
            return for_item(hit, prep)

    def store(self, prep: Prepared, result: VerifyResult) -> None:
        if self.size == 0 or result.checked_by != "math_verify":
            return
        with self._lock:
            if result.status == "gold_unparseable":
                self._golds[prep.gold] = result
            elif result.status in ("ok", "wrong"):
                self._golds[prep.gold] = None
                self._pairs[prep.key] = result
            for table in (self._pairs, self._golds):
                while len(table) > self.size:
                    table.popitem(last=False)



@dataclass
class _Job:
    gold: str
    completion: str
    task: str | None
    future: Future = field(default_factory=Future)
    id: int = 0
    deaths: int = 0  # workers that died while holding this job


class VerifierPool:
    """Worker processes that verify batches with a hard per-item timeout (see module doc)."""

    def __init__(self, config: VerifierConfig = VerifierConfig()):
        self.config = config
        self._config_json = json.dumps(to_dict(config))
        self._init_state()

    def _init_state(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._queue: collections.deque[_Job] = collections.deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._thread: threading.Thread | None = None
        self._closed = False
        self._broken: BaseException | None = None
        self._next_id = 0
        self._workers: list[_Worker | None] = [None] * self.config.workers
        self._ready_event = threading.Event()
        self._start_failures = 0
        self._stats = collections.Counter(dict.fromkeys(STATS, 0))
        self._cache = VerdictCache(self.config.cache_size)

    # ------------------------------------------------------------------ public API

    def verify_batch(self, *, golds: list[str], completions: list[str],
                     tasks: list[str | None] | None = None) -> list[VerifyResult]:
        """Verify ``completions[i]`` against ``golds[i]``; results in input order."""
        if len(golds) != len(completions) or (tasks is not None and len(tasks) != len(golds)):
            raise ValueError(f"verify_batch: {len(golds)} golds, {len(completions)} completions"
                             + ("" if tasks is None else f", {len(tasks)} tasks") + "; they must match")
        self._check_usable()
        cfg = self.config
        results: list[VerifyResult | None] = [None] * len(golds)
        waiting: list[tuple[int, _Job, Prepared | None]] = []
        twins: list[tuple[int, _Job, Prepared]] = []  # same (gold, answer) as an item already sent
        sent: dict[tuple, _Job] = {}
        hits = 0
        for i, (gold, completion) in enumerate(zip(golds, completions)):
            gold = _as_text(gold, "gold")
            completion = _as_text(completion, "completion")
            task = tasks[i] if tasks is not None else None
            job = _Job(gold=gold, completion=completion, task=task)
            if len(completion) > cfg.local_max_chars or len(gold) > cfg.local_max_chars:
                waiting.append((i, job, None))
                continue
            prep = prepare(gold, completion, cfg, task)
            result = decide_fast(prep, cfg)
            if result is None:
                result = self._cache.lookup(prep)
                hits += result is not None
            if result is not None:
                results[i] = result
                continue
            key = (prep.key, task)
            if key in sent:
                twins.append((i, sent[key], prep))
            else:
                sent[key] = job
                waiting.append((i, job, prep))
        with self._lock:
            self._stats["local"] += len(golds) - len(waiting) - len(twins) - hits
            self._stats["cache_hits"] += hits + len(twins)
            self._stats["remote"] += len(waiting)
        if waiting:
            self._submit([job for _, job, _ in waiting])
            for i, job, prep in waiting:
                results[i] = job.future.result()
                if prep is not None:
                    self._cache.store(prep, results[i])
            for i, job, prep in twins:
                results[i] = for_item(job.future.result(), prep)
        return results  # type: ignore[return-value]

    def start(self, *, wait: bool = True) -> VerifierPool:
        """Start the workers now instead of on first need; with ``wait``, return when every one is ready."""
        self._check_usable()
        self._ensure_thread()
        self._wake()
        if wait and not self._ready_event.wait(_STARTUP_TIMEOUT_S + 5):
            raise OctoError("the verifier workers did not start within "
                            f"{_STARTUP_TIMEOUT_S:.0f} s; check that `python -m octo.verifiers.worker` runs")
        self._check_usable()
        return self

    def worker_pids(self) -> list[int]:
        """Process ids of the workers that are up (for diagnostics and tests)."""
        return [w.pid for w in self._workers if w is not None and w.ready and w.pid is not None]

    def stats(self) -> dict[str, int]:
        """Counters: local (decided in the caller), cache_hits, remote (sent to a worker), started,
        kills (hard timeouts), deaths (workers that died), retried (items sent again after their worker died)."""
        with self._lock:
            return dict(self._stats)

    def close(self) -> None:
        """Stop the workers; items still queued fail with RuntimeError. Safe to call twice."""
        if os.getpid() != self._pid:
            return
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        self._wake()
        if thread is not None:
            thread.join(timeout=15.0)
        else:
            self._release_fds()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> VerifierPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __reduce__(self):
        # a pool is a set of live processes; a copy in another process is a new pool of the same config
        return (VerifierPool, (self.config,))

    # ------------------------------------------------------------------ callers' side

    def _check_usable(self) -> None:
        if os.getpid() != self._pid:  # forked: the parent's workers and thread are not ours
            self._init_state()
        if self._broken is not None:
            raise self._broken
        if self._closed:
            raise RuntimeError("this VerifierPool is closed; create a new one or use shared_pool()")

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="octo-verifier-pool", daemon=True)
                self._thread.start()

    def _submit(self, jobs: list[_Job]) -> None:
        self._ensure_thread()
        with self._lock:
            if self._closed or self._broken is not None:
                err = self._broken or RuntimeError("this VerifierPool is closed")
                for job in jobs:
                    job.future.set_exception(err)
                return
            for job in jobs:
                self._next_id += 1
                job.id = self._next_id
                self._queue.append(job)
        self._wake()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass

    # ------------------------------------------------------------------ dispatcher thread

    def _run(self) -> None:
        try:
            self._loop()
        except OctoError as err:  # workers that cannot start: the user's environment
            self._broken = err
        except BaseException as err:  # noqa: BLE001 - a bug here must not leave callers waiting forever
            self._broken = RuntimeError(f"the verifier pool's dispatcher failed: {type(err).__name__}: {err}")
            self._broken.__cause__ = err
        finally:
            self._shutdown()

    def _loop(self) -> None:
        cfg = self.config
        hard = cfg.timeout_s + cfg.kill_grace_s
        while True:
            with self._lock:
                if self._closed:
                    return
            self._spawn_missing()
            now = time.monotonic()
            for w in self._workers:
                if w is not None and w.ready and w.job is None:
                    with self._lock:
                        job = self._next_job(w.last_gold)
                    if job is None:
                        break
                    try:
                        if w.proc.poll() is not None:   # exited, its end of file not read yet
                            raise BrokenPipeError
                        w.send(job, now + hard)
                    except OSError:  # the worker died while idle: the job goes back, untouched
                        w.job = None
                        with self._lock:
                            self._queue.appendleft(job)
                        self._worker_died(w)
            waits = [w.deadline for w in self._workers if w is not None and w.job is not None]
            waits += [w.born + _STARTUP_TIMEOUT_S for w in self._workers if w is not None and not w.ready]
            timeout = max(0.0, min(waits) - time.monotonic()) if waits else None
            fds = [self._wake_r] + [w.fd for w in self._workers if w is not None]
            readable, _, _ = select.select(fds, [], [], timeout)
            if self._wake_r in readable:
                try:
                    while os.read(self._wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
            for w in list(self._workers):
                if w is not None and w.fd in readable:
                    self._on_readable(w)
            now = time.monotonic()
            for w in list(self._workers):
                if w is None:
                    continue
                if w.job is not None and now >= w.deadline:
                    self._on_hard_timeout(w)
                elif not w.ready and now >= w.born + _STARTUP_TIMEOUT_S:
                    w.kill()
                    self._replace(w)
                    self._start_failed(f"a verifier worker did not start within {_STARTUP_TIMEOUT_S:.0f} s")

    def _next_job(self, last_gold: str | None) -> _Job | None:
        """The oldest queued job, preferring (among the next few) one with the worker's last gold:
        a GRPO group shares its gold, and the worker has that gold parsed already."""
        if not self._queue:
            return None
        if last_gold is not None:
            for k, job in enumerate(itertools.islice(self._queue, 64)):
                if job.gold == last_gold:
                    del self._queue[k]
                    return job
        return self._queue.popleft()

    def _spawn_missing(self) -> None:
        for k, w in enumerate(self._workers):
            if w is None:
                self._workers[k] = _Worker(self._config_json)
                with self._lock:
                    self._stats["started"] += 1

    def _replace(self, w: _Worker) -> None:
        k = self._workers.index(w)
        self._workers[k] = None  # respawned at the top of the loop
        if not self._closed:
            self._ready_event.clear()

    def _on_readable(self, w: _Worker) -> None:
        try:
            msgs = w.read()
        except (pickle.UnpicklingError, EOFError, ValueError):  # garbage on the pipe: a crashed interpreter
            msgs = None
        if msgs is None:
            self._worker_died(w)
            return
        for msg in msgs:
            if msg.get("ready"):
                w.ready, w.pid = True, msg.get("pid")
                self._start_failures = 0
                if all(x is not None and x.ready for x in self._workers):
                    self._ready_event.set()
            elif w.job is not None and msg.get("i") == w.job.id:
                job, w.job = w.job, None
                job.future.set_result(VerifyResult(**msg["r"]))

    def _worker_died(self, w: _Worker) -> None:
        code = w.kill()
        self._replace(w)
        with self._lock:
            self._stats["deaths"] += 1
        if not w.ready:
            self._start_failed(f"a verifier worker exited with code {code} before it was ready")
            return
        if w.job is not None:
            # A worker can die from outside (the OOM killer, a stray kill), or after _loop checked it was alive, as an
            # item is written to its pipe; neither says the item is bad, so it goes to a fresh worker, at most
            # worker_death_retries times. An item that kills every worker it meets is an error.
            job, w.job = w.job, None
            job.deaths += 1
            if job.deaths <= self.config.worker_death_retries:
                with self._lock:
                    self._queue.appendleft(job)
                    self._stats["retried"] += 1
                return
            how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
            job.future.set_result(VerifyResult(
                correct=False, status="error", extracted=None, method=None, n_boxed=0, checked_by="pool",
                reason=f"The verifier worker {how} while checking this item; it was replaced."))

    def _on_hard_timeout(self, w: _Worker) -> None:
        job, w.job = w.job, None
        w.kill()
        self._replace(w)
        with self._lock:
            self._stats["kills"] += 1
        cfg = self.config
        job.future.set_result(VerifyResult(
            correct=False, status="timeout", extracted=None, method=None, n_boxed=0, checked_by="pool",
            reason=f"The worker did not answer within timeout_s={cfg.timeout_s:g} s "
                   f"(+{cfg.kill_grace_s:g} s grace) and was killed and replaced."))

    def _start_failed(self, what: str) -> None:
        self._start_failures += 1
        if self._start_failures >= _MAX_START_FAILURES:
            raise OctoError(f"{what} ({self._start_failures} tries); run `python -m octo.verifiers.worker '{{}}'` "
                            "in this environment to see the error")

    def _shutdown(self) -> None:
        with self._lock:
            self._closed = True
            jobs = list(self._queue)
            self._queue.clear()
        err = self._broken or RuntimeError("the VerifierPool was closed while items were waiting")
        live = [w for w in self._workers if w is not None]
        for w in live:
            if w.job is not None and not w.job.future.done():
                w.job.future.set_exception(err)
            w.close_input()  # all at once: they exit in parallel
        for w in live:
            w.stop()
        self._workers = [None] * len(self._workers)
        for job in jobs:
            if not job.future.done():
                job.future.set_exception(err)
        self._ready_event.set()
        self._release_fds()

    def _release_fds(self) -> None:
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass


def _as_text(value, what: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"verify_batch: a {what} must be a str (got {type(value).__name__})")


# ---------------------------------------------------------------- the process-wide pool

_shared: dict[tuple[int, str], VerifierPool] = {}
_shared_lock = threading.Lock()


def shared_pool(config: VerifierConfig = VerifierConfig()) -> VerifierPool:
    """The process-wide pool for ``config`` (created on first use, closed at interpreter exit)."""
    key = (os.getpid(), json.dumps(to_dict(config), sort_keys=True))
    with _shared_lock:
        pool = _shared.get(key)
        if pool is None or pool.closed:
            pool = _shared[key] = VerifierPool(config)
        return pool


@atexit.register
def _close_shared() -> None:
    with _shared_lock:
        pools = [p for (pid, _), p in _shared.items() if pid == os.getpid()]
        _shared.clear()
    for pool in pools:
        pool.close()
