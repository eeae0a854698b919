"""Find the final answer in a completion (stdlib only, linear time).

Methods (``boxed``, ``hash``, ``answer_is``, ``whole``, ``latex``, ``last_number``) are tried in the
configured order (``VerifierConfig.extract``); the first that finds something wins (docs/verifiers.md,
"Extraction"). A box that never closes (a completion cut at max_len) is no answer, and no method looks
past it. ``latex`` only marks the answer as deferred: math-verify's extraction runs in a worker, under
the item timer, because its regexes and parser are not bounded enough to run in the caller. One scan
over the brace tokens finds every box, so a megabyte completion or 10,000 nested braces cost
milliseconds, not a recursion error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_BOX_TOKEN = re.compile(r"\\(?:boxed|fbox)\s*\{|\\[{}]|[{}]")
_HASH = re.compile(r"####[ \t]*([^\n]*)")
_ANSWER_IS = re.compile(
    r"(?:\banswer\b\s*(?:is\b\s*[:=]?|[:=]))[ \t]*(?:\*\*)?[ \t]*([^\n]*)", re.IGNORECASE)
_SENTENCE_END = re.compile(r"\.(?=\s|$)")  # a period before a space or the end (not 3.5)
_WS = re.compile(r"\s*")
# a number as math-verify's ExprExtractionConfig reads one: thousands groups (",", " "), a decimal
# comma ("2,74"), a leading-dot decimal (".4"), a fraction, a percentage, a time of day
_NUMBER = re.compile(
    r"(?<![A-Za-z])(?:(?<![\w)\]}])[-−+])?(?:\\\$|\$)?(?<![A-Za-z])"
    r"(?:\d+ \d+/\d+(?![\d/])|\d{1,2}:\d{2}(?![\d:])|(?:[1-9]\d{0,2}(?:(?:,|(?<=\d) (?=\d{3}(?!\d)))\d{3})+(?!\d)|\d+(?:,\d+(?![\d,]))?)"
    r"(?:\.\d+)?|\.\d+)(?:/\d+)?(?:\\%|%)?")
# LaTeX that math-verify should read: a command (not a box: boxes are octo's), \( or \[, or $...$ whose
# ends touch its content ("costs $12 and $15" is currency, not math)
_LATEX = re.compile(r"\\(?!boxed\b|fbox\b)[A-Za-z]{2,}|\\[(\[]|\$\$|\$(?=\S)[^$\n]*?\S\$|\$\S\$")
_DOLLAR = re.compile(r"(?<!\\)\$")
_FINAL_ANSWER = re.compile(r"final answer is", re.IGNORECASE)
_PROSE = re.compile(r"[A-Za-z]{2,}[,;]?\s+[A-Za-z]{2,}")
_MATH_SPANS = re.compile(r"\$[^$]*\$|\\\(.*?\\\)|\\text\s*\{[^{}]*\}")


@dataclass(frozen=True)
class Extraction:
    """What :func:`extract_answer` found; ``boxes``: every top-level box's content when there are several."""

    answer: str | None
    method: str | None
    reason: str
    text: str | None = None
    boxes: tuple[str, ...] = ()

    @property
    def deferred(self) -> bool:
        return self.method == "latex"


@dataclass(frozen=True)
class Boxes:
    """Every closed top-level box of a text, in order, as ``(start, content_start, content_end, end)``."""

    spans: tuple[tuple[int, int, int, int], ...]
    unclosed_at: int | None  # start of the first box that never closes (a cut completion), if any

    @property
    def count(self) -> int:
        return len(self.spans)


