"""The toy world: a small, seeded world that mirrors the real mid-training world (docs/toyworld.md).

    from octo.toyworld import generate_world
    info = generate_world(WorldConfig(seed=0), "runs/x/world")   # writes *.jsonl + world.json

Each source has its own random stream (seed, source name), so adding a source does not change the
others. The sources stand in for OctoThinker's datasets (seed 004, Table 1/5): web (DCLM), mathweb
(MegaMath-Web-Pro), if (TULU IF), qa-megamath, qa-omi2, qa-numina (short CoT) and long-openr1, long-am
(long CoT). Problems (world v2) are addition word problems whose level is the number of digits; the
answer is written at once, one sum per place, or (Long sources only) by Lee et al.'s (2023) detailed
scratchpad, which keeps each column's two digits local::

    4729+1835 c0 9+5+0=14 a4
    472+183 c1 2+3+1=6 a64

Answers are correct by construction (tests/engine/test_toyworld.py parses every line); the held-out
set, the probe prompts and the training documents share no question. The probe prompt
``User:{question}\\nAssistant:<think>\\n`` is the QA template up to the chain of thought.
``world.rl_levels_beyond`` adds levels above ``max_digits`` that only the RL prompts and the held-out
set pose (no QA document and no tokenizer question has them; math web's items cover them with
``mathweb_levels_beyond``).
"""

from __future__ import annotations

import random
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

from octo.config import WorldConfig
from octo.runio import write_json_atomic, write_jsonl

NAMES = ["Ann", "Bob", "Cara", "Dan", "Eve", "Finn", "Gus", "Hana", "Ivy", "Jon"]
OBJECTS = ["apples", "books", "coins", "cards", "pens", "shells", "stamps", "eggs", "cups", "rocks"]
ADD_VERBS = ["buys {n} more {obj}", "finds {n} more {obj}", "gets {n} more {obj}"]
PLACES = ["park", "market", "school", "river", "garden", "library", "station", "beach", "farm", "shop"]
ADJS = ["quiet", "busy", "green", "cold", "warm", "bright", "old", "small", "large", "calm"]
WEATHER = ["sunny", "rainy", "windy", "cloudy", "snowy"]
WORDS = ["blue", "tree", "happy", "stone", "bird", "river", "light", "music", "bread", "cloud"]

TRAIN_SOURCES = {
    "web": "raw", "mathweb": "raw", "if": "IF",
    "qa-megamath": "QA", "qa-omi2": "QA", "qa-numina": "QA",
    "long-openr1": "QA", "long-am": "QA",
}
PROMPT_TEMPLATE = "User:{question}\nAssistant:<think>\n"


@dataclass(frozen=True)
class Problem:
    """An addition word problem: ``a + b``, both with ``level`` digits."""

    name: str
    obj: str
    a: int
    b: int
    verb: str

    @property
    def level(self) -> int:
        return len(str(self.a))

    @property
    def answer(self) -> int:
        return self.a + self.b

    @property
    def question(self) -> str:
        phrase = self.verb.format(n=self.b, obj=self.obj)
        return (f"{self.name} has {self.a} {self.obj}. {self.name} {phrase}. "
                f"How many {self.obj} does {self.name} have now?")

    @property
    def equation(self) -> str:
        return f"{self.a}+{self.b}={self.answer}"


def _rng(seed: int, name: str) -> random.Random:
    return random.Random((seed << 32) ^ zlib.crc32(name.encode()))


def _number(rng: random.Random, digits: int) -> int:
    return rng.randint(10 ** (digits - 1) if digits > 1 else 0, 10 ** digits - 1)


def make_problem(rng: random.Random, level: int) -> Problem:
    return Problem(rng.choice(NAMES), rng.choice(OBJECTS), _number(rng, level), _number(rng, level),
                   rng.choice(ADD_VERBS))


def column_steps(a: int, b: int) -> list[dict]:
    """The column procedure for ``a + b`` (equal digit counts), least significant column first. Each step: the digits
    still to add (``rest_a``, ``rest_b``: their last digits are this column's), the carry in, the column sum and the
    answer digits so far (the last column writes its whole sum)."""
    da, db = str(a), str(b)
    if len(da) != len(db):
        raise ValueError(f"addends must have equal digit counts: {a}, {b}")
    n, carry, acc, steps = len(da), 0, "", []
    for k in range(n):
        ra, rb = da[:n - k], db[:n - k]
        x, y = int(ra[-1]), int(rb[-1])
        s = x + y + carry
        acc = (str(s) if k == n - 1 else str(s % 10)) + acc
        steps.append({"rest_a": ra, "rest_b": rb, "carry": carry, "x": x, "y": y, "sum": s, "acc": acc})
        carry = s // 10
    return steps


