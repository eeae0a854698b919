"""octo.progress: lines that say where the run is, bars that degrade to periodic lines, the interrupt note."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from octo import progress
from tests.conftest import QUICKSTART


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    monkeypatch.delenv(progress.LINE_ENV, raising=False)
    yield
    progress.set_part(None)
    progress.set_run_eta(None)
    progress.set_run_deadline(None)
    progress.end_position()
    progress._state["bar"] = progress._state["activity"] = None


def _lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_a_line_says_its_part_and_the_run_eta(capsys):
    progress.info("stage stable: start")
    progress.set_part("stage 2/5")
    progress.set_run_eta(lambda: 190.0)
    progress.info("stage stable: done")
    plain, placed = _lines(capsys)
    assert plain.endswith("] stage stable: start") and "run ETA" not in plain
    assert "[stage 2/5] stage stable: done; run ETA 3m10s" in placed


def test_a_worker_gets_its_part_a_deadline_and_lines(capsys, monkeypatch):
    monkeypatch.setattr(progress, "line_mode", lambda force=None: True)
    progress.enter_worker({"part": "probe 2/4", "deadline": time.time() + 65})
    progress.info("probe x: start")
    (line,) = _lines(capsys)
    assert "[probe 2/4] probe x: start; run ETA 1m0" in line


@pytest.mark.parametrize("seconds,text", [(3, "3s"), (59.6, "1m00s"), (190, "3m10s"), (3725, "1h02m")])
def test_duration(seconds, text):
    assert progress.duration(seconds) == text


def test_without_a_terminal_or_width_bars_are_lines(monkeypatch):
    # pytest's captured stderr is not a terminal
    assert progress.line_mode() is True
    assert progress.terminal_width() == 0
    monkeypatch.setenv("COLUMNS", "0")
    assert progress.terminal_width() == 0


def test_line_mode_can_be_forced_for_this_process_and_its_children(monkeypatch):
    monkeypatch.setattr(progress, "terminal_width", lambda: 120)     # as in a wide terminal
    assert progress.line_mode() is False
    assert progress.line_mode(True) is True
    assert os.environ[progress.LINE_ENV] == "lines"
    res = subprocess.run([sys.executable, "-c", "from octo import progress; print(progress.line_mode())"],
                         capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert res.stdout.strip() == "True"


def test_a_line_bar_prints_about_every_interval_with_step_rate_and_eta(capsys, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(progress, "_now", lambda: clock[0])
    monkeypatch.setattr(progress, "_start_heartbeat", lambda: None)
    progress._state["last_line"] = clock[0]
    progress.set_part("probe 2/4")
    bar = progress.bar(40, "decay-long.step-120")
    assert bar.tqdm is None
    printed = []
    for step in range(1, 41):
        clock[0] += 1.0                         # one step a second
        bar.update(1)
        bar.set_postfix(acc="0.20", len="63")
        printed += _lines(capsys)
    bar.close()
    assert len(printed) == 4                    # 40 s of steps: one line every ~10 s, no more
    first = printed[0]
    assert "[probe 2/4] decay-long.step-120: step 10/40 (25%), 1.00 step/s, ETA 30s" in first, first
    assert "acc=0.20" in printed[1]


def test_the_heartbeat_speaks_during_work_without_steps(capsys, monkeypatch):
    monkeypatch.setattr(progress, "LINE_INTERVAL_S", 0.3)
    progress._state["last_line"] = progress._now()
    with progress.activity("stable.step-300: held-out evaluation at step 20"):
        time.sleep(2.2)                          # lines from its first second on, one per interval
    during = [line for line in _lines(capsys) if "held-out evaluation" in line]
    time.sleep(0.8)                              # and none once the work has ended
    after = _lines(capsys)
    assert len(during) >= 2 and "running for 1s" in during[0], during
    assert len(during) <= 6 and after == []


def test_the_interrupt_note_says_what_the_rerun_redoes(monkeypatch):
    clock = [50.0]
    monkeypatch.setattr(progress, "_now", lambda: clock[0])
    assert progress.interrupt_note() == ""
    progress.begin_position("stage stable", step=0, total=300)
    clock[0] += 12
    progress.note_step(45)
    assert progress.interrupt_note() == ("the rerun resumes stage stable from its start (no checkpoint yet) and "
                                         "redoes 45 steps of 300, about 12s of work")
    progress.note_saved(45)
    clock[0] += 20
    progress.note_step(120)
    assert progress.interrupt_note() == ("the rerun resumes stage stable from its checkpoint at step 45 and "
                                         "redoes 75 steps of 300, about 20s of work")
    progress.end_position()
    assert progress.interrupt_note() == ""


def test_ctrl_c_says_which_part_resumes_where(monkeypatch, capsys):
    from octo import cli, pipeline

    def interrupted(args):
        progress.begin_position("probe stable.step-300", step=20, total=40)
        progress.note_step(27)
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "run_run", interrupted)
    assert cli.main(["run", str(QUICKSTART)]) == 130
    err = capsys.readouterr().err
    assert "interrupted; rerun the same command to resume from the last checkpoint: the rerun resumes probe " \
           "stable.step-300 from its checkpoint at step 20 and redoes 7 steps of 40" in err