def find_boxes(text: str) -> Boxes:
    """Top-level ``\\boxed{}``/``\\fbox{}`` spans of ``text`` in one pass over its braces."""
    stack: list[int] = []  # for each open brace: -1 (plain brace) or the start of its box
    content: dict[int, int] = {}  # box start -> index after its opening brace
    box_depth = 0
    top: list[tuple[int, int, int]] = []
    inner: dict[int, tuple[int, int]] = {}  # box start -> (content_start, close) for nested boxes
    for m in _BOX_TOKEN.finditer(text):
        tok = m.group()
        if tok[0] == "\\" and len(tok) == 2:  # \{ or \}: literal braces, not grouping
            continue
        if tok == "{":
            stack.append(-1)
        elif tok == "}":
            if not stack:
                continue
            start = stack.pop()
            if start >= 0:
                box_depth -= 1
                cstart = content.pop(start)
                if box_depth == 0:
                    top.append((start, cstart, m.start()))
                else:
                    inner[start] = (cstart, m.start())
        else:  # \boxed{ or \fbox{
            stack.append(m.start())
            content[m.start()] = m.end()
            box_depth += 1
    spans = []
    for start, cstart, close in top:
        end = close + 1
        # unwrap \boxed{\boxed{x}}: the content is exactly one nested box
        while True:
            nested = inner.get(_WS.match(text, cstart).end())
            if nested is None or text[nested[1] + 1:close].strip():
                break
            cstart, close = nested
        spans.append((start, cstart, close, end))
    unclosed_at = next((start for start in stack if start >= 0), None)
    return Boxes(spans=tuple(spans), unclosed_at=unclosed_at)


def count_boxed(text: str) -> int:
    """Number of closed top-level boxed answers in ``text``."""
    return find_boxes(text).count


def _extract_boxed(text: str) -> str | None:
    boxes = find_boxes(text)
    if not boxes.spans:
        return None
    _, cstart, close, _ = boxes.spans[-1]
    return unbox(text[cstart:close]).strip()


def unbox(text: str) -> str:
    """``text`` with every ``\\boxed{x}``/``\\fbox{x}`` inside it replaced by ``x``."""
    for _ in range(8):
        if "\\boxed" not in text and "\\fbox" not in text:
            break
        spans = find_boxes(text).spans
        if not spans:
            break
        parts, prev = [], 0
        for start, cstart, close, end in spans:
            parts += [text[prev:start], text[cstart:close]]
            prev = end
        parts.append(text[prev:])
        text = "".join(parts)
    return text


def _cut_sentence(text: str) -> str:
    text = text.strip()
    m = _SENTENCE_END.search(text)
    if m:
        text = text[:m.start()]
    return text.strip().rstrip(".,;:!").strip().strip("*").strip()


def _extract_hash(text: str) -> str | None:
    found = None
    for m in _HASH.finditer(text):
        found = m.group(1)
    if found is None:
        return None
    found = found.strip().rstrip(".").strip()
    return found or None


def _extract_answer_is(text: str) -> str | None:
    found = None
    for m in _ANSWER_IS.finditer(text):
        found = m.group(1)
    if found is None:
        return None
    while (m := _ANSWER_IS.search(found)) is not None:  # "Final Answer: The final answer is $x$."
        found = m.group(1)
    inner = _extract_boxed(found)
    if inner is not None:
        return inner or None
    answer = _cut_sentence(found)
    if answer and has_latex(text) and len(_DOLLAR.findall(answer)) > 2:
        return None  # "$12$ and $13$": math-verify joins such formulas into one answer
    if answer and _PROSE.search(_MATH_SPANS.sub(" ", answer)):
        # a sentence, not an answer: math-verify reads LaTeX text; in plain text its last number is the answer
        return None if has_latex(text) else _last_number_in(answer)
    return answer or None


def has_latex(text: str) -> bool:
    """True when ``text`` holds LaTeX math (boxes aside); then ``last_number`` does not apply."""
    return _LATEX.search(text) is not None


def _extract_last_number(text: str) -> str | None:
    if has_latex(text):
        return None
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return _last_number_in(lines[-1]) if lines else None


def _last_number_in(line: str) -> str | None:
    found = None
    for m in _NUMBER.finditer(line):
        found = m.group()
    return found.strip() if found is not None else None


