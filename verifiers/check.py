"""One verification: gold + completion -> :class:`VerifyResult` with a status.

Order of decisions (the same in the calling process and in a worker):

1. the gold's answer part (its box, its ``####`` part, or all of it); empty -> ``gold_unparseable``;
2. the completion's answer (:func:`~octo.verifiers.extract.extract_answer`);
3. identical to the gold up to whitespace -> ``ok``;
4. plain numbers, times, tuples/intervals/sets of them -> exact comparison
   (:mod:`octo.verifiers.fastpath`);
5. otherwise math-verify ``verify(gold=..., target=...)`` (gold first: it is asymmetric), after a
   cheap check that two plain expressions take different values (:func:`_surely_different`).

math-verify's own ``signal.alarm`` timeouts are off; one interval timer covers the whole item and
raises :class:`VerifierTimeout`, a ``BaseException`` that math-verify's ``except Exception`` cannot
swallow. Code stuck in C cannot be interrupted, so :class:`~octo.verifiers.pool.VerifierPool` also
kills an overrunning worker, and ``guard_heavy`` refuses power towers and huge factorials first.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Literal

from octo.verifiers.config import VerifierConfig
from octo.verifiers.extract import Extraction, extract_answer, find_boxes, gold_answer, last_math
from octo.verifiers.fastpath import (
    _ROMAN_CONSTANT,
    clean_answer,
    compare_groups,
    compare_readings,
    number_readings,
    parse_group,
    parse_time,
    same_text,
)

Status = Literal["ok", "wrong", "no_answer", "gold_unparseable", "timeout", "error"]
STATUSES: tuple[str, ...] = ("ok", "wrong", "no_answer", "gold_unparseable", "timeout", "error")

# An answer whose value would need more bits than this is not evaluated (guard_heavy).
HEAVY_BITS = 4_000_000


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of one verification; ``checked_by``: identical, fast, math_verify, guard, limit, pool or None."""

    correct: bool
    status: Status
    extracted: str | None
    method: str | None
    reason: str
    n_boxed: int
    checked_by: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


class VerifierTimeout(BaseException):
    """Raised by the item timer; a BaseException so that ``except Exception`` cannot swallow it."""


def _show(text: str, limit: int = 40) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


@dataclass(frozen=True)
class Prepared:
    """The inputs of one verification after extraction and cleaning."""

    gold: str  # the gold's answer part, cleaned
    extraction: Extraction
    answer: str | None  # the extracted answer, cleaned (None when math-verify extracts it: ``deferred``)
    n_boxed: int
    identical: bool = False  # the whole completion is the gold, up to whitespace
    boxes: tuple[str, ...] = ()  # every box's content, cleaned, when there are several

    @property
    def key(self) -> tuple:
        """What the verdict depends on (VerifierPool's cache and de-duplication)."""
        text = self.extraction.text if self.extraction.deferred else None
        return (self.gold, self.answer, self.boxes, text, self.identical)


def prepare(gold: str, completion: str, config: VerifierConfig, task: str | None = None) -> Prepared:
    methods = config.extract_by_task.get(task, config.extract) if task is not None else config.extract
    uni = config.normalize_unicode
    g = clean_answer(gold_answer(clean_answer(gold, unicode=uni)), unicode=uni)
    ext = extract_answer(completion, methods)
    if ext.method == "last_number" and not _is_number(g, config):
        # plain text whose gold is a tuple, an interval, a relation...: the last number cannot be it
        found = last_math(ext.text)
        if found:
            ext = Extraction(answer=found, method="last_number", text=ext.text,
                             reason="answer found by 'last_number' (the last tuple, interval or relation)")
        elif "latex" in methods:
            ext = Extraction(answer=None, method="latex", text=ext.text,
                             reason="answer left to math-verify's extraction (the gold is not a plain number)")
    answer = clean_answer(ext.answer, unicode=uni) if ext.answer is not None else None
    boxes = tuple(clean_answer(b, unicode=uni) for b in ext.boxes)
    if answer and all(same_text(b, answer) for b in boxes):
        boxes = ()  # the same answer boxed twice is one answer
    return Prepared(gold=g, extraction=ext, answer=answer or None, n_boxed=find_boxes(completion).count,
                    identical=bool(gold.strip()) and same_text(gold, completion), boxes=boxes)


def _is_number(gold: str, config: VerifierConfig) -> bool:
    return bool(number_readings(gold, thousands=config.thousands_separators, units=config.strip_units)
                or parse_time(gold))


def _result(prep: Prepared, status: Status, reason: str, checked_by: str | None,
            extracted: str | None = None) -> VerifyResult:
    return VerifyResult(correct=status == "ok", status=status, extracted=extracted or prep.extraction.answer,
                        method=prep.extraction.method, reason=reason, n_boxed=prep.n_boxed,
                        checked_by=checked_by)


