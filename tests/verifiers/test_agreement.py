"""octo's shortcuts never contradict math-verify where they claim to agree with it.

The plain-number and tuple/interval/set fast paths (caller side) and the "surely different"
value probe (worker side, before math-verify's slow simplify) are checked against
``math_verify.verify`` on seeded random pairs and on hand-picked tricky ones.
"""

from __future__ import annotations

import logging
import random
from fractions import Fraction

import pytest

from octo.verifiers.check import _parse, _surely_different
from octo.verifiers.fastpath import compare_groups, compare_numbers, parse_group, parse_number


@pytest.fixture(scope="module")
def mv():
    from math_verify import verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    return lambda g, a: bool(verify(list(_parse(g)), list(_parse(a)), timeout_seconds=None))


def _num(rng: random.Random, near: Fraction | None = None) -> str:
    if near is not None and rng.random() < 0.6:
        v = near
    else:
        v = Fraction(rng.choice([rng.randint(-2000, 2000), rng.randint(1, 40)])) / rng.choice([1, 1, 2, 3, 4, 7, 8])
    form = rng.choice(["int", "dec", "frac"])
    if form == "int":
        return str(round(v))
    if form == "dec":
        return repr(round(float(v), rng.randint(1, 7)))
    return f"\\frac{{{v.numerator}}}{{{v.denominator}}}" if v.denominator != 1 else str(v.numerator)


def test_number_fast_path_agrees_with_math_verify(mv):
    rng = random.Random(11)
    checked = 0
    for _ in range(150):
        g = _num(rng)
        a = _num(rng, parse_number(g).value)
        verdict = compare_numbers(parse_number(g), parse_number(a))
        if verdict is None:
            continue
        checked += 1
        assert verdict == mv(g, a), (g, a)
    assert checked > 120


def _group(rng: random.Random, base: list[str] | None = None) -> tuple[str, list[str]]:
    n = rng.choice([2, 2, 3])
    items = list(base) if base and rng.random() < 0.6 else [
        rng.choice([str(rng.randint(-9, 9)), f"\\frac{{{rng.randint(1, 9)}}}{{{rng.randint(1, 9)}}}",
                    f"{rng.randint(1, 9)}/{rng.randint(1, 9)}"]) for _ in range(n)]
    if base and rng.random() < 0.3:
        rng.shuffle(items)
    left, right = rng.choice([("(", ")"), ("[", "]"), ("(", "]"), ("[", ")"), ("\\{", "\\}"), ("", ""),
                              ("\\left(", "\\right]")])
    return left + rng.choice([",", ", "]).join(items) + right, items


def test_group_fast_path_agrees_with_math_verify(mv):
    rng = random.Random(3)
    checked = 0
    for _ in range(200):
        g, items = _group(rng)
        a, _ = _group(rng, items)
        gg, ag = parse_group(g), parse_group(a)
        verdict = compare_groups(gg, ag) if gg and ag else None
        if verdict is None:
            continue
        checked += 1
        assert verdict == mv(g, a), (g, a)
    assert checked > 30


TRICKY = [
    ("\\sqrt{x^2}", "x"), ("|x|", "x"), ("\\sqrt{x}\\sqrt{x}", "x"), ("\\ln(x^2)", "2\\ln x"), ("e^{\\ln x}", "x"),
    ("\\frac{x^2-1}{x-1}", "x+1"), ("x^0", "1"), ("0^x", "0"), ("\\sqrt{-1}", "i"), ("i^2", "-1"),
    ("\\tan x", "\\frac{\\sin x}{\\cos x}"), ("\\sqrt[3]{-8}", "-2"), ("\\log_2 8", "3"), ("\\log 100", "2"),
    ("\\ln 2", "\\log 2"), ("\\infty", "\\infty+1"), ("x", "y"), ("\\pi", "\\frac{22}{7}"), ("e^{i\\pi}", "-1"),
    ("\\cos^2 x - \\sin^2 x", "\\cos 2x"), ("\\sqrt{(x-1)^2}", "x-1"), ("\\sqrt{4}", "-2"), ("10!", "3628800"),
    ("\\binom{10}{3}", "121"), ("\\text{Monday}", "Monday"), ("50\\%", "50"), ("\\frac{1}{3}", "0.333333"),
    ("x^2+54x+729", "(x-27)^2"), ("x^2+54x+729", "(x+27)^2"), ("(1+\\sqrt2)^2", "3+2\\sqrt2"),
    ("\\frac{\\pi}{4}", "\\frac{\\pi}{3}"), ("2x+1", "y=2x+1"), ("3", "x=3"),
]


@pytest.mark.parametrize("gold, answer", TRICKY)
def test_value_probe_on_tricky_pairs(mv, gold, answer):
    if _surely_different(_parse(gold), _parse(answer)):
        assert mv(gold, answer) is False


def _expr(rng: random.Random, depth: int = 0) -> str:
    atoms = ["x", "y", "\\pi", "e", "\\sqrt{2}", "\\sqrt{3}", "3", "\\frac{2}{7}", "\\ln 2", "\\sin x", "a",
             "\\sqrt{x^2}", "|x|", "\\binom{5}{2}", "x!"]
    if depth > 1 or rng.random() < 0.3:
        return rng.choice(atoms)
    a, b = _expr(rng, depth + 1), _expr(rng, depth + 1)
    return rng.choice([f"({a})+({b})", f"({a})-({b})", f"({a})({b})", f"\\frac{{{a}}}{{{b}}}",
                       f"({a})^{{{rng.randint(2, 3)}}}", f"\\sqrt{{{a}}}"])


def test_value_probe_never_contradicts_math_verify(mv):
    rng = random.Random(5)
    claimed = 0
    for _ in range(50):
        g = _expr(rng)
        a = rng.choice([g, g + "+0", f"({g})\\cdot 1", _expr(rng)])
        if _surely_different(_parse(g), _parse(a)):
            claimed += 1
            assert mv(g, a) is False, (g, a)
    assert claimed >= 6
