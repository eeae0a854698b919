"""Find the final answer in a completion (stdlib only, linear time).

Methods, tried in the configured order (``VerifierConfig.extract``); the first that finds
something wins:

- ``boxed``: the last top-level ``\\boxed{...}`` or ``\\fbox{...}`` whose braces close
  (nested braces balanced, ``\\{``/``\\}`` ignored). ``\\boxed{\\boxed{5}}`` gives ``5``.
  A box that never closes (a completion cut at max_len) is no answer, and no other
  method looks at the text from there on.
- ``hash``: GSM8K's ``#### 42`` (the last one; the rest of its line).
- ``answer_is``: "the (final) answer is X" / "Answer: X" (the last one; X runs to the end
  of its sentence or line).
- ``last_number``: the last number on the last non-empty line.

One scan over the brace tokens finds every box, so a megabyte completion or 10,000 nested
braces cost milliseconds, not a recursion error.
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
_NUMBER = re.compile(
    r"(?:(?<![\w)\]}])[-−+])?(?:\\\$|\$)?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:/\d+)?(?:\\%|%)?")


@dataclass(frozen=True)
class Extraction:
    """What :func:`extract_answer` found: the answer text (or None), the method, one sentence."""

    answer: str | None
    method: str | None
    reason: str


@dataclass(frozen=True)
class Boxes:
    """Every closed top-level box of a text, in order, as ``(start, content_start, content_end, end)``.

    ``text[start:end]`` is the whole box; ``text[content_start:content_end]`` its content
    (inside any directly nested boxes).
    """

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
    inner = _extract_boxed(found)
    if inner is not None:
        return inner or None
    return _cut_sentence(found) or None


def _extract_last_number(text: str) -> str | None:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return None
    found = None
    for m in _NUMBER.finditer(lines[-1]):
        found = m.group()
    if found is None:
        return None
    return found.strip()


_METHODS = {
    "boxed": _extract_boxed,
    "hash": _extract_hash,
    "answer_is": _extract_answer_is,
    "last_number": _extract_last_number,
}


def extract_answer(completion: str,
                   methods: tuple[str, ...] | list[str] = ("boxed", "hash", "answer_is", "last_number"),
                   ) -> Extraction:
    """The final answer of ``completion`` by the first of ``methods`` that finds one.

    Text from a box that never closes onwards is ignored by every method: a completion cut
    inside ``\\boxed{12`` might have gone on to ``\\boxed{123}``.
    """
    for name in methods:
        if name not in _METHODS:
            raise ValueError(f"unknown extraction method {name!r}; known: {', '.join(_METHODS)}")
    cut = None
    if "\\boxed" in completion or "\\fbox" in completion:
        cut = find_boxes(completion).unclosed_at
    text = completion if cut is None else completion[:cut]
    for name in methods:
        answer = _METHODS[name](text)
        if answer:
            return Extraction(answer=answer, method=name, reason=f"answer found by '{name}'")
    tried = ", ".join(methods)
    return Extraction(answer=None, method=None, reason=f"no answer found (tried {tried})")


def gold_answer(gold: str) -> str:
    """The answer part of a gold string: its last box, or its GSM8K '####' part, or all of it."""
    if "\\boxed" in gold or "\\fbox" in gold:
        boxed = _extract_boxed(gold)
        if boxed:
            return boxed
    if "####" in gold:
        hashed = _extract_hash(gold)
        if hashed:
            return hashed
    return gold.strip()
