"""The toy world: a small, seeded world that mirrors the real mid-training world.

Usage::

    from octo.toyworld import generate_world
    info = generate_world(WorldConfig(seed=0), "runs/x/world")   # writes *.jsonl + world.json

Everything is generated deterministically from ``WorldConfig.seed``; each source has its own
random stream (seed, source name), so adding a source does not change the others.

Sources (stand-ins for OctoThinker's datasets, seed 004, Table 1/5):

=============== ============================= ======== =========================================
toy source      stands in for                 template content
=============== ============================= ======== =========================================
web             DCLM-Baseline                 raw      everyday sentences, no arithmetic
mathweb         MegaMath-Web-Pro              raw      arithmetic facts and narrated examples
if              Instruction following (TULU)  IF       verifiable instructions (repeat, count...)
qa-megamath     MegaMath-QA (short CoT)       QA       one terse equation line
qa-omi2         OpenMathInstruct-2 (short)    QA       one equation per step
qa-numina       NuminaMath-1.5 (short)        QA       "Step k: ..." lines
long-openr1     OpenR1-Math (long CoT)        QA       verbose steps, checks, slips and repairs
long-am         AM-DeepSeek-Distilled (long)  QA       restating, checking backwards, re-reading
=============== ============================= ======== =========================================

Problems are arithmetic word problems ("Ann has 12 apples. Ann buys 5 more apples. ...
How many apples does Ann have now?") whose difficulty level is the number of operations.
Every number stays in [0, max_number]. Answers are correct by construction. The held-out set
(``heldout.jsonl``) and the probe prompts (``prompts.jsonl``) never share a question with
each other or with any training document.

The probe prompt ``User:{question}\\nAssistant:<think>\\n`` is the QA template up to the
chain of thought, so a model that read QA documents knows how to continue it.
"""

from __future__ import annotations

import json
import random
import zlib
from dataclasses import dataclass
from pathlib import Path

from octo.config import WorldConfig
from octo.runio import write_json_atomic, write_text_atomic

NAMES = ["Ann", "Bob", "Cara", "Dan", "Eve", "Finn", "Gus", "Hana", "Ivy", "Jon"]
OBJECTS = ["apples", "books", "coins", "cards", "pens", "shells", "stamps", "eggs", "cups", "rocks"]
ADD_VERBS = ["buys {n} more {obj}", "finds {n} more {obj}", "gets {n} more {obj}"]
SUB_VERBS = ["gives away {n} {obj}", "loses {n} {obj}", "sells {n} {obj}"]
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
    """An arithmetic word problem: start value, then (op, amount) steps."""

    name: str
    obj: str
    start: int
    steps: tuple[tuple[str, int, str], ...]  # (op "+"/"-", amount, verb phrase)

    @property
    def level(self) -> int:
        return len(self.steps)

    @property
    def values(self) -> list[int]:
        vals = [self.start]
        for op, n, _ in self.steps:
            vals.append(vals[-1] + n if op == "+" else vals[-1] - n)
        return vals

    @property
    def answer(self) -> int:
        return self.values[-1]

    @property
    def question(self) -> str:
        parts = [f"{self.name} has {self.start} {self.obj}."]
        for i, (_, _, phrase) in enumerate(self.steps):
            parts.append(("Then " if i else "") + f"{self.name} {phrase}.")
        parts.append(f"How many {self.obj} does {self.name} have now?")
        return " ".join(parts)

    def equations(self) -> list[str]:
        vals = self.values
        return [f"{vals[i]}{op}{n}={vals[i + 1]}" for i, (op, n, _) in enumerate(self.steps)]


def _rng(seed: int, name: str) -> random.Random:
    return random.Random((seed << 32) ^ zlib.crc32(name.encode()))


def make_problem(rng: random.Random, level: int, max_number: int) -> Problem:
    name, obj = rng.choice(NAMES), rng.choice(OBJECTS)
    value = rng.randint(1, max_number - 1)
    start = value
    steps = []
    for _ in range(level):
        can_add, can_sub = value < max_number, value > 1
        op = rng.choice(["+", "-"]) if can_add and can_sub else ("+" if can_add else "-")
        if op == "+":
            n = rng.randint(1, max_number - value)
            value += n
        else:
            n = rng.randint(1, value - 1)
            value -= n
        verb = rng.choice(ADD_VERBS if op == "+" else SUB_VERBS)
        steps.append((op, n, verb.format(n=n, obj=obj)))
    return Problem(name, obj, start, tuple(steps))


