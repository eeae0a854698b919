"""VerifierPool: order, threads, hard timeouts, killed workers, adversarial inputs, lifecycle."""

from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
import time

import pytest

from octo.verifiers import STATUSES, VerifierConfig, VerifierPool, shared_pool, verify

MIXED = [
    ("72", "so \\boxed{72}"), ("x^2+1", "\\boxed{1+x^2}"), ("5", "\\boxed{6}"), ("\\frac{\\sqrt2}{2}", "\\boxed{\\frac{1}{\\sqrt2}}"),
    ("(1,2]", "\\boxed{(1,2)}"), ("12", "no answer"), ("???", "\\boxed{3}"), ("1,234", "#### 1234"),
    ("\\pi", "\\boxed{3.14159265}"), ("-5", "The answer is −5."),
]
MIXED_STATUS = ["ok", "ok", "wrong", "ok", "wrong", "no_answer", "gold_unparseable", "ok", "ok", "ok"]


def _alive(pool: VerifierPool) -> None:
    """The pool still answers, through a worker (LaTeX) and in the caller (a number)."""
    res = pool.verify_batch(golds=["x^2+1", "72"], completions=["\\boxed{(x^2)+1}", "\\boxed{72}"])
    assert [r.status for r in res] == ["ok", "ok"], [r.reason for r in res]
    assert res[0].checked_by == "math_verify" and res[1].checked_by == "identical"


def test_batch_statuses_and_order(pool):
    golds, comps = zip(*MIXED)
    res = pool.verify_batch(golds=list(golds), completions=list(comps))
    assert [r.status for r in res] == MIXED_STATUS
    # reversing the input reverses the output: results follow input order, not completion order
    rev = pool.verify_batch(golds=list(golds[::-1]), completions=list(comps[::-1]))
    assert [r.status for r in rev] == MIXED_STATUS[::-1]
    assert [r.extracted for r in rev] == [r.extracted for r in res][::-1]


def test_many_distinct_items_keep_their_order(pool):
    ks = range(1, 121)
    golds = [f"\\frac{{{k}}}{{{k + 1}}}" for k in ks]
    comps = [f"\\boxed{{\\frac{{{2 * k}}}{{{2 * k + 2}}}}}" if k % 3 else f"\\boxed{{{k}}}" for k in ks]
    res = pool.verify_batch(golds=golds, completions=comps)
    assert [r.correct for r in res] == [k % 3 != 0 for k in ks]
    assert [r.extracted for r in res] == [c[len("\\boxed{"):-1] for c in comps]


def test_from_several_threads(pool):
    golds, comps = zip(*MIXED)
    want = [r.status for r in pool.verify_batch(golds=list(golds), completions=list(comps))]
    errors, outs = [], {}

    def work(k: int) -> None:
        try:
            rot = k % len(MIXED)
            g, c = list(golds[rot:] + golds[:rot]), list(comps[rot:] + comps[:rot])
            outs[k] = ([r.status for r in pool.verify_batch(golds=g * 3, completions=c * 3)], rot)
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    for statuses, rot in outs.values():
        assert statuses == (want[rot:] + want[:rot]) * 3
    assert len(outs) == 6


def test_verify_off_the_main_thread_uses_the_shared_pool():
    out = {}

    def work():
        out["latex"] = verify(gold="x^2+1", completion="\\boxed{1+x^2}")
        out["number"] = verify(gold="7", completion="\\boxed{7.0}")

    t = threading.Thread(target=work)
    t.start()
    t.join(timeout=60)
    assert out["latex"].status == "ok" and out["latex"].checked_by == "math_verify"
    assert out["number"].status == "ok" and out["number"].checked_by == "fast"


def test_numbers_never_need_a_worker():
    with VerifierPool(VerifierConfig(workers=1)) as p:
        # every counter reads 0 before the first verification (a session-wide pool's first test may read them)
        assert p.stats() == dict.fromkeys(("local", "cache_hits", "remote", "started", "kills", "deaths", "retried"), 0)
        res = p.verify_batch(golds=["72", "1,000", "0.5"], completions=["#### 72", "\\boxed{1000}", "\\boxed{\\frac12}"])
        assert [r.status for r in res] == ["ok", "ok", "ok"]
        assert p.worker_pids() == [] and p.stats().get("started", 0) == 0


