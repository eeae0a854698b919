"""Build tests/data/verifier_mathverify.jsonl from math-verify's own test suite (run once, by hand).

    python tests/data/make_verifier_mathverify.py PATH/TO/Math-Verify > tests/data/verifier_mathverify.jsonl

Reads every ``@pytest.mark.parametrize`` table of (gold, pred, expected) in the checkout's
tests/test_*.py (huggingface/Math-Verify at commit 5d148cf, the one the rows cite), keeps the first
of each repeated (gold, pred) pair, and labels each row with the test's ``expected``, except the
rows in ``RELABEL`` (the label there is what the answer is, and ``label_note`` says why the test
expects otherwise). Rows whose test runs math-verify with a non-default setting say which one in
``label_note``: their label holds only under that setting.
"""

from __future__ import annotations

import ast
import json
import math
import sys
from pathlib import Path

COMMIT = "5d148cf"
FILES = ["test_all", "test_boxed", "test_numina_cases", "test_open_thoughts", "test_strict", "test_yujianll"]

# (file, test, index) -> (correct, why the test's own expectation is not the label)
RELABEL = {
    ("tests/test_yujianll.py", "test_string_extraction", 9): (
        False, "1 + 1/e is not 1 - 1/e; math-verify's test expects a match because its parser drops "
               "\\frac{1}{\\mathrm{e}} from both sides"),
}


def _settings(node: ast.FunctionDef, row: dict) -> list[str]:
    body = ast.unparse(node)
    out = []
    if "precision=precision" in body and row.get("precision", 6) != 6:
        out.append(f"float_rounding={row['precision']}")
    elif "precision=5" in body:
        out.append("float_rounding=5")
    if row.get("strict") is False:
        out.append("strict=False")
    if row.get("allow_set_relation_comp") is True:
        out.append("allow_set_relation_comp=True")
    return out


def rows(repo: Path) -> list[dict]:
    out, seen = [], set()
    for name in FILES:
        path = f"tests/{name}.py"
        tree = ast.parse((repo / path).read_text(encoding="utf-8"))
        for node in tree.body:
            if not isinstance(node, ast.FunctionDef):
                continue
            for dec in node.decorator_list:
                if not (isinstance(dec, ast.Call) and getattr(dec.func, "attr", "") == "parametrize"):
                    continue
                names = [n.strip() for n in ast.literal_eval(dec.args[0]).split(",")]
                values = eval(compile(ast.Expression(dec.args[1]), path, "eval"), {"math": math})  # noqa: S307
                for k, v in enumerate(values):
                    row = dict(zip(names, v))
                    key = (row["gold"], row["pred"])
                    if key in seen:
                        continue
                    seen.add(key)
                    correct = bool(row.get("expected", row.get("result")))
                    notes = []
                    if (path, node.name, k) in RELABEL:
                        correct, why = RELABEL[(path, node.name, k)]
                        notes.append(why)
                    settings = _settings(node, row)
                    if settings and (path, node.name, k) not in RELABEL:
                        notes.append("math-verify's test runs this with " + ", ".join(settings))
                    item = {"category": node.name.removeprefix("test_"), "gold": row["gold"], "completion": row["pred"],
                            "expected_correct": correct,
                            "source": f"math-verify@{COMMIT} {path}::{node.name}[{k}]"}
                    if notes:
                        item["label_note"] = "; ".join(notes)
                    out.append(item)
    return out


def main(argv: list[str]) -> int:
    for r in rows(Path(argv[1])):
        print(json.dumps(r, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