# --- chains of thought, one style per source --------------------------------------------

def cot_megamath(p: Problem, rng: random.Random) -> tuple[str, str]:
    """MegaMath-QA's short solutions come in two forms: the whole expression on one line, or one
    equation per operation. A small model cannot do several operations in one token, so the
    one-line form is the error-prone one: RL gains by choosing the stepwise form (docs/toyworld.md)."""
    if p.level > 1 and rng.random() < 0.5:
        expr = str(p.start) + "".join(f"{op}{n}" for op, n, _ in p.steps)
        return f"{expr}={p.answer}\n", f"\\boxed{{{p.answer}}}"
    return "".join(e + "\n" for e in p.equations()), f"\\boxed{{{p.answer}}}"


def cot_omi2(p: Problem) -> tuple[str, str]:
    return "".join(e + "\n" for e in p.equations()), f"The answer is \\boxed{{{p.answer}}}."


def cot_numina(p: Problem) -> tuple[str, str]:
    lines = [f"Step {i + 1}: {e}.\n" for i, e in enumerate(p.equations())]
    return "".join(lines), f"So {p.name} has \\boxed{{{p.answer}}} {p.obj}."


def cot_openr1(p: Problem, rng: random.Random) -> tuple[str, str]:
    vals = p.values
    out = [f"Okay, let me think about this. {p.name} starts with {p.start} {p.obj}.\n"]
    for i, (op, n, phrase) in enumerate(p.steps):
        a, b = vals[i], vals[i + 1]
        out.append(f"{p.name} {phrase}, so {a}{op}{n}={b}.\n" if rng.random() > 0.25 else
                   f"{p.name} {phrase}, so {a}{op}{n}={b + rng.choice([-1, 1])}. Wait, that is not right. "
                   f"Let me redo it: {a}{op}{n}={b}.\n")
        inv = "-" if op == "+" else "+"
        out.append(f"Let me check: {b}{inv}{n}={a}. Yes.\n")
    out.append(f"Let me re-read the question to be sure. It asks how many {p.obj} {p.name} has now.\n")
    out.append(f"So the answer is {p.answer}.\n")
    return "".join(out), f"\\boxed{{{p.answer}}}"


def cot_am(p: Problem, rng: random.Random) -> tuple[str, str]:
    vals = p.values
    out = [f"We need to find how many {p.obj} {p.name} has at the end.\n",
           f"At the start, {p.name} has {p.start} {p.obj}.\n"]
    for i, (op, n, phrase) in enumerate(p.steps):
        word = "adds" if op == "+" else "takes away"
        out.append(f"Next, {p.name} {phrase}. This {word} {n}. {vals[i]}{op}{n}={vals[i + 1]}.\n")
    back = str(p.answer) + "".join(f"{'-' if op == '+' else '+'}{n}" for op, n, _ in reversed(p.steps))
    out.append(f"Let me verify by working backwards: {back}={p.start}. This matches the start.\n")
    if rng.random() < 0.5:
        out.append("Hmm, let me also recount each step once more.\n")
        out.extend(e + "\n" for e in p.equations())
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


def mathweb_doc(rng: random.Random, max_number: int) -> str:
    """Arithmetic facts and narrated worked examples: dense in equations, no QA template."""
    out = []
    for _ in range(rng.randint(3, 6)):
        kind = rng.random()
        a = rng.randint(0, max_number)
        if kind < 0.3:
            b = rng.randint(0, max_number - a)
            out.append(f"{a} plus {b} is {a + b}, so {a}+{b}={a + b}.")
        elif kind < 0.6:
            b = rng.randint(0, a)
            out.append(f"{a} minus {b} is {a - b}, so {a}-{b}={a - b}.")
        elif kind < 0.8:
            b = rng.randint(0, max_number - a)
            c = rng.randint(0, a + b)
            out.append(f"{a}+{b}={a + b} and {a + b}-{c}={a + b - c}.")
        else:
            p = make_problem(rng, rng.randint(1, 2), max_number)
            vals = p.values
            story = [f"{p.name} had {p.start} {p.obj}."]
            for i, (op, n, phrase) in enumerate(p.steps):
                story.append(f"When {p.name} {phrase}, the count became {vals[i]}{op}{n}={vals[i + 1]}.")
            out.append("Example: " + " ".join(story))
    return " ".join(out)


