"""``octo verify``: output file, summary table, exit codes 0/2 with one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from octo.cli import main


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


ROWS = [
    {"id": 1, "completion": "so \\boxed{72}", "gold": "72"},
    {"id": 2, "completion": "\\boxed{1+x^2}", "gold": "x^2+1"},
    {"id": 3, "completion": "The answer is 5.", "gold": 6},
    {"id": 4, "completion": "no idea", "gold": "3"},
    {"id": 5, "completion": "\\boxed{3}", "gold": "???"},
]


def test_verify_writes_rows_and_prints_summary(tmp_path, capsys):
    src = _write(tmp_path / "samples.jsonl", ROWS)
    out = tmp_path / "out.jsonl"
    assert main(["verify", str(src), "--out", str(out), "--set", "workers=1"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["status"] for r in rows] == ["ok", "ok", "wrong", "no_answer", "gold_unparseable"]
    assert [r["correct"] for r in rows] == [True, True, False, False, False]
    assert rows[0]["extracted"] == "72" and rows[0]["method"] == "boxed"
    assert rows[2]["method"] == "answer_is" and rows[3]["extracted"] is None
    assert all(r["reason"] for r in rows) and rows[1]["gold"] == "x^2+1"
    text = capsys.readouterr().out
    assert "status" in text and "accuracy 0.4000" in text
    lines = {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.strip()}
    assert lines["ok"][0] == "2" and lines["wrong"][0] == "1" and lines["timeout"][0] == "0"
    assert lines["total"][0] == "5"
    assert f"wrote {out}" in text


def test_default_output_path_and_custom_keys(tmp_path, capsys):
    src = _write(tmp_path / "gen.jsonl", [{"response": "#### 1,000", "answer": "1000", "task": "gsm8k"}])
    assert main(["verify", str(src), "--gold-key", "answer", "--completion-key", "response",
                 "--task-key", "task", "--set", "extract_by_task={gsm8k: [hash]}"]) == 0
    row = json.loads((tmp_path / "gen.verified.jsonl").read_text())
    assert row["status"] == "ok" and row["method"] == "hash"


@pytest.mark.parametrize("rows, needle", [
    ([ROWS[0], "{not json"], "line 2 is not valid JSON"),
    ([ROWS[0], {"completion": "x"}], "line 2 has no 'gold' key"),
    ([{"gold": "1"}], "line 1 has no 'completion' key"),
    (["[1, 2]"], "line 1 is not a JSON object"),
    ([{"completion": 5, "gold": "1"}], "line 1: 'completion' must be a string"),
    ([{"completion": "x", "gold": None}], "line 1: 'gold' must be a string or a number"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, rows, needle):
    src = _write(tmp_path / "bad.jsonl", rows)
    assert main(["verify", str(src)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("octo: error: ") and str(src) in err and needle in err
    assert "\n" not in err and "Traceback" not in err


def test_missing_file_and_bad_settings(tmp_path, capsys):
    assert main(["verify", str(tmp_path / "nope.jsonl")]) == 2
    assert "does not exist" in capsys.readouterr().err
    src = _write(tmp_path / "a.jsonl", ROWS[:1])
    assert main(["verify", str(src), "--set", "timeout_s=0"]) == 2
    assert "--set timeout_s: must be > 0" in capsys.readouterr().err
    assert main(["verify", str(src), "--set", "no_such_key=1"]) == 2
    assert "unknown key" in capsys.readouterr().err
    assert main(["verify", str(src), "--out", str(src)]) == 2
    assert "is the input file" in capsys.readouterr().err


def test_dry_run_prints_config_and_touches_nothing(tmp_path, capsys):
    src = _write(tmp_path / "a.jsonl", ROWS[:1])
    assert main(["verify", str(src), "--dry-run", "--set", "verifier.workers=3"]) == 0
    out = capsys.readouterr().out
    assert "verifier:" in out and "workers: 3" in out
    assert not (tmp_path / "a.verified.jsonl").exists()


def test_console_script_exit_code(tmp_path):
    src = _write(tmp_path / "a.jsonl", [{"completion": "\\boxed{2}", "gold": "2"}])
    ok = subprocess.run([sys.executable, "-m", "octo.cli", "verify", str(src)], capture_output=True, text=True,
                        timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "accuracy 1.0000" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "octo.cli", "verify", str(tmp_path / "missing.jsonl")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
