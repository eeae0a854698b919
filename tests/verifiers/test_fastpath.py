"""The plain-number fast path: parsing, exact comparison, math-verify's 6-decimal rounding, percentages."""

from __future__ import annotations

from fractions import Fraction

import pytest

from octo.verifiers.fastpath import (
    clean_answer,
    compare_numbers,
    compare_readings,
    normalize_unicode,
    number_readings,
    parse_number,
    parse_time,
    strip_group_braces,
)


@pytest.mark.parametrize("text, value, decimal, percent", [
    ("42", 42, False, False), ("-42", -42, False, False), ("+7", 7, False, False),
    ("1,234", 1234, False, False), ("1{,}234", 1234, False, False), ("1\\,234", 1234, False, False),
    ("12,345,678.5", Fraction(24691357, 2), True, False), ("3.50", Fraction(7, 2), True, False),
    (".5", Fraction(1, 2), True, False), ("\\frac{3}{4}", Fraction(3, 4), False, False),
    ("\\dfrac{3}{4}", Fraction(3, 4), False, False), ("\\frac12", Fraction(1, 2), False, False),
    ("-\\frac{1}{2}", Fraction(-1, 2), False, False), ("\\frac{-1}{2}", Fraction(-1, 2), False, False),
    ("3/4", Fraction(3, 4), False, False), ("25%", 25, False, True), ("25\\%", 25, False, True),
    ("12.5 \\%", Fraction(25, 2), True, True), ("\\$12", 12, False, False), ("\\$1,200.50", Fraction(2401, 2), True, False),
    ("12 cm", 12, False, False), ("12\\text{ cm}", 12, False, False), ("12\\,\\text{cm}", 12, False, False),
    ("45^\\circ", 45, False, False), ("5\\text{ m}^2", 5, False, False), ("7 apples", 7, False, False),
    ("\\text{12 cm}", 12, False, False), ("{5}", 5, False, False), ("-\\$5", -5, False, False),
])
def test_parse_number(text, value, decimal, percent):
    n = parse_number(text)
    assert n is not None, text
    assert (n.value, n.decimal, n.percent) == (Fraction(value), decimal, percent)


@pytest.mark.parametrize("text", [
    "", "x", "1,23", "1,2345", "2x", "\\sqrt{2}", "1e3", "nan", "inf", "\\infty", "3\\frac12", "1/0",
    "1" * 41, "(1,2)", "1, 2", "3 + 4", "$", "\\text{}", "5 x 3",
])
def test_not_a_plain_number(text):
    assert parse_number(text) is None


def test_options_switch_off_units_and_separators():
    assert parse_number("1,234", thousands=False) is None
    assert parse_number("12 cm", units=False) is None
    assert parse_number("\\$12", units=False) is None
    assert parse_number("12", units=False).value == 12


def _cmp(gold: str, answer: str):
    return compare_numbers(parse_number(gold), parse_number(answer))


@pytest.mark.parametrize("gold, answer, expected", [
    ("42", "42", True), ("42", "43", False), ("1234", "1,234", True), ("3", "3.0", True),
    ("\\frac{1}{3}", "0.333333", True), ("\\frac{1}{3}", "0.3333", False), ("\\frac{1}{3}", "0.333334", False),
    ("0.1", "0.1000001", True), ("0.1", "0.100001", False), ("\\frac{4}{3}", "1.3333333", True),
    ("\\frac{1}{2}", "2/4", True), ("\\frac{1}{2}", "0.5", True), ("7", "\\frac{14}{2}", True),
    ("25", "25%", True), ("0.25", "25%", True), ("25%", "0.25", True), ("50%", "50.0", True),
    ("50%", "\\frac{1}{2}", True), ("4%", "0.4", False), ("30%", "25", False),
    ("-5", "5", False), ("0", "-0", True),
    # exact halves at the 7th decimal: math-verify may round either way, so the fast path abstains
    ("0.0000005", "0.000001", None), ("0.1234565", "0.123457", None),
    # more significant digits than a sympy Float keeps: abstain
    ("0.1234567890123456", "0.1234567890123457", None),
])
def test_compare(gold, answer, expected):
    assert _cmp(gold, answer) is expected


def test_clean_answer():
    assert clean_answer("$\\frac{1}{2}$.") == "\\frac{1}{2}"
    assert clean_answer("\\(3\\)") == "3"
    assert clean_answer("\\[ 17 \\]") == "17"
    assert clean_answer("**42**") == "42"
    assert clean_answer("$$5$$") == "5"
    assert clean_answer("\\displaystyle \\frac{1}{2}") == "\\frac{1}{2}"
    assert clean_answer("{{{5}}}") == "5"
    assert clean_answer("5..") == "5.."  # an ellipsis is not a final period


def test_strip_group_braces():
    assert strip_group_braces("{a}{b}") == "{a}{b}"
    assert strip_group_braces("{{a}+{b}}") == "{a}+{b}"
    assert strip_group_braces("{\\}5}") == "\\}5"
    assert strip_group_braces("{" * 10_000 + "5" + "}" * 10_000) == "5"


def test_normalize_unicode():
    assert normalize_unicode("−5") == "-5"
    assert normalize_unicode("１２") == "12"
    assert normalize_unicode("1\u200b2") == "12"
    assert normalize_unicode("½") == "\\frac{1}{2}"
    assert normalize_unicode("x²") == "x^{2}"
    assert normalize_unicode("plain ascii") == "plain ascii"


@pytest.mark.parametrize("text, value", [
    ("2,74", Fraction(274, 100)), ("1000,99", Fraction(100099, 100)), ("0,111", Fraction(111, 1000)),
    ("1,22", Fraction(122, 100)), ("1 1/2", Fraction(3, 2)), ("3\\frac12", Fraction(7, 2)),
    ("-2\\frac{1}{2}", Fraction(-5, 2)), ("1 000", 1000), ("11,\\! 111", 11111), ("10weeks", 10), ("5cm", 5),
    ("125\\textnormal{ miles}", 125), ("1,234", 1234),
])
def test_number_readings(text, value):
    (n,) = number_readings(text)
    assert n.value == value


@pytest.mark.parametrize("text", ["1,2", "2,3", "10x", "1 3/2", "x", "(1, 2)"])
def test_no_number_reading(text):
    assert number_readings(text) == []


def test_compare_readings_and_times():
    assert compare_readings(number_readings("2.74"), number_readings("2,74")) is True
    assert compare_readings(number_readings("274"), number_readings("2,74")) is False
    assert compare_readings(number_readings("5"), []) is None  # nothing to compare: math-verify decides
    assert parse_time("20:34") == (20, 34) and parse_time("24:00") is None and parse_time("7:5") is None


def test_clean_answer_keeps_two_formulas_and_reads_constants():
    assert clean_answer("$a$ and $b$") == "$a$ and $b$"
    assert clean_answer("1 - \\frac{1}{\\mathrm{e}}") == "1 - \\frac{1}{e}"
    assert clean_answer("9.00 pi") == "9.00 \\pi"
    assert clean_answer("\\pi r^2") == "\\pi r^2"
