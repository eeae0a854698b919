"""The toy world (v2): deterministic, every solution form correct by construction, held-out disjoint."""

from __future__ import annotations

import json
import random
import re

import pytest

from octo.config import WorldConfig
from octo.errors import ConfigError
from octo.toyworld import (ANSWER_FORMS, PLACES_OF_DIGITS, PROCEDURE_ERRORS, TRAIN_SOURCES, answer_form, column_lines,
                           column_steps, generate_world, make_problem, procedure_error)

LINE = re.compile(r"^(\d+)\+(\d+) c([01]) (\d)\+(\d)\+([01])=(\d+)(?: Wait, that is not right\. "
                  r"(\d)\+(\d)\+([01])=(\d+))? a(\d+)$")
PLACE = re.compile(r"^([a-z-]+) (\d)\+(\d)(\+1)?=(\d+)$")
SHORT = {"qa-megamath", "qa-omi2", "qa-numina"}
LONG = {"long-openr1", "long-am"}


def _read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    cfg = WorldConfig(seed=3, docs_per_source=300, prompts=100, heldout_per_level=30, min_digits=1, max_digits=6,
                      mathweb_columns=0.3, long_slip=0.3)
    out = tmp_path_factory.mktemp("world")
    generate_world(cfg, out)
    return cfg, out


def check_column_lines(lines: list[str], a: int, b: int) -> int:
    """Parse a column procedure line by line and check each against the arithmetic; returns the answer it
    writes. Every line must add the last digits of the remaining addends with the carry of the line before,
    drop exactly those digits from the next line, and put the sum's last digit (the whole sum on the last
    line) in front of the answer digits so far; a repaired slip must first write a wrong sum."""
    rest_a, rest_b, carry, acc = str(a), str(b), 0, ""
    assert len(lines) == len(rest_a), lines
    for i, line in enumerate(lines):
        m = LINE.match(line)
        assert m, line
        ra, rb, c_in, x, y, c2, s = m.group(1, 2, 3, 4, 5, 6, 7)
        assert (ra, rb) == (rest_a, rest_b), line
        assert int(c_in) == int(c2) == carry, line
        assert (int(x), int(y)) == (int(ra[-1]), int(rb[-1])), line
        true_sum = int(x) + int(y) + carry
        if m.group(8) is not None:  # a slip: wrong, then the right sum of the same digits
            assert int(s) != true_sum and m.group(8, 9, 10) == (x, y, c_in), line
            s = m.group(11)
        assert int(s) == true_sum, line
        last = i == len(lines) - 1
        acc = (str(true_sum) if last else str(true_sum % 10)) + acc
        assert m.group(12) == acc, line
        rest_a, rest_b, carry = rest_a[:-1], rest_b[:-1], true_sum // 10
    assert rest_a == rest_b == ""
    return int(acc)


def test_deterministic_and_seed_sensitive(world, tmp_path):
    cfg, out = world
    again = tmp_path / "again"
    generate_world(cfg, again)
    for name in [*TRAIN_SOURCES, "heldout", "prompts"]:
        assert (out / f"{name}.jsonl").read_bytes() == (again / f"{name}.jsonl").read_bytes(), name
    other = tmp_path / "other"
    generate_world(WorldConfig(seed=4, docs_per_source=150, prompts=100, heldout_per_level=30), other)
    assert (out / "heldout.jsonl").read_bytes() != (other / "heldout.jsonl").read_bytes()


def test_problems_correct_by_construction():
    rng = random.Random(0)
    for _ in range(3000):
        level = rng.randint(1, 7)
        p = make_problem(rng, level)
        assert len(str(p.a)) == len(str(p.b)) == p.level == level
        numbers = [int(x) for x in re.findall(r"\d+", p.question)]
        assert numbers == [p.a, p.b]
        assert p.answer == p.a + p.b and p.equation == f"{p.a}+{p.b}={p.a + p.b}"


def test_column_procedure_is_right_for_every_line():
    rng = random.Random(1)
    cases = [(9999, 9999), (10000, 10000), (5, 5), (0, 0), (50, 50), (99999, 1)]
    cases += [(make_problem(rng, lv).a, make_problem(rng, lv).b) for lv in range(1, 8) for _ in range(300)]
    for a, b in cases:
        if len(str(a)) != len(str(b)):
            with pytest.raises(ValueError):
                column_steps(a, b)
            continue
        assert check_column_lines(column_lines(a, b), a, b) == a + b