# a tuple/interval or a relation "x < 4" in plain text: math-verify's ExprExtractionConfig reads only
# numbers and operator expressions that start with a digit, so it cannot find these
_PLAIN_GROUP = re.compile(r"[(\[][^()\[\]\n]{0,40},[^()\[\]\n]{0,40}[)\]]|\b[a-z]\s*(?:<=|>=|!=|<|>|=)\s*-?\d[\d.,/]*")


def last_math(text: str) -> str | None:
    """The last tuple, interval or relation on the last non-empty line of plain text, else None."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines or has_latex(text):
        return None
    found = None
    for m in _PLAIN_GROUP.finditer(lines[-1]):
        found = m.group()
    return found.rstrip(".,") if found else None


_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}")


def _extract_whole(text: str) -> str | None:
    """A completion that is one short line of math and no words (``(x-2)(x+2)``, ``\\frac12``) is its answer."""
    s = text.strip()
    if not s or len(s) > 200 or "\n" in s or "\\boxed" in s or "\\fbox" in s or not any(c.isalnum() for c in s):
        return None
    return None if _WORD.search(_MATH_SPANS.sub(" ", s)) else s


def _defer_latex(text: str) -> str | None:
    return text if has_latex(text) else None


_METHODS = {
    "boxed": _extract_boxed,
    "hash": _extract_hash,
    "answer_is": _extract_answer_is,
    "whole": _extract_whole,
    "latex": _defer_latex,
    "last_number": _extract_last_number,
}
DEFAULT_METHODS = ("boxed", "hash", "answer_is", "whole", "latex", "last_number")


def extract_answer(completion: str, methods: tuple[str, ...] | list[str] = DEFAULT_METHODS) -> Extraction:
    """The final answer of ``completion`` by the first of ``methods`` that finds one (see the module doc)."""
    for name in methods:
        if name not in _METHODS:
            raise ValueError(f"unknown extraction method {name!r}; known: {', '.join(_METHODS)}")
    cut = None
    if "\\boxed" in completion or "\\fbox" in completion:
        cut = find_boxes(completion).unclosed_at
    text = completion if cut is None else completion[:cut]
    for name in methods:
        answer = _METHODS[name](text)
        if not answer:
            continue
        if name == "latex":
            return Extraction(answer=None, method=name, reason="answer left to math-verify's LaTeX extraction",
                              text=text)
        if name == "boxed" and "answer_is" in methods:
            end = find_boxes(text).spans[-1][3]
            if _FINAL_ANSWER.search(text, end) and (later := _extract_answer_is(text[end:])):
                # "... \boxed{255} ... Final Answer: The final answer is $10,455$." (math-verify reads it so too)
                return Extraction(answer=later, method="answer_is", reason="answer found by 'answer_is' after the "
                                                                         "last box")
        boxes = box_contents(text) if name == "boxed" else ()
        return Extraction(answer=answer, method=name, reason=f"answer found by '{name}'", text=text,
                          boxes=boxes if len(boxes) > 1 else ())
    tried = ", ".join(methods)
    return Extraction(answer=None, method=None, reason=f"no answer found (tried {tried})")


def box_contents(text: str) -> tuple[str, ...]:
    """The content of every closed top-level box of ``text``, in order (nested boxes unwrapped)."""
    return tuple(unbox(text[c:e]).strip() for _, c, e, _ in find_boxes(text).spans)


def gold_answer(gold: str) -> str:
    """The answer part of a gold string: its box, or its GSM8K '####' part, or all of it. A gold with several
    boxes stays whole for math-verify (boxes joined by "and" or commas are one list)."""
    if "\\boxed" in gold or "\\fbox" in gold:
        boxes = [b for b in box_contents(gold) if b]
        if len(boxes) == 1:
            return boxes[0]
        if boxes:
            return gold.strip()
    if "####" in gold:
        hashed = _extract_hash(gold)
        if hashed:
            return hashed
    return gold.strip()