def if_doc(rng: random.Random, max_number: int) -> dict:
    kind = rng.randrange(6)
    if kind == 0:
        w, k = rng.choice(WORDS), rng.randint(2, 5)
        return {"query": f"Write the word {w} {k} times.", "content": " ".join([w] * k)}
    if kind == 1:
        a = rng.randint(0, max_number - 6)
        b = a + rng.randint(2, 5)
        return {"query": f"Count from {a} to {b}.", "content": " ".join(str(i) for i in range(a, b + 1))}
    if kind == 2:
        n = rng.randint(0, max_number)
        return {"query": f"Put the number {n} in a box.", "content": f"\\boxed{{{n}}}"}
    if kind == 3:
        s = web_doc(rng).split(". ")[0].rstrip(".") + "."
        return {"query": f"Repeat after me: {s}", "content": s}
    if kind == 4:
        name = rng.choice(NAMES)
        return {"query": f"Write {name} in capital letters.", "content": name.upper()}
    a = rng.randint(0, max_number // 2)
    b = rng.randint(0, max_number - a)
    return {"query": f"What is {a}+{b}? Reply with just the number.", "content": str(a + b)}


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def _problem_row(p: Problem) -> dict:
    return {"question": p.question, "answer": str(p.answer), "level": p.level}


def generate_world(cfg: WorldConfig, out_dir: str | Path) -> dict:
    """Write every toy source, ``prompts.jsonl`` and ``heldout.jsonl`` into ``out_dir``.

    Returns the world summary (also written as ``world.json``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    levels = range(1, cfg.max_ops + 1)

    # Held-out first; its questions (and the prompts') are excluded from everything else.
    rng = _rng(cfg.seed, "heldout")
    heldout, reserved = [], set()
    for level in levels:
        made = 0
        while made < cfg.heldout_per_level:
            p = make_problem(rng, level, cfg.max_number)
            if p.question not in reserved:
                reserved.add(p.question)
                heldout.append(p)
                made += 1
    rng = _rng(cfg.seed, "prompts")
    prompts = []
    while len(prompts) < cfg.prompts:
        p = make_problem(rng, rng.choice(list(levels)), cfg.max_number)
        if p.question not in reserved:
            reserved.add(p.question)
            prompts.append(p)

    counts = {}
    for name, template in TRAIN_SOURCES.items():
        rng = _rng(cfg.seed, name)
        rows = []
        while len(rows) < cfg.docs_per_source:
            if name == "web":
                rows.append({"text": web_doc(rng)})
            elif name == "mathweb":
                rows.append({"text": mathweb_doc(rng, cfg.max_number)})
            elif name == "if":
                rows.append(if_doc(rng, cfg.max_number))
            else:
                p = make_problem(rng, rng.choice(list(levels)), cfg.max_number)
                if p.question in reserved:
                    continue
                if name == "qa-megamath":
                    cot, content = cot_megamath(p, rng)
                elif name == "qa-omi2":
                    cot, content = cot_omi2(p)
                elif name == "qa-numina":
                    cot, content = cot_numina(p)
                elif name == "long-openr1":
                    cot, content = cot_openr1(p, rng)
                else:
                    cot, content = cot_am(p, rng)
                rows.append({"query": p.question, "cot": cot, "content": content,
                             "answer": str(p.answer), "level": p.level})
        _write_jsonl(out / f"{name}.jsonl", rows)
        counts[name] = len(rows)

    _write_jsonl(out / "heldout.jsonl", [_problem_row(p) for p in heldout])
    _write_jsonl(out / "prompts.jsonl", [_problem_row(p) for p in prompts])
    info = {"config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
            "sources": {n: {"template": t, "docs": counts[n]} for n, t in TRAIN_SOURCES.items()},
            "heldout": len(heldout), "prompts": len(prompts), "prompt_template": PROMPT_TEMPLATE}
    write_json_atomic(out / "world.json", info)
    return info