def test_check_column_lines_catches_a_wrong_line():
    lines = column_lines(4729, 1835)
    for bad in (lines[1].replace("a64", "a65"), lines[1].replace("c1", "c0"), lines[1].replace("=6", "=7"),
                lines[1].replace("472+183", "47+183")):
        with pytest.raises(AssertionError):
            check_column_lines([lines[0], bad, *lines[2:]], 4729, 1835)


def check_place_lines(lines: list[str], a: int, b: int) -> int:
    """Parse the few-steps form (one sum per place) and check each line; returns the sum the lines give."""
    da, db, carry, digits = str(a)[::-1], str(b)[::-1], 0, []
    assert len(lines) == len(da), lines
    for k, line in enumerate(lines):
        m = PLACE.match(line)
        assert m, line
        place, x, y, c, s = m.groups()
        assert place == PLACES_OF_DIGITS[k] and (x, y) == (da[k], db[k]), line
        assert (c is not None) == (carry == 1), line
        assert int(s) == int(x) + int(y) + carry, line
        digits.append(s if k == len(lines) - 1 else str(int(s) % 10))
        carry = int(s) // 10
    return int("".join(reversed(digits)))


def test_every_solution_form_is_right_line_by_line(world):
    """Each source's solution, every line parsed and checked: the sum at once (one equation), the few-steps
    form (one sum per place), the long forms (column procedure with slips repaired, re-checks of real columns,
    the answer); every box holds the answer. Only the long forms write the column procedure."""
    cfg, out = world
    slips, forms = 0, {"direct": 0, "places": 0}
    for name in SHORT | LONG:
        for r in _read(out / f"{name}.jsonl"):
            a, b = (int(x) for x in re.findall(r"\d+", r["query"]))
            assert r["answer"] == str(a + b) and r["level"] == len(str(a))
            assert re.findall(r"\\boxed\{(\d+)\}", r["content"]) == [r["answer"]]
            lines = r["cot"].rstrip("\n").split("\n")
            if name == "qa-numina" or (name == "qa-megamath" and not PLACE.match(lines[0])):
                assert len(lines) == 1 and lines[0].rstrip(".").endswith(f"{a}+{b}={a + b}"), r["cot"]
                forms["direct"] += name == "qa-megamath"
                continue
            if name == "qa-megamath":
                assert check_place_lines(lines, a, b) == a + b
                forms["places"] += 1
                continue
            if name == "qa-omi2":
                assert check_place_lines(lines[:-1], a, b) == a + b and lines[-1] == f"So the sum is {a + b}."
                continue
            assert name in LONG
            cols = [ln for ln in lines if LINE.match(ln)]
            assert check_column_lines(cols, a, b) == a + b
            slips += sum("Wait" in ln for ln in cols)
            steps = {(st["x"], st["y"], st["carry"], st["sum"]) for st in column_steps(a, b)}
            others = [ln for ln in lines if ln not in cols]
            for ln in others:
                for x, y, c, s in re.findall(r"re-check: (\d)\+(\d)\+([01])=(\d+)", ln):
                    assert (int(x), int(y), int(c), int(s)) in steps, ln
            assert others[-1].endswith((f" {a + b}.", f" {a + b} {r['query'].split()[3].rstrip('.')}."))
    assert slips > 0
    assert 0.4 < forms["direct"] / (forms["direct"] + forms["places"]) < 0.6


def test_procedure_error_passes_every_training_answer(world):
    """Every Long answer of the world (slips repaired, re-checks) is a right procedure; no short answer is one."""
    _, out = world
    seen = set()
    for name in SHORT | LONG:
        for r in _read(out / f"{name}.jsonl"):
            a, b = (int(x) for x in re.findall(r"\d+", r["query"]))
            verdict = procedure_error(a, b, f"{r['cot']}</think>\n{r['content']}")
            assert verdict == ("ok" if name in LONG else "no_procedure"), (name, r)
            seen.add(verdict)
    assert seen == {"ok", "no_procedure"}


def test_answer_form_names_each_sources_solution_form(world):
    """answer_form tells the world's solution forms apart on every training answer, and names what a policy writes
    when it is cut or wrong."""
    _, out = world
    seen = {name: {answer_form(f"{r['cot']}</think>\n{r['content']}") for r in _read(out / f"{name}.jsonl")}
            for name in SHORT | LONG}
    assert seen == {"long-openr1": {"column"}, "long-am": {"column"}, "qa-omi2": {"places"},
                    "qa-numina": {"direct"}, "qa-megamath": {"direct", "places"}}
    cut = "Okay, let me add 47 and 18.\n47+18 c0 7+8+0=15 a5\n4+"
    assert answer_form(cut) == "column"
    assert answer_form("ten-thousands 3+5+1=9\nSo the sum is 90549.") == "places"
    assert answer_form("Step 1: 47+18=66.\nSo \\boxed{66}") == "direct"   # wrong, still the direct form
    assert [answer_form(t) for t in ("", "The answer is \\boxed{65}.", "tens and units")] == ["other"] * 3
    assert set(ANSWER_FORMS) == {"column", "places", "direct", "other"}


