"""The toy world: deterministic, answers correct by construction, held-out disjoint."""

from __future__ import annotations

import json
import random
import re

import pytest

from octo.config import WorldConfig
from octo.toyworld import TRAIN_SOURCES, generate_world, make_problem


def _read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    cfg = WorldConfig(seed=3, docs_per_source=150, prompts=100, heldout_per_level=30, max_number=20, max_ops=3)
    out = tmp_path_factory.mktemp("world")
    generate_world(cfg, out)
    return cfg, out


def test_deterministic_and_seed_sensitive(world, tmp_path):
    cfg, out = world
    again = tmp_path / "again"
    generate_world(cfg, again)
    for name in [*TRAIN_SOURCES, "heldout", "prompts"]:
        assert (out / f"{name}.jsonl").read_bytes() == (again / f"{name}.jsonl").read_bytes(), name
    other = tmp_path / "other"
    generate_world(WorldConfig(seed=4, docs_per_source=150, prompts=100, heldout_per_level=30), other)
    assert (out / "heldout.jsonl").read_bytes() != (other / "heldout.jsonl").read_bytes()


def _eval_equation(eq: str) -> bool:
    lhs, rhs = eq.split("=")
    return eval(lhs) == int(rhs)  # noqa: S307 - digits and +/- only, checked below


def test_answers_correct_by_construction():
    rng = random.Random(0)
    for _ in range(2000):
        p = make_problem(rng, rng.randint(1, 4), 30)
        assert all(0 <= v <= 30 for v in p.values)
        assert all(_eval_equation(e) for e in p.equations())
        numbers = [int(x) for x in re.findall(r"\d+", p.question)]
        value = numbers[0]
        for (op, n, _), q_n in zip(p.steps, numbers[1:]):
            assert n == q_n
            value = value + n if op == "+" else value - n
        assert value == p.answer


def test_sources_well_formed(world):
    cfg, out = world
    for name, template in TRAIN_SOURCES.items():
        rows = _read(out / f"{name}.jsonl")
        assert len(rows) == cfg.docs_per_source
        if template == "QA":
            for r in rows:
                assert f"\\boxed{{{r['answer']}}}" in r["content"]
                for eq in re.findall(r"(\d+(?:[+-]\d+)+=\d+)", r["cot"]):
                    # long-openr1 writes a slip then repairs it ("Wait, that is not right")
                    if not _eval_equation(eq):
                        assert name == "long-openr1" and "not right" in r["cot"]
    long_len = sum(len(r["cot"]) for r in _read(out / "long-am.jsonl"))
    short_len = sum(len(r["cot"]) for r in _read(out / "qa-omi2.jsonl"))
    assert long_len > 3 * short_len


def test_heldout_levels_and_disjointness(world):
    cfg, out = world
    held = _read(out / "heldout.jsonl")
    prompts = _read(out / "prompts.jsonl")
    assert [sum(r["level"] == lv for r in held) for lv in (1, 2, 3)] == [30, 30, 30]
    held_q = {r["question"] for r in held}
    assert len(held_q) == len(held)
    assert not held_q & {r["question"] for r in prompts}
    for name, template in TRAIN_SOURCES.items():
        if template == "QA":
            assert not held_q & {r["query"] for r in _read(out / f"{name}.jsonl")}
    for r in held:
        numbers = [int(x) for x in re.findall(r"\d+", r["question"])]
        assert r["level"] == len(numbers) - 1


def test_megamath_qa_has_a_one_line_and_a_stepwise_form(world):
    """The RL lever of docs/toyworld.md: multi-step MegaMath-QA answers come as one expression or as one
    equation per operation, about half each; one-step answers have a single form."""
    _, out = world
    rows = _read(out / "qa-megamath.jsonl")
    multi = [r for r in rows if r["level"] > 1]
    one_line = [r for r in multi if r["cot"].count("=") == 1]
    stepwise = [r for r in multi if r["cot"].count("=") == r["level"]]
    assert len(one_line) + len(stepwise) == len(multi)
    assert 0.35 < len(one_line) / len(multi) < 0.65
    for r in one_line + stepwise:
        for eq in r["cot"].split():
            assert _eval_equation(eq), r["cot"]
        assert r["cot"].split()[-1].endswith(f"={r['answer']}")
    assert all(r["cot"].count("=") == 1 for r in rows if r["level"] == 1)
