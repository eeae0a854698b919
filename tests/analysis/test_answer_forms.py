"""benchmarks/answer_forms.py: the share and mean reward of each toy-world answer form per tenth of a run's steps,
read from the runs' samples.jsonl, and one argparse line with exit 2 when no run matches."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import answer_forms  # noqa: E402

COLUMN = "Okay, let me add 47 and 18.\n47+18 c0 7+8+0=15 a5\n4+1 c1 4+1+1=6 a65\n</think>\n\\boxed{65}"
PLACES = "units 7+8=15\ntens 4+1+1=6\nSo the sum is 65.\n</think>\nThe answer is \\boxed{65}."
DIRECT = "Step 1: 47+18=65.\n</think>\nSo Ann has \\boxed{65} coins."


def _run(path, steps, rows, planned=None):
    path.mkdir(parents=True)
    if planned is not None:
        (path / "probe.json").write_text(json.dumps({"steps": planned}))
    with open(path / "samples.jsonl", "w") as fh:
        for step, completion, reward in rows:
            fh.write(json.dumps({"step": step, "completion": completion, "reward": reward}) + "\n")
        fh.write('{"step": 20, "completion": "cut by a ki')   # the last line of a killed run


def test_forms_per_tenth_of_the_run(tmp_path, capsys):
    # 20 steps: the first tenth is steps 1-2, the fifth 9-10, the last 19-20
    rows = [(1, COLUMN, 1.0), (1, PLACES, 0.0), (2, PLACES, 1.0), (2, DIRECT, 0.0),
            (5, COLUMN, 1.0),                                      # the third tenth: not asked for
            (9, PLACES, 1.0), (10, PLACES, 0.0),
            (19, COLUMN, 1.0), (20, COLUMN, 0.0), (20, COLUMN, 1.0), (20, "no work", 0.0)]
    _run(tmp_path / "run" / "validation" / "full" / "a.step-1", 20, rows, planned=20)
    _run(tmp_path / "run" / "probes" / "b.step-1", 20, rows[:2])   # not under the default glob
    assert answer_forms.main([str(tmp_path / "run")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == ["a.step-1"]
    first, mid, last = out["a.step-1"]["1"], out["a.step-1"]["5"], out["a.step-1"]["10"]
    assert first == {"steps": [1, 2], "completions": 4,
                     "forms": {"column": {"share": 0.25, "reward": 1.0}, "places": {"share": 0.5, "reward": 0.5},
                               "direct": {"share": 0.25, "reward": 0.0}}}
    assert mid == {"steps": [9, 10], "completions": 2, "forms": {"places": {"share": 1.0, "reward": 0.5}}}
    assert last["steps"] == [19, 20] and last["forms"] == {"column": {"share": 0.75, "reward": 0.667},
                                                           "other": {"share": 0.25, "reward": 0.0}}
    # another glob and other tenths; a run without probe.json takes its last logged step as its length
    assert answer_forms.main([str(tmp_path / "run"), "--runs", "probes/*", "--tenths", "10"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {"b.step-1": {"10": {"steps": [1, 1], "completions": 2,
                                       "forms": {"column": {"share": 0.5, "reward": 1.0},
                                                 "places": {"share": 0.5, "reward": 0.0}}}}}
    # a run of fewer than 10 steps has tenths without a step
    assert answer_forms.main([str(tmp_path / "run"), "--runs", "probes/*", "--tenths", "1", "10"]) == 0
    out = json.loads(capsys.readouterr().out)["b.step-1"]
    assert out["1"] == {"steps": [], "completions": 0, "forms": {}} and out["10"]["completions"] == 2
    assert [answer_forms.tenth_steps(k, 120) for k in (1, 5, 10)] == [(1, 12), (49, 60), (109, 120)]
    # runs of the same name (octo probe --out x/probe, y/probe) are told apart by their path under RUN_DIR
    _run(tmp_path / "bench" / "x" / "probe", 2, rows[:1])
    _run(tmp_path / "bench" / "y" / "probe", 2, rows[1:2])
    assert answer_forms.main([str(tmp_path / "bench"), "--runs", "*/probe", "--tenths", "10"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {k: list(v["10"]["forms"]) for k, v in out.items()} == {"x/probe": ["column"], "y/probe": ["places"]}


def test_no_matching_run_is_one_line_and_exit_2(tmp_path):
    damaged, foreign = tmp_path / "damaged", tmp_path / "foreign"
    _run(damaged / "validation" / "full" / "a", 2, [(1, COLUMN, 1.0)])
    with open(damaged / "validation" / "full" / "a" / "samples.jsonl", "a") as fh:
        fh.write('\n{"step": 2, "completion": "x", "reward": 0.0}\n')   # the cut line is no longer the last
    _run(foreign / "validation" / "full" / "a", 2, [])
    (foreign / "validation" / "full" / "a" / "samples.jsonl").write_text('{"step": 1, "text": "no completion"}\n')
    for args, words in (([str(tmp_path)], "no run directory with a samples.jsonl matches"),
                        ([str(tmp_path), "--tenths", "0"], "invalid choice"),
                        ([str(damaged)], "is not valid JSON; the file is damaged"),
                        ([str(foreign)], "has a row that is not a logged sample")):
        p = subprocess.run([sys.executable, str(REPO / "benchmarks/answer_forms.py"), *args],
                           capture_output=True, text=True, cwd=REPO)
        assert p.returncode == 2 and "Traceback" not in p.stderr
        last = p.stderr.strip().splitlines()[-1]
        assert last.startswith("answer_forms.py: error:") and words in last