def _no_answer(prep: Prepared, reason: str | None = None) -> VerifyResult:
    reason = reason or prep.extraction.reason
    return _result(prep, "no_answer", reason[0].upper() + reason[1:] + ".", None)


def _verdict(prep: Prepared, equal: bool, checked_by: str, answer: str | None = None) -> VerifyResult:
    # the reason never names the extraction method, so one verdict serves every equal answer (the pool's cache)
    shown = _show(answer or prep.answer or "")
    if equal:
        return _result(prep, "ok", f"The answer {shown} equals the gold {_show(prep.gold)}.", checked_by, answer)
    return _result(prep, "wrong", f"The answer {shown} does not equal the gold {_show(prep.gold)}.",
                   checked_by, answer)


def decide_fast(prep: Prepared, config: VerifierConfig) -> VerifyResult | None:
    """The verdict when it needs no math-verify, else None."""
    if not prep.gold:
        return _result(prep, "gold_unparseable", "The gold answer is empty.", None)
    if prep.identical or (prep.answer is not None and same_text(prep.answer, prep.gold)):
        return _verdict(prep, True, "identical", None if prep.answer else prep.gold)
    opts = {"thousands": config.thousands_separators, "units": config.strip_units}
    g = number_readings(prep.gold, **opts)
    gg = parse_group(prep.gold) if not g else None
    gt = parse_time(prep.gold)
    if not g and gg is None and gt is None:
        return None
    if prep.extraction.deferred:
        return None  # math-verify finds the answer, in a worker
    if prep.answer is None:
        return _no_answer(prep)
    if len(prep.answer) > config.max_answer_chars:
        return _too_long(prep, config)
    if gt is not None:
        at = parse_time(prep.answer)
        return None if at is None else _verdict(prep, at == gt, "fast")
    if g:
        eq = compare_readings(g, number_readings(prep.answer, **opts))  # several boxes: the last one counts
    else:
        ag = parse_group(prep.answer)
        eq = compare_groups(gg, ag) if ag is not None else None
        if eq is not True and prep.boxes:  # several boxes: also all of them as one list
            joined = parse_group(", ".join(prep.boxes))
            eq_all = compare_groups(gg, joined) if joined is not None else None
            if eq_all:
                return _verdict(prep, True, "fast", ", ".join(prep.boxes))
            eq = None if eq_all is None or eq is None else False
    return None if eq is None else _verdict(prep, eq, "fast")


def _too_long(prep: Prepared, config: VerifierConfig) -> VerifyResult:
    return _result(prep, "wrong", f"The answer has {len(prep.answer)} characters, more than max_answer_chars="
                                  f"{config.max_answer_chars}, so it was not compared.", "limit")


# ---------------------------------------------------------------- math-verify (heavy imports inside)

class _DropTimeoutDisabledWarning(logging.Filter):
    """math-verify warns once that its timeouts are off; they are, on purpose (see module doc)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Timeout is disabled" not in record.getMessage()


@functools.cache
def _math_verify():
    import math_verify
    from math_verify import parse, verify

    for name in ("math_verify.parser", "math_verify.grader"):
        logging.getLogger(name).addFilter(_DropTimeoutDisabledWarning())
    return math_verify, parse, verify


_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")
_DELIMITED = re.compile(r"(?<!\\)\$|\\\(|\\\[")


# a sentence's period inside the formula ("\\[\\begin{pmatrix} 2 \\\\ -1 \\end{pmatrix}.\\]"), misread by math-verify
_PERIOD_BEFORE_CLOSE = re.compile(r"\.(?=\s*(?:\\\]|\\\)|\$\$)|\$)")


def _for_math_verify(text: str) -> str:
    return _PERIOD_BEFORE_CLOSE.sub("", _ROMAN_CONSTANT.sub(r"\1", text))


@functools.cache
def _configs() -> tuple:
    """math-verify's extraction configs for a whole text: boxes first, then LaTeX, then plain expressions."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig

    return (LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig())


@functools.lru_cache(maxsize=4096)
def _parse(text: str) -> tuple:
    """math-verify's parse of one answer: as inline math when it is one formula, else by its extraction."""
    _, parse, _ = _math_verify()
    if ("\\boxed" in text or _DELIMITED.search(text)) and not (
            text.startswith("$") and text.endswith("$") and text.count("$") == 2):
        return tuple(parse(_for_math_verify(text), _configs(), parsing_timeout=None))
    return tuple(parse(f"${_UNESCAPED_DOLLAR.sub('', text)}$", parsing_timeout=None))


