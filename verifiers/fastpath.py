"""Answer normalisation and the plain-number fast path (stdlib only, no sympy).

Plain numbers (``72``, ``-3.5``, ``\\frac{3}{4}``, ``25\\%``, ``\\$12``) compare here in microseconds
instead of math-verify's milliseconds. The fast path decides only when its verdict provably agrees
with math-verify's, else returns ``None``:

- integers and fractions compare exactly (``Fraction``); with a decimal point both sides are rounded
  to 6 decimals, as math-verify does (``float_rounding=6``); a rounding tie or more than 15
  significant digits (sympy ``Float`` precision) is left to math-verify;
- ``X%`` matches ``X`` or ``X/100``;
- intervals and tuples of integers or fractions match when brackets and entries are the same, sets
  when they hold the same values; anything ambiguous (``1,234``, reversed intervals, decimals) is
  left to math-verify.

Number literals have at most 40 digits, so the arithmetic is cheap enough for the calling process.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

# Unicode that models emit for math, rewritten to the ASCII/LaTeX that parsers read.
_UNICODE = {
    "\u2212": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\ufe63": "-", "\uff0d": "-",
    "\u00d7": "\\times ", "\u22c5": "\\cdot ", "\u00b7": "\\cdot ", "\u00f7": "\\div ",
    "\u221a": "\\sqrt", "\u03c0": "\\pi ", "\u221e": "\\infty ", "\u2264": "\\le ", "\u2265": "\\ge ",
    "\u2260": "\\ne ", "\u00b0": "^\\circ", "\u2032": "'",
    "\u00bd": "\\frac{1}{2}", "\u2153": "\\frac{1}{3}", "\u2154": "\\frac{2}{3}", "\u00bc": "\\frac{1}{4}",
    "\u00be": "\\frac{3}{4}", "\u2155": "\\frac{1}{5}", "\u215b": "\\frac{1}{8}",
    "\u00b2": "^{2}", "\u00b3": "^{3}", "\u00b9": "^{1}", "\u2070": "^{0}",
    "\u00a0": " ", "\u2009": " ", "\u202f": " ", "\u2007": " ", "\u2002": " ", "\u2003": " ",
    "\u200b": "", "\u200c": "", "\u200d": "", "\u2060": "", "\ufeff": "", "\u00ad": "",
    "\u200e": "", "\u200f": "", "\u202a": "", "\u202b": "", "\u202c": "", "\u202d": "", "\u202e": "",
    "\uff0e": ".", "\uff0c": ",", "\uff05": "%", "\uff0f": "/",
}
_UNICODE.update({chr(0xFF10 + i): str(i) for i in range(10)})  # full-width digits
_UNICODE_TABLE = str.maketrans(_UNICODE)
_UNICODE_CHARS = frozenset(_UNICODE)

# \mathrm{e} is Euler's e (ISO style); math-verify's parser drops the whole term instead (1 - 1/\mathrm{e} == 1)
_ROMAN_CONSTANT = re.compile(r"\\mathrm\s*\{\s*(e|i)\s*\}")
_PLAIN_PI = re.compile(r"(?<![A-Za-z])pi(?![A-Za-z])")
_DELIMS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
_MAX_DIGITS = 40


def normalize_unicode(text: str) -> str:
    if text.isascii() or not any(ch in _UNICODE_CHARS for ch in text):
        return text
    return text.translate(_UNICODE_TABLE)


def strip_group_braces(text: str) -> str:
    """``{{5}}`` -> ``5``: LaTeX braces only group, while math-verify reads them as a set, exponentially slowly."""
    if not (text.startswith("{") and text.endswith("}")):
        return text
    n = len(text)
    lead = len(text) - len(text.lstrip("{"))
    match = {}
    stack = []
    i = 0
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            stack.append(i)
        elif ch == "}" and stack:
            match[stack.pop()] = i
        i += 1
    k = 0
    while k < lead and match.get(k) == n - 1 - k:
        k += 1
    return text[k:n - k].strip() if k else text


def clean_answer(text: str, *, unicode: bool = True) -> str:
    """Strip what surrounds an answer: math delimiters, grouping braces, bold, a final period."""
    if unicode:
        text = normalize_unicode(text)
    text = _ROMAN_CONSTANT.sub(r"\1", text.strip())
    if "pi" in text and "\\" not in text:  # plain text "9 pi": LaTeX would read the product p*i
        text = _PLAIN_PI.sub(r"\\pi ", text).rstrip()
    for _ in range(4):
        before = text
        text = strip_group_braces(text)
        for left, right in _DELIMS:
            if (len(text) > len(left) + len(right) and text.startswith(left) and text.endswith(right)
                    and left not in text[len(left):-len(right)]):  # "$a$ and $b$" is not one formula
                text = text[len(left):-len(right)].strip()
        if text.startswith("**") and text.endswith("**") and len(text) > 4:
            text = text[2:-2].strip()
        if text.endswith(".") and not text.endswith(".."):
            text = text[:-1].rstrip()
        for cmd in ("\\displaystyle", "\\textstyle"):
            if text.startswith(cmd):
                text = text[len(cmd):].strip()
        if text == before:
            break
    return text


def same_text(a: str, b: str) -> bool:
    """Identical up to whitespace (then they are trivially equal)."""
    return "".join(a.split()) == "".join(b.split())


@dataclass(frozen=True)
class Num:
    """A plain number: exact value, written with a decimal point?, written as a percentage?"""

    value: Fraction
    decimal: bool
    percent: bool
    sig_digits: int


# unit words a model glues to a number ("10weeks", "5cm"); only these, since "10x" is a monomial
_GLUED_UNITS = ("(?:cm|mm|km|kg|mg|ml|ft|lbs?|oz|mi|yd|hrs?|mins?|secs?|hours?|minutes?|seconds?|days?|weeks?"
                "|months?|years?|dollars?|cents?|euros?|meters?|metres?|miles?|inch(?:es)?|feet|pounds?|grams?"
                "|liters?|litres?|degrees?|units?|people|points?|pages?|students?|apples?|cookies?|marbles?)")
_CURRENCY_HEAD = re.compile(r"^(?:\\\$|\$|€|£|¥|₹|USD\s*|US\\\$|Rs\.?\s*)\s*")
_UNIT_TAIL = re.compile(
    r"(?:(?:\s*\\(?:text|mbox|mathrm|textrm|textbf|mathbf|textnormal|textit|operatorname)\s*\{[^{}]*\}"
    r"|\s+[A-Za-z][A-Za-z.]*|(?<=\d)(?:" + _GLUED_UNITS + r")\b)(?:\s*\^\s*\{?[23]\}?)?"
    r"|\s*\^\s*\{?\\circ\}?"
    r"|\s*(?:\\\$|\$|€|£|¥|₹))+$")
_TEXT_WRAP = re.compile(r"^\\(?:text|mbox|mathrm|textrm)\s*\{([^{}]*)\}$")
_SPACING = re.compile(r"\\[;:]|\\ |~|\\quad|\\qquad|\\,(?!\d)")
_NEG_SPACE = re.compile(r",\s*\\!\s*")  # 11,\! 111 (MATH's thousands separator)
_FRAC = re.compile(r"^\\[dtc]?frac\s*(?:\{\s*([-+]?\d+)\s*\}|(\d))\s*(?:\{\s*(\d+)\s*\}|(\d))$")
_SLASH = re.compile(r"^([-+]?\d+)\s*/\s*(\d+)$")
_THOUSANDS = re.compile(r"^[1-9]\d{0,2}(?:(?:,|\{,\}|\\,| )\d{3})+(?=$|\.)")
_DECIMAL = re.compile(r"^(\d*)\.(\d+)$|^(\d+)$")


def parse_number(text: str, *, thousands: bool = True, units: bool = True) -> Num | None:
    """``text`` as a plain number, or None when it is anything else (then math-verify decides)."""
    s = text.strip()
    if not s or len(s) > 80:
        return None
    s = _SPACING.sub(" ", _NEG_SPACE.sub(",", s).replace("\\!", "")).strip()
    whole = _TEXT_WRAP.match(s)
    if whole:  # \text{12 cm}: the whole answer written as text
        s = whole.group(1).strip()
    if units:
        s = _CURRENCY_HEAD.sub("", s)
        s = _UNIT_TAIL.sub("", s).strip()
    percent = False
    for tail in ("\\%", "%"):
        if s.endswith(tail):
            s, percent = s[: -len(tail)].rstrip(), True
            break
    if units and not percent:
        s = _CURRENCY_HEAD.sub("", s)
    sign = 1
    if s and s[0] in "+-":
        sign = -1 if s[0] == "-" else 1
        s = s[1:].lstrip()
        if units:
            s = _CURRENCY_HEAD.sub("", s)
    if s.startswith("{") and s.endswith("}") and s.count("{") == 1:
        s = s[1:-1].strip()
    if not s:
        return None
    m = _FRAC.match(s) or _SLASH.match(s)
    if m:
        groups = [g for g in m.groups() if g is not None]
        num, den = groups[0], groups[1]
        if len(num) > _MAX_DIGITS or len(den) > _MAX_DIGITS or int(den) == 0:
            return None
        return Num(sign * Fraction(int(num), int(den)), decimal=False, percent=percent, sig_digits=0)
    if thousands:
        t = _THOUSANDS.match(s)
        if t:
            s = re.sub(r"\D", "", t.group()) + s[t.end():]
    m = _DECIMAL.match(s)
    if not m:
        return None
    if m.group(3) is not None:
        digits = m.group(3)
        if len(digits) > _MAX_DIGITS:
            return None
        return Num(Fraction(sign * int(digits)), decimal=False, percent=percent, sig_digits=0)
    whole, frac = m.group(1) or "0", m.group(2)
    if len(whole) + len(frac) > _MAX_DIGITS:
        return None
    sig = len((whole + frac).lstrip("0"))
    value = Fraction(int(whole + frac), 10 ** len(frac))
    return Num(sign * value, decimal=True, percent=percent, sig_digits=sig)


_DECIMAL_COMMA = re.compile(r"^([-+]?)(\d+),(\d+)$")
_MIXED = re.compile(r"^([-+]?)(\d+)(?:\s+(\d+)\s*/\s*(\d+)"
                    r"|\s*\\[dtc]?frac\s*(?:\{\s*(\d+)\s*\}|(\d))\s*(?:\{\s*(\d+)\s*\}|(\d)))$")
_TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def number_readings(text: str, *, thousands: bool = True, units: bool = True) -> list[Num]:
    """Every plain-number reading of ``text``: :func:`parse_number`'s, else a decimal comma
    (``2,74``; not ``1,234``, a thousands group, nor ``1,2``, a list) or a mixed number
    (``1 1/2``, ``3\\frac12``; math-verify reads the LaTeX one so too)."""
    n = parse_number(text, thousands=thousands, units=units)
    if n is not None:
        return [n]
    s = text.strip()
    if len(s) > 80:
        return []
    if units:
        s = _UNIT_TAIL.sub("", _CURRENCY_HEAD.sub("", s)).strip()
    m = _DECIMAL_COMMA.match(s)
    if m:
        sign, whole, frac = m.groups()
        if (len(whole) + len(frac) > _MAX_DIGITS or (len(frac) == 3 and whole[0] != "0" and len(whole) <= 3)
                or (len(whole) == 1 and whole != "0" and len(frac) == 1)):
            return []
        value = Fraction(int(whole + frac), 10 ** len(frac)) * (-1 if sign == "-" else 1)
        return [Num(value, decimal=True, percent=False, sig_digits=len((whole + frac).lstrip("0")))]
    m = _MIXED.match(s)
    if m:
        sign, whole, *rest = m.groups()
        num, den = [g for g in rest if g is not None]
        if max(len(whole), len(num), len(den)) > _MAX_DIGITS or not 0 < int(num) < int(den):
            return []
        value = (int(whole) + Fraction(int(num), int(den))) * (-1 if sign == "-" else 1)
        return [Num(value, decimal=False, percent=False, sig_digits=0)]
    return []


def compare_readings(golds: list[Num], answers: list[Num]) -> bool | None:
    """True when some readings are equal, False when surely none is, None to let math-verify decide."""
    undecided = not answers
    for g in golds:
        for a in answers:
            eq = compare_numbers(g, a)
            if eq:
                return True
            undecided |= eq is None
    return None if undecided else False


def parse_time(text: str) -> tuple[int, int] | None:
    """A time of day ``20:34`` as (hours, minutes); math-verify would read a ratio (20:34 = 10:17)."""
    m = _TIME.match(text.strip())
    return (int(m.group(1)), int(m.group(2))) if m else None


def _readings(n: Num) -> list[tuple[Fraction, bool]]:
    if n.percent:
        return [(n.value, n.decimal), (n.value / 100, True)]
    return [(n.value, n.decimal)]


_SCALE = 10 ** 6


def _round6(x: Fraction) -> Fraction | None:
    """``x`` rounded to 6 decimals, or None when ``x`` sits on a tie (math-verify may round either way)."""
    scaled = x * _SCALE
    floor = scaled.numerator // scaled.denominator
    rest = scaled - floor
    if rest == Fraction(1, 2):
        return None
    return Fraction(floor + (1 if rest > Fraction(1, 2) else 0), _SCALE)


def _equal(a: Fraction, a_dec: bool, b: Fraction, b_dec: bool) -> bool | None:
    if a == b:
        return True
    if not (a_dec or b_dec):
        return False
    ra, rb = _round6(a), _round6(b)
    if ra is None or rb is None:
        return None
    return ra == rb


def compare_numbers(gold: Num, answer: Num) -> bool | None:
    """True/False when the numbers surely are/are not equal; None to let math-verify decide."""
    if (gold.decimal and gold.sig_digits > 15) or (answer.decimal and answer.sig_digits > 15):
        return None
    undecided = False
    for g, g_dec in _readings(gold):
        for a, a_dec in _readings(answer):
            eq = _equal(g, g_dec, a, a_dec)
            if eq:
                return True
            if eq is None:
                undecided = True
    return None if undecided else False


@dataclass(frozen=True)
class Group:
    """A tuple/interval (``kind="seq"``) or a set/bare list (``kind="set"``) of exact numbers."""

    kind: str
    open: str
    close: str
    items: tuple[Fraction, ...]


_GROUP = re.compile(r"^(?:\\left\s*)?(\(|\[|\\\{)(.*?)(?:\\right\s*)?(\)|\]|\\\})$", re.S)
_AMBIGUOUS_COMMA = re.compile(r"\d,\d{3}(?!\d)")


def parse_group(text: str) -> Group | None:
    """``text`` as a tuple, interval, set or bare list of integers/fractions, else None."""
    s = text.strip()
    if len(s) > 200 or "," not in s or _AMBIGUOUS_COMMA.search(s):
        return None
    m = _GROUP.match(s)
    if m:
        open_, inner, close = m.group(1), m.group(2), m.group(3)
        if (open_ == "\\{") != (close == "\\}"):
            return None
        kind = "set" if open_ == "\\{" else "seq"
    else:
        open_, inner, close, kind = "", s, "", "set"
    parts = inner.split(",")
    if len(parts) < 2:
        return None
    values = []
    for part in parts:
        n = parse_number(part, thousands=False, units=False)
        if n is None or n.decimal or n.percent:
            return None
        values.append(n.value)
    return Group(kind=kind, open=open_, close=close, items=tuple(values))


def compare_groups(gold: Group, answer: Group) -> bool | None:
    """True/False when surely equal/unequal (math-verify's reading), None to let it decide."""
    if gold.kind != answer.kind:
        return None
    if gold.kind == "set":
        return set(gold.items) == set(answer.items)
    if len(gold.items) == 2 and len(answer.items) == 2:
        # proper intervals (lo < hi): equal iff the same ends with the same closures; an empty
        # or reversed "interval" is left to math-verify (it may read a tuple or the empty set)
        if not (gold.items[0] < gold.items[1] and answer.items[0] < answer.items[1]):
            return None
        return (gold.open, gold.close) == (answer.open, answer.close) and gold.items == answer.items
    if (gold.open, gold.close) == (answer.open, answer.close) == ("(", ")"):  # tuples
        return gold.items == answer.items
    return None