def _answer(a, b, lines, box):
    return "Okay, let me add them.\n" + "".join(ln + "\n" for ln in lines) + f"So.\n</think>\n\\boxed{{{box}}}"


@pytest.mark.parametrize("verdict, edit", [
    ("copy", lambda L: ["4792+1835" + L[0][9:], *L[1:]]),             # the question's digits out of order
    ("rewrite", lambda L: [L[0], "427+183" + L[1][7:], *L[2:]]),       # a later line re-writes them wrong
    ("carry", lambda L: [L[0], L[1].replace(" c1 2+3+1=", " c0 2+3+1="), *L[2:]]),
    ("digits", lambda L: [L[0], L[1].replace("2+3+1=6", "2+4+1=6"), *L[2:]]),
    ("sum", lambda L: [L[0], L[1].replace("=6 a", "=7 a"), *L[2:]]),
    ("sum", lambda L: [L[0], L[1].replace("=6 a", "=7 Wait, that is not right. 2+3+1=5 a"), *L[2:]]),
    ("answer_digits", lambda L: [L[0], L[1].replace("a64", "a46"), *L[2:]]),
    ("lines", lambda L: L[:-1]),
    ("lines", lambda L: [*L, L[-1]]),
])
def test_procedure_error_names_the_first_wrong_field(verdict, edit):
    lines = column_lines(4729, 1835)
    assert lines[1] == "472+183 c1 2+3+1=6 a64"
    assert procedure_error(4729, 1835, _answer(4729, 1835, lines, 6564)) == "ok"
    assert procedure_error(4729, 1835, _answer(4729, 1835, edit(lines), 6564)) == verdict
    assert verdict in PROCEDURE_ERRORS


def test_procedure_error_repaired_slip_final_box_and_short_answers():
    lines = column_lines(4729, 1835)
    slipped = [lines[0], lines[1].replace("=6 a", "=5 Wait, that is not right. 2+3+1=6 a"), *lines[2:]]
    assert procedure_error(4729, 1835, _answer(4729, 1835, slipped, 6564)) == "ok"
    assert procedure_error(4729, 1835, _answer(4729, 1835, lines, 6565)) == "final"
    assert procedure_error(4729, 1835, "\n".join(lines)) == "final"          # cut before its box
    assert procedure_error(4729, 1835, "4729+1835=6564\n</think>\n\\boxed{6564}") == "no_procedure"


def test_check_place_lines_catches_a_wrong_line():
    from octo.toyworld import place_lines

    lines = place_lines(4729, 1835)
    assert check_place_lines(lines, 4729, 1835) == 6564
    for bad in (lines[1].replace("+1=", "="), lines[1].replace("=6", "=7"), lines[1].replace("tens", "units")):
        with pytest.raises(AssertionError):
            check_place_lines([lines[0], bad, *lines[2:]], 4729, 1835)


def test_mathweb_arithmetic_is_right(world):
    cfg, out = world
    columns = 0
    for r in _read(out / "mathweb.jsonl"):
        text = r["text"]
        if text.startswith("Example: adding"):
            a, b = (int(x) for x in re.findall(r"\d+", text.split("\n")[0]))
            assert check_column_lines(text.split("\n")[1:-1], a, b) == a + b
            assert text.endswith(f"So {a}+{b}={a + b}.")
            columns += 1
            continue
        for eq in re.findall(r"\d+(?:\+\d+)+=\d+", text):
            lhs, rhs = eq.split("=")
            assert sum(int(x) for x in lhs.split("+")) == int(rhs), eq
        for x, y in re.findall(r"(\d+) plus (\d+) is", text):
            assert f"{x}+{y}" in text
    assert 0.2 < columns / cfg.docs_per_source < 0.4


def test_long_solutions_are_longer(world):
    _, out = world
    long_len = sum(len(r["cot"]) for r in _read(out / "long-am.jsonl"))
    short_len = sum(len(r["cot"]) for r in _read(out / "qa-omi2.jsonl"))
    assert long_len > 3 * short_len