@functools.lru_cache(maxsize=1024)
def _extract(text: str) -> tuple[tuple, str | None]:
    """math-verify's own extraction from a completion: (parsed objects, the text it read)."""
    _, parse, _ = _math_verify()
    found = tuple(parse(_for_math_verify(text), _configs(), parsing_timeout=None))
    shown = next((x for x in found if isinstance(x, str)), None)
    return found, shown


def _is_math(obj) -> bool:
    return not isinstance(obj, str)


def _bits(expr, depth: int = 0) -> float:
    """Rough upper bound of the number of bits of ``expr``'s value (inf when astronomically big)."""
    import sympy

    if depth > 200:
        return 0.0
    if isinstance(expr, sympy.Integer):
        return float(int(expr).bit_length())
    if isinstance(expr, sympy.Rational):
        return float(max(int(expr.p).bit_length(), int(expr.q).bit_length()))
    if isinstance(expr, sympy.Float):
        mpf = expr._mpf_
        return float(abs(mpf[2] + mpf[3])) if mpf[1] else 0.0
    if isinstance(expr, sympy.Pow):
        base, exp = expr.args
        b = _bits(base, depth + 1)
        e = _magnitude(exp, depth + 1)
        return max(b, 1.0) * e if exp.is_number else max(b, e)
    if isinstance(expr, sympy.factorial):
        n = _magnitude(expr.args[0], depth + 1)
        return n * _log2(n)  # log2(n!) <= n log2 n
    if not getattr(expr, "args", ()):
        return 0.0
    total = 0.0
    for arg in expr.args:
        total += _bits(arg, depth + 1)
    return total


def _log2(x: float) -> float:
    return math.log2(x) if 1.0 < x < math.inf else (math.inf if x == math.inf else 1.0)


def _magnitude(expr, depth: int) -> float:
    """Rough upper bound of ``|expr|`` as a float (inf when it would overflow)."""
    bits = _bits(expr, depth)
    if bits < 64 and getattr(expr, "is_number", False):
        try:  # small parts: the value itself is cheap and far tighter (10^{(\sqrt{13}-5)/6} is small)
            return abs(complex(expr.evalf(15)))
        except (TypeError, ValueError, ArithmeticError):
            pass
    return 2.0 ** bits if bits < 1000 else float("inf")


def _heavy(objs: tuple) -> bool:
    for obj in objs:
        if _is_math(obj) and hasattr(obj, "args") and _bits(obj) > HEAVY_BITS:
            return True
    return False


def decide_slow(prep: Prepared, config: VerifierConfig) -> VerifyResult:
    """The verdict through math-verify. Call under a timer (:func:`item_deadline`)."""
    gold = _parse(prep.gold)
    if not any(_is_math(g) for g in gold):
        return _result(prep, "gold_unparseable",
                       f"The gold answer {_show(prep.gold)} could not be parsed by math-verify.", "math_verify")
    if prep.extraction.deferred:
        target, shown = _extract(prep.extraction.text)
        if not target:
            return _no_answer(prep, "no answer found (math-verify's extraction found no math in the LaTeX)")
        readings = [(target, shown)]
    elif prep.answer is None:
        return _no_answer(prep)
    elif len(prep.answer) > config.max_answer_chars:
        return _too_long(prep, config)
    else:
        readings = [(_parse(prep.answer), prep.answer)]
        if prep.boxes:  # several boxes: also all of them as one list, as math-verify reads them
            readings.append((_parse(", ".join(prep.boxes)), ", ".join(prep.boxes)))
    last = None
    for target, shown in readings:
        last = _compare(prep, config, gold, target, shown)
        if last.status == "ok":
            return last
    return last


def _compare(prep: Prepared, config: VerifierConfig, gold: tuple, target: tuple, shown: str | None) -> VerifyResult:
    if not any(_is_math(t) for t in target):
        return _result(prep, "wrong", f"The answer {_show(shown or '')} could not be read as math.", "math_verify",
                       shown)
    if config.guard_heavy and (_heavy(gold) or _heavy(target)):
        return _result(prep, "timeout", "The expressions are too large to evaluate (more than "
                                        f"{HEAVY_BITS:,} bits), so the check was skipped as a timeout.", "guard")
    if _surely_different(gold, target):
        return _verdict(prep, False, "math_verify", shown)
    _, _, mv_verify = _math_verify()
    equal = mv_verify(gold=list(gold), target=list(target), timeout_seconds=None,
                      allow_set_relation_comp=True)  # x \in [-2, 7] is -2 <= x <= 7 either way round
    return _verdict(prep, bool(equal), "math_verify", shown)


_PROBE_POINTS = ((0.6180339887, 1.4142135623, 2.7182818284), (-1.7320508075, 0.5772156649, 3.1415926535))


