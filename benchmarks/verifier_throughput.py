"""Verifier throughput: octo's VerifierPool vs sequential plain math-verify on the same items.

    python benchmarks/verifier_throughput.py [--items 2000] [--batch 128] [--workers 2] [--seed 0]

Items: every case of the regression table (tests/data/verifier_cases.jsonl) once, then
synthetic probe-like items (groups of 8 completions per problem: GSM8K-style numbers written
as ``\\boxed{}``, ``####`` or "the answer is", and LaTeX answers - fractions, roots,
polynomials, intervals - in equivalent or wrong forms) up to ``--items``.

Baseline: for each item in turn, in this process, ``verify(parse(f"${gold}$"), parse(completion))``
with math-verify's default (signal) timeouts. octo: ``VerifierPool.verify_batch`` in batches of
``--batch`` (the probe verifies ~128 completions per step), after ``start()`` (startup is
reported separately). The two alternate over chunks of ``--chunk`` items so that the load of a
shared machine hits both alike. Items on which math-verify itself times out are timed apart,
so that the headline speed-up compares the two on the same work.

Prints one JSON object: items/s of both, the speed-up, verdict agreement on every item where
math-verify did not time out, and each disagreement with the regression-table case that records
octo's verdict on it (``table_case``), or for a synthetic item the table cases of its pattern
(``table_cases_of_pattern``). ``agreement.unexplained`` counts the rest: it should be 0.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time
from pathlib import Path

TABLE = Path(__file__).resolve().parents[1] / "tests" / "data" / "verifier_cases.jsonl"


def table_rows() -> list[dict]:
    with open(TABLE, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def table_items() -> list[dict]:
    return [{"gold": r["gold"], "completion": r["completion"], "table": i, "category": r["category"],
             "expected_status": r["expected_status"]} for i, r in enumerate(table_rows())]


def _cot(rng: random.Random) -> tuple[str, int]:
    a, b, c = rng.randint(3, 250), rng.randint(2, 60), rng.randint(2, 9)
    total = (a + b) * c
    text = (f"First, {a} + {b} = {a + b} items arrive each day.\n"
            f"Over {c} days that makes {a + b} * {c} = {total} items.\n")
    return text, total


def _numeric_group(rng: random.Random) -> list[dict]:
    text, total = _cot(rng)
    gold = f"{total:,}" if total >= 1000 and rng.random() < 0.3 else str(total)
    out = []
    for _ in range(8):
        r = rng.random()
        ans = total if r < 0.65 else total + rng.choice([-10, -1, 1, 2, 100])
        shown = f"{ans:,}" if ans >= 1000 and rng.random() < 0.3 else str(ans)
        style = rng.randrange(4)
        if r > 0.95:  # gives up: the table's 'gave_up' cases record the verdict
            out.append({"gold": gold, "completion": text + "I am not sure how to finish this.",
                        "pattern": "gave_up"})
            continue
        elif style == 0:
            comp = text + f"So the answer is $\\boxed{{{shown}}}$."
        elif style == 1:
            comp = text + f"#### {shown}"
        elif style == 2:
            comp = text + f"The answer is {shown}."
        else:
            comp = text + f"Therefore the total is \\boxed{{{shown}}} items."
        out.append({"gold": gold, "completion": comp})
    return out


def _latex_group(rng: random.Random) -> list[dict]:
    kind = rng.randrange(5)
    p, q = rng.randint(1, 30), rng.randint(2, 31)
    if kind == 0:
        gold = f"\\frac{{{p}}}{{{q}}}"
        right = [f"\\frac{{{2 * p}}}{{{2 * q}}}", f"\\dfrac{{{p}}}{{{q}}}", f"{p}/{q}"]
        wrong = [f"\\frac{{{q}}}{{{p + q}}}", f"\\frac{{{p + 1}}}{{{q}}}"]
    elif kind == 1:
        n = rng.choice([2, 3, 5, 6, 7, 10, 11])
        gold = f"{p}\\sqrt{{{n}}}"
        right = [f"\\sqrt{{{p * p * n}}}", f"{p}\\sqrt{n}", f"\\sqrt{{{n}}} \\cdot {p}"]
        wrong = [f"{p + 1}\\sqrt{{{n}}}", f"\\sqrt{{{p * n}}}"]
    elif kind == 2:
        gold = f"x^2+{2 * p}x+{p * p}"
        right = [f"(x+{p})^2", f"x^{{2}} + {2 * p} x + {p * p}", f"{p * p}+{2 * p}x+x^2"]
        wrong = [f"(x-{p})^2", f"x^2+{p}x+{p * p}"]
    elif kind == 3:
        gold = f"({p}, {p + q}]"
        right = [f"({p},{p + q}]", f"\\left({p}, {p + q}\\right]"]
        wrong = [f"[{p}, {p + q}]", f"({p}, {p + q})"]
    else:
        gold = f"\\frac{{{p}\\pi}}{{{q}}}"
        right = [f"\\frac{{{p}}}{{{q}}}\\pi", f"{p}\\pi/{q}"]
        wrong = [f"\\frac{{{p}}}{{{q}}}", f"\\frac{{{p + 1}\\pi}}{{{q}}}"]
    lead = rng.choice(["We simplify step by step.\n", "Let us combine the terms.\n",
                       "Using the identity above, the expression becomes\n"])
    out = []
    for _ in range(8):
        ans = rng.choice(right) if rng.random() < 0.6 else rng.choice(wrong)
        comp = lead + rng.choice([f"Hence the answer is $\\boxed{{{ans}}}$.", f"$$\\boxed{{{ans}}}$$",
                                  f"So we get \\boxed{{{ans}}}."])
        out.append({"gold": gold, "completion": comp})
    return out


def build_items(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    items = table_items()
    while len(items) < n:
        items += _numeric_group(rng) if rng.random() < 0.6 else _latex_group(rng)
    return items[:n]


class _TimeoutLog(logging.Handler):
    """math-verify reports its own timeouts only as log warnings; count them per item."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "Timeout during" in record.getMessage():
            self.count += 1


