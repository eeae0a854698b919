"""Ctrl-C while `octo run --jobs 2` runs probes in worker processes: the queued probes never start, the running ones
stop, nothing of the command's process group is left, and the same command resumes to the end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.engine.test_assets import FAST, TINY_FAST

pytestmark = [pytest.mark.slow, pytest.mark.multiproc]

STEPS = 16


def _args(run_dir, steps: int) -> list[str]:
    args = [sys.executable, "-m", "octo.cli", "run", str(FAST), "--run-dir", str(run_dir), "--jobs", "2"]
    for o in TINY_FAST:
        args += ["--set", o]
    # an evaluation every 10 steps and a checkpoint every 5, not every step: the rerun's four 16-step probes are
    # this test's cost, and what it checks (the interrupt, nothing left running, the rerun finishing) is the same
    return args + ["--set", f"probe.steps={steps}", "--set", "probe.eval_every=10", "--set", "probe.save_every=5"]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def test_ctrl_c_stops_running_and_queued_probes_and_the_rerun_finishes(tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen(_args(run, STEPS), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "start from" in line:  # the first probe is running in a worker
            break
    time.sleep(2)  # well before a 16-step probe can end (~0.5 s a step here), so no queued probe may start
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
    rest = proc.stdout.read()
    rc = proc.wait(timeout=120)
    after = "".join(lines) + rest
    assert rc == 130, after[-3000:]
    assert "interrupted" in rest
    started = after.count("start from")
    assert started <= 2, after[-3000:]  # the two queued probes never started
    assert not list(run.glob("probes/*/DONE.json"))
    deadline = time.monotonic() + 10
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _group_alive(proc.pid), "a worker of the interrupted command is still running"

    res = subprocess.run(_args(run, STEPS), capture_output=True, text=True, env=env, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert len(list(run.glob("probes/*/DONE.json"))) == 4