def column_line(st: dict, wrong: int | None = None) -> str:
    """One scratchpad line; with ``wrong``, the column sum is first written as ``wrong`` and repaired."""
    head = f"{st['rest_a']}+{st['rest_b']} c{st['carry']} {st['x']}+{st['y']}+{st['carry']}="
    if wrong is None:
        return f"{head}{st['sum']} a{st['acc']}"
    return (f"{head}{wrong} Wait, that is not right. {st['x']}+{st['y']}+{st['carry']}={st['sum']} "
            f"a{st['acc']}")


def column_lines(a: int, b: int) -> list[str]:
    return [column_line(st) for st in column_steps(a, b)]


# A scratchpad line as a model writes it: the digits still to add, the carry, the column sum (a slip and its repair
# allowed) and the answer digits so far. Loose on purpose (any digit counts) so that wrong lines still parse.
_LINE = re.compile(r"^(\d+)\+(\d+) c(\d+) (\d+)\+(\d+)\+(\d+)=(\d+)"
                   r"(?: Wait, that is not right\. \d+\+\d+\+\d+=(\d+))? a(\d+)$")
_BOXED = re.compile(r"\\boxed\{(\d+)\}")
# procedure_error's verdicts, in the order a column-procedure answer is written
PROCEDURE_ERRORS = ("no_procedure", "copy", "rewrite", "carry", "digits", "sum", "answer_digits", "lines",
                    "final", "ok")


def procedure_error(a: int, b: int, text: str) -> str:
    """Where a model's column-procedure answer to ``a + b`` first goes wrong (one of ``PROCEDURE_ERRORS``).

    ``copy``: the first line does not restate ``a`` and ``b`` (the numbers copied from the question);
    ``rewrite``: a later line's remaining digits are not the line before's minus their last digit; ``carry``,
    ``digits`` (the column's two digits), ``sum`` (after a repaired slip, the repair counts), ``answer_digits``:
    that field of the first line that differs from the right procedure; ``lines``: too few or too many lines;
    ``final``: the procedure is right but the last boxed number is not the sum (or none was written);
    ``no_procedure``: no scratchpad line at all (a short answer)."""
    lines = [m for m in (_LINE.match(ln.strip()) for ln in text.split("\n")) if m]
    if not lines:
        return "no_procedure"
    steps = column_steps(a, b)
    for k, (m, st) in enumerate(zip(lines, steps)):
        ra, rb, carry, x, y, c2, total, repaired, acc = m.groups()
        if (ra, rb) != (st["rest_a"], st["rest_b"]):
            return "copy" if k == 0 else "rewrite"
        if int(carry) != st["carry"] or int(c2) != st["carry"]:
            return "carry"
        if (int(x), int(y)) != (st["x"], st["y"]):
            return "digits"
        if int(repaired if repaired is not None else total) != st["sum"]:
            return "sum"
        if acc != st["acc"]:
            return "answer_digits"
    if len(lines) != len(steps):
        return "lines"
    boxed = _BOXED.findall(text)
    return "ok" if boxed and int(boxed[-1]) == a + b else "final"


def _slip(rng: random.Random, s: int) -> int:
    return s + 1 if s == 0 or rng.random() < 0.5 else s - 1


# --- chains of thought, one style per source --------------------------------------------

def cot_megamath(p: Problem, rng: random.Random) -> tuple[str, str]:
    """MegaMath-QA's two short forms, half each: the sum at once, or one sum per place (docs/toyworld.md)."""
    if rng.random() < 0.5:
        return f"{p.equation}\n", f"\\boxed{{{p.answer}}}"
    return "".join(ln + "\n" for ln in place_lines(p.a, p.b)), f"\\boxed{{{p.answer}}}"


PLACES_OF_DIGITS = ["units", "tens", "hundreds", "thousands", "ten-thousands", "hundred-thousands",
                    "millions", "ten-millions", "hundred-millions"]


def place_lines(a: int, b: int) -> list[str]:
    """One sum per place (``tens 2+3+1=6``), without the re-written digits that make the column procedure local."""
    out = []
    for k, st in enumerate(column_steps(a, b)):
        carry = f"+{st['carry']}" if st["carry"] else ""
        out.append(f"{PLACES_OF_DIGITS[k]} {st['x']}+{st['y']}{carry}={st['sum']}")
    return out


# answer_form's names: the column procedure (the Long sources), one sum per place (OpenMathInstruct-2 and half of
# MegaMath-QA), the sum written at once (NuminaMath and the other half), anything else (no recognisable work)
ANSWER_FORMS = ("column", "places", "direct", "other")
_COLUMN_START = re.compile(r"^\d+\+\d+ c\d+ ", re.M)
_PLACE_START = re.compile(r"^(?:" + "|".join(PLACES_OF_DIGITS) + r") \d+\+\d+", re.M)
_DIRECT = re.compile(r"\d+\+\d+=\d+")