def test_argument_checks(pool):
    with pytest.raises(ValueError, match="must match"):
        pool.verify_batch(golds=["1"], completions=["1", "2"])
    with pytest.raises(TypeError, match="completion must be a str"):
        pool.verify_batch(golds=["1"], completions=[None])
    assert pool.verify_batch(golds=[42], completions=["\\boxed{42}"])[0].status == "ok"  # numeric gold column
    assert pool.verify_batch(golds=[], completions=[]) == []


ADVERSARIAL = [
    ("5", "\\boxed{2^{2^{2^{99}}}}"),
    ("5", "\\boxed{10^{10^{10}}}"),
    ("5", "\\boxed{" + "{" * 10_000 + "5" + "}" * 10_000 + "}"),
    ("5", "{" * 10_000 + "5"),
    ("5", "\\boxed{" + "(" * 900 + "5" + ")" * 900 + "}"),
    ("5", "\\boxed{" + "\\sqrt{" * 150 + "5" + "}" * 150 + "}"),
    ("5", ("lorem ipsum " * 87_400) + "\\boxed{5}"),  # ~1 MB
    ("5", "\\boxed{" + "9" * 1_000_000 + "}"),
    ("5", "x" * 1_000_000),
    ("5", "\\boxed{nan}"), ("nan", "\\boxed{NaN}"), ("\\infty", "\\boxed{inf}"), ("5", "\\boxed{-\\infty}"),
    ("5", "\\boxed{1e999999}"), ("5", "\\boxed{0/0}"),
    ("5", "\\boxed{\ud800\udfff\x00}"), ("5", "\u202e\\boxed{5}\u202c\u2028"), ("5", "\\boxed{5\u0301}"),
    ("5", "🎉" * 10_000 + "\\boxed{５}"),
    ("5", "\\boxed{\\frac{1}{" + "x^" * 500 + "2}}"),
    ("\\begin{pmatrix}" + "1&" * 200 + "1\\end{pmatrix}", "\\boxed{5}"),
]


def test_adversarial_inputs_return_a_status_in_time_and_the_pool_survives(fast_pool):
    cfg = fast_pool.config
    limit = cfg.timeout_s + cfg.kill_grace_s + 5.0  # a kill plus a respawn at worst
    for gold, completion in ADVERSARIAL:
        t0 = time.perf_counter()
        (res,) = fast_pool.verify_batch(golds=[gold], completions=[completion])
        took = time.perf_counter() - t0
        assert res.status in STATUSES
        assert took < limit, (completion[:40], res.status, took)
        assert isinstance(res.reason, str) and res.reason
    # a few outcomes are certain
    res = fast_pool.verify_batch(golds=[g for g, _ in ADVERSARIAL[2:4]] + ["5"],
                                 completions=[c for _, c in ADVERSARIAL[2:4]] + [ADVERSARIAL[6][1]])
    assert [r.status for r in res] == ["ok", "ok", "ok"]
    (big,) = fast_pool.verify_batch(golds=["5"], completions=[ADVERSARIAL[7][1]])
    assert big.status == "wrong" and "max_answer_chars" in big.reason
    _alive(fast_pool)


def test_power_tower_times_out_without_the_guard(fast_pool):
    t0 = time.perf_counter()
    (res,) = fast_pool.verify_batch(golds=["5"], completions=["\\boxed{2^{2^{2^{99}}}}"])
    assert res.status == "timeout"
    assert time.perf_counter() - t0 < fast_pool.config.timeout_s + fast_pool.config.kill_grace_s + 5.0
    _alive(fast_pool)


