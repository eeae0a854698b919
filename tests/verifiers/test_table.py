"""The regression table (tests/data/verifier_cases.jsonl): every case, in-process and through a pool."""

from __future__ import annotations

import pytest

from octo.verifiers import STATUSES, verify

from .conftest import load_table

CASES = load_table()


def _id(i: int, case: dict) -> str:
    return f"{i:03d}-{case['category']}"


def test_table_is_large_and_well_formed():
    assert len(CASES) >= 300
    cats = {c["category"] for c in CASES}
    for needed in ("gsm8k", "fraction", "symbolic", "set", "units", "percent", "negative", "thousands",
                   "nested", "multi_box", "after_box", "no_answer", "bad_gold", "adversarial"):
        assert needed in cats, needed
    for c in CASES:
        assert c["expected_status"] in STATUSES
        assert c["expected_correct"] == (c["expected_status"] == "ok")
    statuses = {c["expected_status"] for c in CASES}
    assert {"ok", "wrong", "no_answer", "gold_unparseable", "timeout"} <= statuses


@pytest.mark.parametrize("case", CASES, ids=[_id(i, c) for i, c in enumerate(CASES)])
def test_case_in_process(case):
    res = verify(gold=case["gold"], completion=case["completion"])
    assert (res.status, res.correct) == (case["expected_status"], case["expected_correct"]), res.reason
    if "expected_n_boxed" in case:
        assert res.n_boxed == case["expected_n_boxed"]
    assert res.reason and res.reason.endswith(".")


def test_table_through_pool_matches_in_process(pool):
    results = pool.verify_batch(golds=[c["gold"] for c in CASES], completions=[c["completion"] for c in CASES])
    got = [(r.status, r.correct) for r in results]
    want = [(c["expected_status"], c["expected_correct"]) for c in CASES]
    assert got == want
    stats = pool.stats()
    assert stats["local"] > 0 and stats["remote"] > 0  # both paths were exercised