def test_heldout_levels_and_disjointness(world):
    cfg, out = world
    held = _read(out / "heldout.jsonl")
    prompts = _read(out / "prompts.jsonl")
    levels = range(cfg.min_digits, cfg.max_digits + 1)
    assert [sum(r["level"] == lv for r in held) for lv in levels] == [30] * len(levels)
    held_q = {r["question"] for r in held}
    assert len(held_q) == len(held)
    assert not held_q & {r["question"] for r in prompts}
    for name, template in TRAIN_SOURCES.items():
        if template == "QA":
            assert not held_q & {r["query"] for r in _read(out / f"{name}.jsonl")}
    for r in held + prompts:
        a, b = (int(x) for x in re.findall(r"\d+", r["question"]))
        assert r["level"] == len(str(a)) == len(str(b)) and r["answer"] == str(a + b)


def test_digit_range_is_checked():
    from octo.schema import from_dict

    with pytest.raises(ConfigError, match="min_digits"):
        from_dict(WorldConfig, {"min_digits": 4, "max_digits": 3})


def test_levels_beyond_are_posed_only_by_the_rl_prompts_and_the_heldout_set(tmp_path):
    from octo.schema import from_dict

    base = dict(seed=5, docs_per_source=60, prompts=60, heldout_per_level=10, min_digits=1, max_digits=3)
    generate_world(WorldConfig(**base), tmp_path / "plain")
    info = generate_world(WorldConfig(**base, rl_levels_beyond=2), tmp_path / "beyond")
    assert info["levels"] == {"mid-training": [1, 2, 3], "beyond": [4, 5]}
    for name in TRAIN_SOURCES:  # no training document changes, none poses a level beyond
        plain, beyond = (tmp_path / d / f"{name}.jsonl" for d in ("plain", "beyond"))
        assert plain.read_bytes() == beyond.read_bytes()
    held, prompts = _read(tmp_path / "beyond" / "heldout.jsonl"), _read(tmp_path / "beyond" / "prompts.jsonl")
    # the problems of the world without them come first, unchanged
    assert held[:30] == _read(tmp_path / "plain" / "heldout.jsonl")
    assert prompts[:60] == _read(tmp_path / "plain" / "prompts.jsonl")
    assert [r["level"] for r in held[30:]] == [4] * 10 + [5] * 10
    assert len(prompts) == 60 + 40 and {r["level"] for r in prompts[60:]} == {4, 5}  # as common as the others
    questions = [r["question"] for r in held + prompts]
    assert len(set(questions)) == len(questions)
    for r in held[30:] + prompts[60:]:
        a, b = (int(x) for x in re.findall(r"\d+", r["question"]))
        assert r["level"] == len(str(a)) == len(str(b)) and r["answer"] == str(a + b)
    with pytest.raises(ConfigError, match="rl_levels_beyond"):
        from_dict(WorldConfig, {"rl_levels_beyond": 4})


def test_tokenizer_text_leaves_out_the_levels_beyond(tmp_path):
    from octo.config import load_recipe
    from octo.data.checks import toy_corpus
    from octo.toyworld import make_problem

    recipe = load_recipe("recipes/toy/quickstart.yaml", [f"run_dir={tmp_path}", "world.max_digits=3",
                                                         "world.rl_levels_beyond=1", "world.docs_per_source=20"])
    generate_world(recipe.world, tmp_path / "world")
    rng = random.Random(0)
    rows = [{"question": make_problem(rng, lv).question, "level": lv} for lv in (2, 3, 4)]
    questions = [t for t in toy_corpus(recipe, tmp_path, lambda spec: rows) if t in {r["question"] for r in rows}]
    assert questions == [rows[0]["question"], rows[1]["question"]] * 2  # prompts and held-out: levels 2 and 3 only


def test_math_web_can_show_the_levels_beyond(tmp_path):
    from octo.schema import from_dict

    base = dict(seed=5, docs_per_source=300, prompts=60, heldout_per_level=10, min_digits=1, max_digits=2,
                mathweb_columns=1.0, rl_levels_beyond=1)
    generate_world(WorldConfig(**base), tmp_path / "rl-only")
    generate_world(WorldConfig(**base, mathweb_levels_beyond=True), tmp_path / "web")

    def worked(out):  # the addends' digit counts of math web's worked column additions
        text = (out / "mathweb.jsonl").read_text()
        return {len(a) for a, _ in re.findall(r"adding (\d+) and (\d+) by columns", text)}

    assert worked(tmp_path / "rl-only") == {1, 2} and worked(tmp_path / "web") == {1, 2, 3}
    for name, template in TRAIN_SOURCES.items():  # the QA sources stay as they were
        if template == "QA":
            rl_only, web = (tmp_path / d / f"{name}.jsonl" for d in ("rl-only", "web"))
            assert rl_only.read_bytes() == web.read_bytes()
    with pytest.raises(ConfigError, match="mathweb_levels_beyond"):
        from_dict(WorldConfig, {"mathweb_levels_beyond": True})