def test_hung_workers_are_killed_and_replaced(fast_pool):
    fast_pool.start()
    pids = fast_pool.worker_pids()
    assert len(pids) == 2
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)  # a worker stuck where no signal handler runs
    kills = fast_pool.stats().get("kills", 0)
    t0 = time.perf_counter()
    res = fast_pool.verify_batch(golds=["x+1", "x+2"], completions=["\\boxed{1+x}", "\\boxed{2+x}"])
    took = time.perf_counter() - t0
    assert [r.status for r in res] == ["timeout", "timeout"]
    assert all(r.checked_by == "pool" and "killed and replaced" in r.reason for r in res)
    hard = fast_pool.config.timeout_s + fast_pool.config.kill_grace_s
    assert hard <= took < hard + 5.0
    assert fast_pool.stats()["kills"] == kills + 2
    _alive(fast_pool)
    assert not set(fast_pool.worker_pids()) & set(pids)


def _kill_the_worker_holding_one_item(retries: int):
    """A one-worker pool whose worker is stopped with one item queued in it, then killed: a single kill, so that no
    other dying worker can take the item (killing several is never one atomic step on a loaded machine)."""
    cfg = VerifierConfig(workers=1, timeout_s=1.0, kill_grace_s=0.5, guard_heavy=False,
                         worker_death_retries=retries)
    pool = VerifierPool(cfg).start()
    (pid,) = pool.worker_pids()
    os.kill(pid, signal.SIGSTOP)  # hold the item inside the worker until we kill it
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", pool.verify_batch(
        golds=["x+1"], completions=["\\boxed{1+x}"])))
    t.start()
    time.sleep(0.3)
    os.kill(pid, signal.SIGKILL)
    t.join(timeout=30)
    return pool, pid, out["r"]


def _wait_replaced(pool: VerifierPool, pids: list[int]) -> None:
    deadline = time.time() + 10
    while set(pool.worker_pids()) & set(pids) and time.time() < deadline:
        time.sleep(0.05)
    assert not set(pool.worker_pids()) & set(pids)


def test_worker_killed_mid_item_is_replaced_and_the_item_retried():
    pool, pid, (res,) = _kill_the_worker_holding_one_item(retries=1)
    with pool:
        assert res.status == "ok" and res.checked_by == "math_verify", res.reason
        assert pool.stats()["retried"] == 1 and pool.stats()["deaths"] == 1
        assert pool.worker_pids() != [pid]
        _alive(pool)


def test_an_item_whose_workers_keep_dying_is_an_error():
    pool, pid, (res,) = _kill_the_worker_holding_one_item(retries=0)
    with pool:
        assert res.status == "error" and "killed by signal 9 while checking this item;" in res.reason
        assert pool.stats()["retried"] == 0
        _wait_replaced(pool, [pid])
        _alive(pool)


def test_idle_workers_killed_are_replaced_and_get_no_items(fast_pool):
    first, second = fast_pool.worker_pids()
    # an idle worker's death is noticed on its own (end of file on its pipe), not only on use
    os.kill(first, signal.SIGKILL)
    _wait_replaced(fast_pool, [first])
    assert fast_pool.stats()["deaths"] == 1
    # items queued at once after a kill are not lost to the dying worker (checked before sending, else retried)
    os.kill(second, signal.SIGKILL)
    _alive(fast_pool)
    _wait_replaced(fast_pool, [second])
    assert fast_pool.stats()["deaths"] == 2


def test_close_and_context_manager():
    p = VerifierPool(VerifierConfig(workers=1))
    with p:
        p.start()
        (pid,) = p.worker_pids()
        assert p.verify_batch(golds=["x"], completions=["\\boxed{x}"])[0].status == "ok"
    assert p.closed
    deadline = time.time() + 10
    while time.time() < deadline:  # the worker exits (it may linger as our zombie until reaped)
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().split()[2] == "Z":
                    break
        except FileNotFoundError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("worker still running after close()")
    with pytest.raises(RuntimeError, match="closed"):
        p.verify_batch(golds=["1"], completions=["1"])
    p.close()  # twice is fine


def test_shared_pool_is_cached_per_config():
    a = shared_pool(VerifierConfig())
    assert shared_pool(VerifierConfig()) is a
    b = shared_pool(VerifierConfig(timeout_s=3.0))
    assert b is not a
    b.close()
    c = shared_pool(VerifierConfig(timeout_s=3.0))
    assert c is not b and not c.closed