def answer_form(text: str) -> str:
    """Which of the toy world's solution forms an answer uses (one of ``ANSWER_FORMS``), right or wrong: ``column``
    if any line starts like a column-procedure line, else ``places`` if any line starts with a place name and a
    sum (``tens 2+3+1=6``), else ``direct`` if it writes a sum ``a+b=c``, else ``other``. It names the form a
    policy chose, for following which form RL selects (docs/toyworld.md); procedure_error judges the procedure."""
    if _COLUMN_START.search(text):
        return "column"
    if _PLACE_START.search(text):
        return "places"
    if _DIRECT.search(text):
        return "direct"
    return "other"


def cot_omi2(p: Problem) -> tuple[str, str]:
    """A few steps: one sum per place, then the sum."""
    lines = "".join(ln + "\n" for ln in place_lines(p.a, p.b))
    return f"{lines}So the sum is {p.answer}.\n", f"The answer is \\boxed{{{p.answer}}}."


def cot_numina(p: Problem) -> tuple[str, str]:
    return f"Step 1: {p.equation}.\n", f"So {p.name} has \\boxed{{{p.answer}}} {p.obj}."


def cot_openr1(p: Problem, rng: random.Random, slip: float) -> tuple[str, str]:
    """OpenR1-style: the column procedure with slips repaired on the spot ("Wait, that is not right")."""
    out = [f"Okay, let me add {p.a} and {p.b} column by column, from the right.\n"]
    for st in column_steps(p.a, p.b):
        wrong = _slip(rng, st["sum"]) if rng.random() < slip else None
        out.append(column_line(st, wrong) + "\n")
    out.append(f"So the answer is {p.answer}.\n")
    return "".join(out), f"\\boxed{{{p.answer}}}"


def cot_am(p: Problem, rng: random.Random) -> tuple[str, str]:
    """AM-Distilled-style: restate, the column procedure, then re-check two columns before answering."""
    steps = column_steps(p.a, p.b)
    out = [f"We need {p.a}+{p.b}. Add the columns from the right, keeping the carry.\n"]
    out.extend(column_line(st) + "\n" for st in steps)
    for st in rng.sample(steps, min(2, len(steps))):
        out.append(f"Let me re-check: {st['x']}+{st['y']}+{st['carry']}={st['sum']}. Yes.\n")
    out.append(f"Therefore, {p.name} has {p.answer} {p.obj}.\n")
    return "".join(out), f"The final answer is \\boxed{{{p.answer}}}."


# --- other sources ------------------------------------------------------------------------

def web_doc(rng: random.Random) -> str:
    a, b = rng.sample(NAMES, 2)
    place, place2 = rng.sample(PLACES, 2)
    sents = [
        f"{a} walked to the {place} on a {rng.choice(WEATHER)} morning.",
        f"The {place} was {rng.choice(ADJS)} and {rng.choice(ADJS)}.",
        f"{b} met {a} near the {place2}.",
        f"They talked about {rng.choice(WORDS)} and {rng.choice(WORDS)}.",
        f"Later {a} went home and read a book about the {rng.choice(PLACES)}.",
        f"{b} said the {rng.choice(PLACES)} is {rng.choice(ADJS)} in the evening.",
    ]
    k = rng.randint(3, len(sents))
    return " ".join(sents[:k])


def mathweb_doc(rng: random.Random, levels: list[int], columns: float) -> str:
    """Digit facts, sums and (a ``columns`` share) worked column additions, as a math web page shows them."""
    if rng.random() < columns:
        p = make_problem(rng, rng.choice(levels))
        lines = "\n".join(column_lines(p.a, p.b))
        return f"Example: adding {p.a} and {p.b} by columns.\n{lines}\nSo {p.equation}."
    out = []
    for _ in range(rng.randint(3, 6)):
        kind = rng.random()
        if kind < 0.35:
            x, y, c = rng.randint(0, 9), rng.randint(0, 9), rng.randint(0, 1)
            out.append(f"{x} plus {y} plus {c} is {x + y + c}, so {x}+{y}+{c}={x + y + c}.")
        elif kind < 0.75:
            p = make_problem(rng, rng.choice(levels))
            out.append(f"{p.a} plus {p.b} is {p.answer}, so {p.equation}.")
        else:
            p = make_problem(rng, rng.choice(levels))
            out.append(f"Example: {p.name} had {p.a} {p.obj}. When {p.name} "
                       f"{p.verb.format(n=p.b, obj=p.obj)}, the count became {p.equation}.")
    return " ".join(out)