def run_baseline(items: list[dict]) -> tuple[list[bool], list[bool], list[float]]:
    from math_verify import parse, verify

    handler = _TimeoutLog()
    for name in ("math_verify.parser", "math_verify.grader"):
        lg = logging.getLogger(name)
        if not any(isinstance(h, _TimeoutLog) for h in lg.handlers):
            lg.addHandler(handler)
        lg.propagate = False
    handler = next(h for h in logging.getLogger("math_verify.parser").handlers if isinstance(h, _TimeoutLog))
    verdicts, timed_out, seconds = [], [], []
    for it in items:
        before = handler.count
        t0 = time.perf_counter()
        ok = bool(verify(parse(f"${it['gold']}$"), parse(it["completion"])))
        seconds.append(time.perf_counter() - t0)
        verdicts.append(ok)
        timed_out.append(handler.count > before)
    return verdicts, timed_out, seconds


def run_octo(pool, items: list[dict], batch: int) -> tuple[list, float]:
    results = []
    t0 = time.perf_counter()
    for i in range(0, len(items), batch):
        chunk = items[i:i + batch]
        results += pool.verify_batch(golds=[x["gold"] for x in chunk], completions=[x["completion"] for x in chunk])
    return results, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--chunk", type=int, default=250,
                    help="baseline and octo alternate over chunks of this many items, so that a change in "
                         "the machine's load hits both alike")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from octo.verifiers import VerifierConfig, VerifierPool

    items = build_items(args.items, args.seed)
    rows = table_rows()
    by_pattern: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        if "pattern" in r:
            by_pattern.setdefault(r["pattern"], []).append(i)

    mv_verdicts: list[bool] = []
    mv_timeout: list[bool] = []
    mv_seconds: list[float] = []
    octo: list = [None] * len(items)
    octo_clean_s = octo_slow_s = 0.0
    with VerifierPool(VerifierConfig(workers=args.workers)) as pool:
        t0 = time.perf_counter()
        pool.start()
        startup = time.perf_counter() - t0
        for lo in range(0, len(items), args.chunk):
            chunk = items[lo:lo + args.chunk]
            v, t, sec = run_baseline(chunk)
            mv_verdicts += v
            mv_timeout += t
            mv_seconds += sec
            clean = [lo + k for k, timed in enumerate(t) if not timed]
            slow = [lo + k for k, timed in enumerate(t) if timed]
            res, took = run_octo(pool, [items[i] for i in clean], args.batch)
            octo_clean_s += took
            for i, r in zip(clean, res):
                octo[i] = r
            res, took = run_octo(pool, [items[i] for i in slow], args.batch)
            octo_slow_s += took
            for i, r in zip(slow, res):
                octo[i] = r
        stats = pool.stats()

    clean_idx = [i for i, t in enumerate(mv_timeout) if not t]
    disagreements = []
    for i in clean_idx:
        if octo[i].correct == mv_verdicts[i]:
            continue
        it = items[i]
        entry = {"item": i, "octo": octo[i].status, "math_verify_correct": mv_verdicts[i],
                 "gold": it["gold"][:60], "completion": it["completion"][-70:]}
        if "table" in it:
            entry["table_case"] = it["table"]
            entry["octo_matches_table"] = rows[it["table"]]["expected_status"] == octo[i].status
        elif "pattern" in it:
            entry["pattern"] = it["pattern"]
            entry["table_cases_of_pattern"] = by_pattern.get(it["pattern"], [])
        disagreements.append(entry)

    mv_clean_s = sum(mv_seconds[i] for i in clean_idx)
    mv_total_s = sum(mv_seconds)
    octo_total_s = octo_clean_s + octo_slow_s
    n_clean = len(clean_idx)
    out = {
        "benchmark": "verifier_throughput",
        "items": len(items), "table_items": sum("table" in it for it in items), "batch": args.batch,
        "chunk": args.chunk, "workers": args.workers, "cpu_count": os.cpu_count(),
        "load_avg_1m_at_end": round(os.getloadavg()[0], 2), "python": sys.version.split()[0],
        "math_verify_timeouts": len(items) - n_clean,
        "baseline_math_verify": {
            "items_per_s": round(n_clean / mv_clean_s, 1), "seconds": round(mv_clean_s, 3),
            "seconds_with_its_timeouts": round(mv_total_s, 3),
        },
        "octo_pool": {
            "items_per_s": round(n_clean / octo_clean_s, 1), "seconds": round(octo_clean_s, 3),
            "seconds_with_items_math_verify_timed_out_on": round(octo_total_s, 3),
            "startup_s": round(startup, 3),
            "decided_in_caller": stats.get("local", 0), "cache_hits": stats.get("cache_hits", 0),
            "sent_to_workers": stats.get("remote", 0),
        },
        "speedup": round(mv_clean_s / octo_clean_s, 2),
        "speedup_with_timeouts": round(mv_total_s / octo_total_s, 2),
        "agreement": {
            "compared": n_clean, "agree": n_clean - len(disagreements), "disagree": len(disagreements),
            "in_table": sum("table_case" in d for d in disagreements),
            "by_table_pattern": sum("pattern" in d and bool(d["table_cases_of_pattern"]) for d in disagreements),
            "unexplained": sum(("table_case" in d and not d["octo_matches_table"])
                               or ("table_case" not in d and not d.get("table_cases_of_pattern"))
                               for d in disagreements),
        },
        "disagreements": disagreements,
    }
    print(json.dumps(out, ensure_ascii=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
