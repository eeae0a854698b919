"""Answer extraction: methods, order, boxes (nested, several, cut), big inputs."""

from __future__ import annotations

import time

import pytest

from octo.verifiers import count_boxed, extract_answer
from octo.verifiers.extract import find_boxes, gold_answer, unbox


@pytest.mark.parametrize("text, answer, method", [
    ("so \\boxed{42}.", "42", "boxed"),
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}", "boxed"),
    ("\\boxed{x^{2^{3}}}", "x^{2^{3}}", "boxed"),
    ("\\fbox{7}", "7", "boxed"),
    ("\\boxed {7}", "7", "boxed"),
    ("\\boxed{\\boxed{5}}", "5", "boxed"),
    ("\\boxed{ \\boxed{ \\boxed{5} } }", "5", "boxed"),
    ("\\boxed{\\frac{\\boxed{1}}{2}}", "\\frac{1}{2}", "boxed"),
    ("\\boxed{\\{1,2\\}}", "\\{1,2\\}", "boxed"),
    ("\\boxed{1} then \\boxed{2}", "2", "boxed"),
    ("\\boxed{12} and then \\boxed{13", "12", "boxed"),
    ("Weng earns 10.\n#### 10", "10", "hash"),
    ("#### 1,234 dollars\n", "1,234 dollars", "hash"),
    ("#### 5\nmore text\n#### 6", "6", "hash"),
    ("The answer is 72.", "72", "answer_is"),
    ("The final answer is $\\frac{1}{2}$.", "$\\frac{1}{2}$", "answer_is"),
    ("the answer is 3.5 apples. Next we", "3.5 apples", "answer_is"),
    ("Answer: 18", "18", "answer_is"),
    ("**Answer:** 72", "72", "answer_is"),
    ("The answer is **42**.", "42", "answer_is"),
    ("The answer is \\boxed{9} indeed", "9", "boxed"),
    ("So Mark has 35 marbles left.", "35", "last_number"),
    ("x\nThe total is 1,200 dollars.", "1,200", "last_number"),
    ("It is -7 degrees.", "-7", "last_number"),
    ("It is 10-3 degrees", "3", "last_number"),
    ("So it is 3/4 of the cake", "3/4", "last_number"),
    ("Discount: 20%", "20%", "last_number"),
])
def test_extracts(text, answer, method):
    ext = extract_answer(text)
    assert (ext.answer, ext.method) == (answer, method)


@pytest.mark.parametrize("text", [
    "", "   ", "no numbers here", "\\boxed{}", "####", "The answer is", "35 apples\nno number on this line",
    "We have \\boxed{12", "\\boxed{12 and more\nsome text",
])
def test_no_answer(text):
    ext = extract_answer(text)
    assert ext.answer is None and ext.method is None
    assert ext.reason.startswith("no answer found")


def test_order_is_configurable():
    text = "The answer is 6.\n#### 7\n\\boxed{8}"
    assert extract_answer(text).answer == "8"
    assert extract_answer(text, ["hash", "boxed"]).answer == "7"
    assert extract_answer(text, ["answer_is"]).answer == "6"
    assert extract_answer(text, ["last_number"]).answer == "8"
    assert extract_answer("#### 7\nno number", ["last_number", "hash"]).answer == "7"
    with pytest.raises(ValueError, match="unknown extraction method"):
        extract_answer(text, ["boxed", "magic"])


def test_cut_box_hides_the_rest_from_every_method():
    # a completion cut inside a box: '\boxed{12' might have become '\boxed{123}'
    assert extract_answer("So 3 + 4 = 7, \\boxed{12").answer == "7"
    assert extract_answer("\\boxed{5} and \\boxed{6").answer == "5"


@pytest.mark.parametrize("text, n", [
    ("", 0), ("\\boxed{1}", 1), ("\\boxed{1}\\boxed{2}", 2), ("\\boxed{\\boxed{1}}", 1),
    ("\\boxed{1} \\fbox{2} \\boxed{3}", 3), ("\\boxed{1", 0), ("\\boxed{1} \\boxed{2", 1),
    ("}}}} \\boxed{5} {{{{", 1), ("\\boxed{\\}5}", 1),
])
def test_count_boxed(text, n):
    assert count_boxed(text) == n


def test_escaped_braces_do_not_close_a_box():
    assert extract_answer("\\boxed{\\}5}").answer == "\\}5"
    assert extract_answer("\\boxed{\\{1\\}}").answer == "\\{1\\}"