def _surely_different(gold: tuple, target: tuple) -> bool:
    """True when two plain expressions take different values, so math-verify's slow ``simplify`` would fail too. Only
    for scalar expressions without decimals, percentages, relations, sets or bare symbols (math-verify's special cases);
    values that agree or cannot be computed leave the decision to math-verify."""
    try:
        return _differ_at_points(gold, target)
    except Exception:  # noqa: BLE001 - a probe that cannot evaluate proves nothing
        return False


def _differ_at_points(gold: tuple, target: tuple) -> bool:
    import sympy
    from sympy.core.function import AppliedUndef

    gs = [g for g in gold if _is_math(g)]
    ts = [t for t in target if _is_math(t)]
    if len(gs) != 1 or len(ts) != 1:
        return False
    a, b = gs[0], ts[0]
    for e in (a, b):
        if (not isinstance(e, sympy.Expr) or isinstance(e, (sympy.Symbol, sympy.UnevaluatedExpr))
                or not e.is_commutative or e.has(sympy.UnevaluatedExpr) or e.atoms(sympy.Float)
                or e.atoms(AppliedUndef)):
            return False
    symbols = sorted(a.free_symbols | b.free_symbols, key=str)
    if len(symbols) > len(_PROBE_POINTS[0]):
        return False
    for point in _PROBE_POINTS[: 1 if not symbols else 2]:
        subs = {s: sympy.Float(v, 30) for s, v in zip(symbols, point)}
        va = complex(a.evalf(30, subs=subs))
        vb = complex(b.evalf(30, subs=subs))
        if not all(map(math.isfinite, (va.real, va.imag, vb.real, vb.imag))):
            return False
        if abs(va - vb) <= 1e-9 * max(1.0, abs(va), abs(vb)):
            return False
    return True


class _Timer:
    armed = False


def _on_alarm(signum, frame):
    if _Timer.armed:
        raise VerifierTimeout()


@contextmanager
def item_deadline(seconds: float):
    """Raise :class:`VerifierTimeout` in the block after ``seconds`` (main thread only)."""
    old_handler = signal.signal(signal.SIGALRM, _on_alarm)
    old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    start = time.monotonic()
    _Timer.armed = True
    try:
        yield
    finally:
        try:
            _Timer.armed = False
            signal.setitimer(signal.ITIMER_REAL, 0)
        finally:
            signal.signal(signal.SIGALRM, old_handler)
            if old_delay > 0:  # someone else's timer was running: give back what is left of it
                left = max(old_delay - (time.monotonic() - start), 1e-3)
                signal.setitimer(signal.ITIMER_REAL, left, old_interval)


def timeout_result(prep: Prepared | None, config: VerifierConfig) -> VerifyResult:
    reason = f"Checking took longer than timeout_s={config.timeout_s:g} s."
    if prep is not None:
        return _result(prep, "timeout", reason, "math_verify")
    return VerifyResult(correct=False, status="timeout", extracted=None, method=None, reason=reason, n_boxed=0)


def error_result(prep: Prepared | None, err: BaseException) -> VerifyResult:
    msg = " ".join(str(err).split())[:120]
    reason = f"The verifier failed: {type(err).__name__}{': ' + msg if msg else ''}."
    if prep is not None:
        return _result(prep, "error", reason, None)
    return VerifyResult(correct=False, status="error", extracted=None, method=None, reason=reason, n_boxed=0)


def check_item(gold: str, completion: str, config: VerifierConfig, task: str | None = None) -> VerifyResult:
    """The whole verification in this process, under the item timer. Main thread only."""
    prep = None
    try:
        with item_deadline(config.timeout_s):
            prep = prepare(gold, completion, config, task)
            fast = decide_fast(prep, config)
        if fast is not None:
            return fast
        _math_verify()  # importing sympy (seconds on a loaded machine) is not the item's time
        with item_deadline(config.timeout_s):
            return decide_slow(prep, config)
    except VerifierTimeout:
        return timeout_result(prep, config)
    except Exception as err:  # noqa: BLE001 - a failure inside math-verify/sympy (RecursionError, MemoryError
        return error_result(prep, err)  # from the worker's address-space limit, ...) is a status, not a crash


def verify(*, gold: str, completion: str, config: VerifierConfig = VerifierConfig(),
           task: str | None = None) -> VerifyResult:
    """Verify one completion in this process (off the main thread, math-verify work goes to the shared pool). For
    untrusted model output prefer a :class:`~octo.verifiers.pool.VerifierPool`: only a worker can be killed when C code
    hangs."""
    if not isinstance(gold, str) or not isinstance(completion, str):
        raise TypeError("verify() expects gold and completion as str")
    if threading.current_thread() is threading.main_thread():
        return check_item(gold, completion, config, task)
    from octo.verifiers.pool import shared_pool

    return shared_pool(config).verify_batch(golds=[gold], completions=[completion],
                                            tasks=None if task is None else [task])[0]