def test_pool_pickles_as_a_new_pool_of_the_same_config():
    p = VerifierPool(VerifierConfig(timeout_s=2.5))
    q = pickle.loads(pickle.dumps(p))
    assert q is not p and q.config == p.config and not q.closed
    p.close()
    q.close()


def test_repeated_answers_are_answered_from_the_cache(pool):
    golds = ["x^2+17"] * 8
    comps = ["\\boxed{17+x^2}", "The answer is $17+x^2$.", "\\boxed{17+x^2}", "\\boxed{x^2-17}",
             "\\boxed{x^2-17}", "no answer", "\\boxed{17+x^2}\\boxed{17+x^2}", "#### 17+x^2"]
    before = pool.stats()
    res = pool.verify_batch(golds=golds, completions=comps)
    assert [r.status for r in res] == ["ok", "ok", "ok", "wrong", "wrong", "no_answer", "ok", "ok"]
    assert [r.method for r in res] == ["boxed", "answer_is", "boxed", "boxed", "boxed", None, "boxed", "hash"]
    assert [r.extracted for r in res][:2] == ["17+x^2", "$17+x^2$"]
    assert [r.n_boxed for r in res] == [1, 0, 1, 1, 1, 0, 2, 0]
    mid = pool.stats()
    assert mid["remote"] - before["remote"] == 3  # one per distinct (gold, answer): right, wrong, none
    again = pool.verify_batch(golds=golds + ["x^2+17"], completions=comps + ["nothing"])
    assert [r.status for r in again] == [r.status for r in res] + ["no_answer"]
    assert [r.reason for r in again[:8]] == [r.reason for r in res]
    assert pool.stats()["remote"] == mid["remote"]  # all from the cache, the new no-answer too (the gold parses)


def test_timeouts_are_not_cached(fast_pool):
    before = fast_pool.stats()["remote"]
    for _ in range(2):
        (res,) = fast_pool.verify_batch(golds=["7"], completions=["\\boxed{2^{2^{2^{99}}}}"])
        assert res.status == "timeout"
    assert fast_pool.stats()["remote"] == before + 2


def test_cache_can_be_switched_off():
    with VerifierPool(VerifierConfig(workers=1, cache_size=0)) as p:
        golds, comps = ["x+1", "x+1", "x+1"], ["\\boxed{1+x}", "\\boxed{1+x}", "\\boxed{x-1}"]
        first = p.verify_batch(golds=golds, completions=comps)
        assert [r.status for r in first] == ["ok", "ok", "wrong"]
        assert p.stats()["remote"] == 2  # duplicates within one batch are still sent once
        assert p.verify_batch(golds=golds, completions=comps) == first
        assert p.stats()["remote"] == 4


def test_workers_that_cannot_start_are_one_user_error(monkeypatch):
    from octo.errors import OctoError

    monkeypatch.setattr(sys, "executable", "/bin/false")  # every worker exits at once
    with VerifierPool(VerifierConfig(workers=1)) as p:
        assert p.verify_batch(golds=["7"], completions=["\\boxed{7}"])[0].status == "ok"  # needs no worker
        with pytest.raises(OctoError, match="before it was ready"):
            p.verify_batch(golds=["x"], completions=["\\boxed{y}"])
        with pytest.raises(OctoError):
            p.start()


def test_latex_completions_without_a_box_are_never_answered_from_each_other(pool):
    golds = ["\\frac{1}{3}"] * 4
    comps = ["Each share is $\\frac{1}{3}$", "Each share is $\\frac{1}{4}$", "Each share is $\\frac{1}{3}$",
             "Each share is $\\frac{2}{6}$"]
    res = pool.verify_batch(golds=golds, completions=comps)
    assert [r.status for r in res] == ["ok", "wrong", "ok", "ok"]
    assert [r.method for r in res] == ["latex"] * 4
    assert [r.extracted for r in res] == ["\\frac{1}{3}", "\\frac{1}{4}", "\\frac{1}{3}", "\\frac{2}{6}"]
    assert pool.verify_batch(golds=golds, completions=comps[::-1]) == res[::-1]