def if_doc(rng: random.Random) -> dict:
    kind = rng.randrange(6)
    if kind == 0:
        w, k = rng.choice(WORDS), rng.randint(2, 5)
        return {"query": f"Write the word {w} {k} times.", "content": " ".join([w] * k)}
    if kind == 1:
        a = rng.randint(0, 90)
        b = a + rng.randint(2, 5)
        return {"query": f"Count from {a} to {b}.", "content": " ".join(str(i) for i in range(a, b + 1))}
    if kind == 2:
        n = rng.randint(0, 9999)
        return {"query": f"Put the number {n} in a box.", "content": f"\\boxed{{{n}}}"}
    if kind == 3:
        s = web_doc(rng).split(". ")[0].rstrip(".") + "."
        return {"query": f"Repeat after me: {s}", "content": s}
    if kind == 4:
        name = rng.choice(NAMES)
        return {"query": f"Write {name} in capital letters.", "content": name.upper()}
    a, b = rng.randint(0, 9), rng.randint(0, 9)
    return {"query": f"What is {a}+{b}? Reply with just the number.", "content": str(a + b)}


def _problem_row(p: Problem) -> dict:
    return {"question": p.question, "answer": str(p.answer), "level": p.level}


def _unique_problems(rng: random.Random, levels: list[int], reserved: set[str]) -> list[Problem]:
    """One problem per entry of ``levels``, each question new to ``reserved`` (which takes it)."""
    out = []
    for level in levels:
        p = make_problem(rng, level)
        while p.question in reserved:
            p = make_problem(rng, level)
        reserved.add(p.question)
        out.append(p)
    return out


def generate_world(cfg: WorldConfig, out_dir: str | Path) -> dict:
    """Write every toy source, ``prompts.jsonl``, ``heldout.jsonl`` and ``world.json`` (returned) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    levels = list(range(cfg.min_digits, cfg.max_digits + 1))
    beyond = list(range(cfg.max_digits + 1, cfg.max_digits + 1 + cfg.rl_levels_beyond))

    # Held-out first; its questions (and the prompts') are excluded from everything else.
    reserved = set()
    heldout = _unique_problems(_rng(cfg.seed, "heldout"), [lv for lv in levels for _ in range(cfg.heldout_per_level)],
                               reserved)
    rng = _rng(cfg.seed, "prompts")
    prompts = []
    while len(prompts) < cfg.prompts:
        p = make_problem(rng, rng.choice(levels))
        if p.question not in reserved:
            reserved.add(p.question)
            prompts.append(p)

    mathweb_levels = levels + beyond if cfg.mathweb_levels_beyond else levels
    counts = {}
    for name, template in TRAIN_SOURCES.items():
        rng = _rng(cfg.seed, name)
        rows = []
        while len(rows) < cfg.docs_per_source:
            if name == "web":
                rows.append({"text": web_doc(rng)})
            elif name == "mathweb":
                rows.append({"text": mathweb_doc(rng, mathweb_levels, cfg.mathweb_columns)})
            elif name == "if":
                rows.append(if_doc(rng))
            else:
                p = make_problem(rng, rng.choice(levels))
                if p.question in reserved:
                    continue
                if name == "qa-megamath":
                    cot, content = cot_megamath(p, rng)
                elif name == "qa-omi2":
                    cot, content = cot_omi2(p)
                elif name == "qa-numina":
                    cot, content = cot_numina(p)
                elif name == "long-openr1":
                    cot, content = cot_openr1(p, rng, cfg.long_slip)
                else:
                    cot, content = cot_am(p, rng)
                rows.append({"query": p.question, "cot": cot, "content": content,
                             "answer": str(p.answer), "level": p.level})
        write_jsonl(out / f"{name}.jsonl", rows)
        counts[name] = len(rows)

    # Levels beyond max_digits: drawn last, from streams of their own, so the documents (math web's, unless
    # mathweb_levels_beyond), the tokenizer and the other problems are those of the same world without them (digit
    # counts keep them apart from every other question).
    heldout += _unique_problems(_rng(cfg.seed, "heldout-beyond"), [lv for lv in beyond
                                                                   for _ in range(cfg.heldout_per_level)], reserved)
    if beyond:
        rng = _rng(cfg.seed, "prompts-beyond")
        n = round(cfg.prompts * len(beyond) / len(levels))  # each level as common as a mid-training level
        prompts += _unique_problems(rng, [rng.choice(beyond) for _ in range(n)], reserved)
    write_jsonl(out / "heldout.jsonl", [_problem_row(p) for p in heldout])
    write_jsonl(out / "prompts.jsonl", [_problem_row(p) for p in prompts])
    info = {"config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
            "sources": {n: {"template": t, "docs": counts[n]} for n, t in TRAIN_SOURCES.items()},
            "levels": {"mid-training": levels, "beyond": beyond},
            "heldout": len(heldout), "prompts": len(prompts), "prompt_template": PROMPT_TEMPLATE}
    write_json_atomic(out / "world.json", info)
    return info