def test_gold_answer():
    assert gold_answer("Weng earns 0.2 per minute.\n#### 10") == "10"
    assert gold_answer("The area is $\\boxed{\\frac{\\sqrt3}{2}}$.") == "\\frac{\\sqrt3}{2}"
    assert gold_answer("  \\frac{1}{2} ") == "\\frac{1}{2}"
    assert gold_answer("") == ""


def test_unbox():
    assert unbox("\\frac{\\boxed{1}}{\\fbox{2}}") == "\\frac{1}{2}"
    assert unbox("no boxes") == "no boxes"


def test_deep_nesting_and_megabyte_inputs_are_linear():
    deep = "\\boxed{" * 10_000 + "5" + "}" * 10_000
    braces = "{" * 10_000 + "x" + "}" * 10_000
    big = ("word " * 200_000) + "\\boxed{3}"  # 1 MB
    t0 = time.perf_counter()
    assert extract_answer(deep).answer == "5"
    assert count_boxed(deep) == 1
    assert extract_answer(braces).answer is None
    assert extract_answer(big).answer == "3"
    assert find_boxes("{" * 10_000).spans == ()
    assert extract_answer("{" * 500_000 + "\\boxed{1" * 1000).answer is None
    assert time.perf_counter() - t0 < 5.0


@pytest.mark.parametrize("text", [
    "Each share is $\\frac{1}{3}$", "So the probability is \\(\\frac13\\).", "Thus $x \\in [-2, 5]$.",
    "The product is $\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}$.", "We get \\[ x \\le 2 \\]",
    "Final Answer: The volume of $V$ is 120. I hope it is correct.",
])
def test_latex_text_is_left_to_math_verify(text):
    ext = extract_answer(text)
    assert (ext.answer, ext.method, ext.deferred, ext.text) == (None, "latex", True, text)
    assert extract_answer(text, ["boxed", "last_number"]).answer is None  # last_number: plain text only


@pytest.mark.parametrize("text, answer", [
    ("It costs $12 and $15 in total", "$15"),  # currency, not math
    ("So the ratio is .4", ".4"), ("The total is 1 000 dollars.", "1 000"), ("Le prix: 2,74 euros.", "2,74"),
    ("It arrives at 20:34.", "20:34"), ("She needs 1 1/2 cups.", "1 1/2"), ("It takes 10weeks.", "10"),
    ("The roots are 1,234 and 5", "5"), ("They sold 1,234", "1,234"),
])
def test_last_number_forms(text, answer):
    ext = extract_answer(text)
    assert (ext.answer, ext.method) == (answer, "last_number")


def test_a_digit_inside_a_word_is_no_number():
    assert extract_answer("AZYUK2A").answer is None


def test_answer_is_skips_prose_and_nested_anchors():
    text = "Final Answer: Jane started growing Sphere 3 hours ago. I hope it is correct."
    assert (extract_answer(text).answer, extract_answer(text).method) == ("3", "answer_is")
    assert extract_answer("Final Answer: The final answer is $14{,}916$. I hope it is correct.").answer == "$14{,}916$"
    assert extract_answer("Answer: $12$ and $13$ are both fine").deferred  # several formulas: math-verify


def test_final_answer_after_the_last_box_wins():
    text = "so the interest is \\boxed{255}. In total $10,455. Final Answer: The final answer is $10,455$. I hope"
    ext = extract_answer(text)
    assert (ext.answer, ext.method) == ("$10,455$", "answer_is")
    assert extract_answer("\\boxed{255}. Then the answer is 7.").answer == "255"  # only 'final answer is'


def test_several_boxes_are_kept():
    ext = extract_answer("\\boxed{1}, \\boxed{2} and \\boxed{\\boxed{3}}")
    assert (ext.answer, ext.boxes) == ("3", ("1", "2", "3"))
    assert extract_answer("\\boxed{1}").boxes == ()


def test_gold_with_several_boxes_stays_whole():
    assert gold_answer("\\boxed{1} and \\boxed{2}") == "\\boxed{1} and \\boxed{2}"
    assert gold_answer("so \\boxed{7}.") == "7"


def test_last_math_reads_tuples_intervals_relations_of_plain_text():
    from octo.verifiers.extract import last_math

    assert last_math("The midpoint is at (2, 3).") == "(2, 3)"
    assert last_math("Dividing by 2, x < 4.") == "x < 4"
    assert last_math("W(x)=1 or W(x)=-1") is None  # (x) is an argument, not a tuple
    assert last_math("It is $(2, 3)$") is None  # LaTeX: math-verify reads it
