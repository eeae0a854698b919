"""One writer per run directory (octo.runlock): a second writer is refused with the holder's pid,
a lock left by a SIGKILLed process is taken over, one process may prepare a directory twice,
and different directories do not interfere. The O_EXCL fallback (no flock, e.g. some NFS) is
checked with flock made to fail."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from octo.context import RunContext
from octo.errors import OctoError
from octo.runlock import LOCK_FILE, RunLock, held_locks, proc_start
from tests.conftest import QUICKSTART, REPO, TINY_OVERRIDES

# prepare the tiny recipe in argv[1], say "ready", then hold the run directory for argv[2] seconds
HOLDER = """
import sys, time
from octo.config import load_recipe_dict, parse_recipe
from octo.context import RunContext
from tests.conftest import QUICKSTART, TINY_OVERRIDES
recipe = parse_recipe(load_recipe_dict(QUICKSTART), TINY_OVERRIDES + [f"run_dir={sys.argv[1]}"])
RunContext(recipe).prepare()
print("ready", flush=True)
time.sleep(float(sys.argv[2]))
"""


def _env() -> dict:
    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1",
                "PYTHONPATH": str(REPO)})
    return env


def _holder(run_dir: Path, seconds: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir), str(seconds)], cwd=REPO, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_ready(proc: subprocess.Popen) -> None:
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        raise AssertionError(f"holder did not start: {line!r} {proc.stderr.read()[-3000:]}")


def _octo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "octo.cli", *args], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=300)


def _cpt_args(run_dir: Path) -> list[str]:
    args = ["cpt", str(QUICKSTART), "--run-dir", str(run_dir)]
    for o in TINY_OVERRIDES:
        args += ["--set", o]
    return args


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("[octo ")]


def test_second_writer_refused_then_takeover_after_sigkill(tmp_path):
    run_dir = tmp_path / "run"
    holder = _holder(run_dir, 300)
    try:
        _wait_ready(holder)
        info = json.loads((run_dir / LOCK_FILE).read_text())
        assert info["pid"] == holder.pid and info["host"] == socket.gethostname()
        assert info["proc_start"] == proc_start(holder.pid) and "command" in info and info["started"] > 0

        # a second writer (octo cpt on the same directory) is refused: one line, exit 2, the holder named
        res = _octo(*_cpt_args(run_dir))
        assert res.returncode == 2, res.stderr[-3000:]
        lines = _error_lines(res.stderr)
        assert len(lines) == 1 and lines[0].startswith("octo: error:"), res.stderr
        assert f"pid {holder.pid}" in lines[0] and "in use" in lines[0] and socket.gethostname() in lines[0]
        assert "Traceback" not in res.stderr
        assert not (run_dir / "cpt").exists()  # it wrote nothing

        # a read-only command is not blocked by the lock (whatever else it says about this bare run)
        res = _octo("score", str(run_dir))
        assert "in use" not in res.stderr and "Traceback" not in res.stderr

        holder.send_signal(signal.SIGKILL)
        holder.wait()
        assert (run_dir / LOCK_FILE).exists()  # a killed process cannot clean up
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()

    # the next writer takes the stale lock over and says so
    nxt = subprocess.run([sys.executable, "-c", HOLDER, str(run_dir), "0"], cwd=REPO, env=_env(),
                         capture_output=True, text=True, timeout=300)
    assert nxt.returncode == 0, nxt.stderr[-3000:]
    assert f"taking over the lock left by pid {holder.pid}" in nxt.stderr
    assert not (run_dir / LOCK_FILE).exists()  # a clean exit removes the lock file


def test_same_process_twice_is_reentrant(tiny_recipe):
    a, b = RunContext(tiny_recipe), RunContext(tiny_recipe)
    a.prepare()
    b.prepare()
    assert a.lock is b.lock and a.lock.held
    assert json.loads((a.run_dir / LOCK_FILE).read_text())["pid"] == os.getpid()
    a.release()
    assert b.lock.held and (a.run_dir / LOCK_FILE).exists()  # still held for b
    res = _octo(*_cpt_args(a.run_dir))  # and still refused to another process
    assert res.returncode == 2 and f"pid {os.getpid()}" in res.stderr
    b.release()
    assert not (a.run_dir / LOCK_FILE).exists() and a.run_dir.resolve() not in held_locks()


def test_cli_main_in_process_leaves_no_lock_behind(tmp_path):
    """A command run by octo.cli.main in a process that outlives it (a fork server, a notebook) frees the
    directory when it ends, even when it fails after taking the lock (here: bad data found in prepare)."""
    from octo.cli import main

    bad = tmp_path / "web.jsonl"
    bad.write_text("{not json\n")
    run_dir = tmp_path / "run"
    assert main([*_cpt_args(run_dir), "--set", f"data.sources.web.path={bad}"]) == 2
    assert (run_dir / "recipe.resolved.yaml").exists()  # it did take the lock and write
    assert run_dir.resolve() not in held_locks() and not (run_dir / LOCK_FILE).exists()


def test_different_run_dirs_do_not_interfere(tmp_path):
    holder = _holder(tmp_path / "a", 300)
    try:
        _wait_ready(holder)
        lock = RunLock.acquire_dir(tmp_path / "b")
        assert lock.held and json.loads((tmp_path / "b" / LOCK_FILE).read_text())["pid"] == os.getpid()
        lock.release()
        with pytest.raises(OctoError, match=f"pid {holder.pid}"):
            RunLock.acquire_dir(tmp_path / "a")
    finally:
        holder.kill()
        holder.wait()


# --- the fallback without flock (O_EXCL + pid/host liveness) ---------------------------------------------------

@pytest.fixture
def no_flock(monkeypatch):
    import octo.runlock

    def flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(octo.runlock.fcntl, "flock", flock)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_lock(run_dir: Path, **info) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    base = {"pid": 1, "host": socket.gethostname(), "started": time.time(), "command": "octo run r.yaml",
            "proc_start": None}
    (run_dir / LOCK_FILE).write_text(json.dumps({**base, **info}))


def test_fallback_takes_over_a_dead_pid(tmp_path, no_flock, capsys):
    dead = _dead_pid()
    _write_lock(tmp_path, pid=dead)
    lock = RunLock.acquire_dir(tmp_path)
    try:
        assert lock.mode == "excl" and json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
        assert f"taking over the stale lock of pid {dead}" in capsys.readouterr().err
    finally:
        lock.release()
    assert not (tmp_path / LOCK_FILE).exists()


def test_fallback_refuses_a_live_holder_and_detects_pid_reuse(tmp_path, no_flock):
    parent = os.getppid()  # alive for the whole test
    _write_lock(tmp_path, pid=parent, proc_start=proc_start(parent))
    with pytest.raises(OctoError, match=f"in use by pid {parent}") as info:
        RunLock.acquire_dir(tmp_path)
    assert "\n" not in str(info.value)
    # the same pid with another start time is a reused pid: the recorded process is gone
    _write_lock(tmp_path, pid=parent, proc_start=(proc_start(parent) or 0) + 12345)
    lock = RunLock.acquire_dir(tmp_path)
    assert lock.mode == "excl"
    lock.release()


def test_fallback_on_a_fresh_directory(tmp_path, no_flock):
    lock = RunLock.acquire_dir(tmp_path / "run")
    try:
        assert lock.mode == "excl" and json.loads((tmp_path / "run" / LOCK_FILE).read_text())["pid"] == os.getpid()
        with pytest.raises(OctoError, match=f"in use by pid {os.getpid()}"):  # another holder (not re-entrant)
            RunLock(tmp_path / "run")._acquire()
    finally:
        lock.release()
    assert not (tmp_path / "run" / LOCK_FILE).exists()


def test_fallback_refuses_a_lock_from_another_host(tmp_path, no_flock):
    _write_lock(tmp_path, pid=_dead_pid(), host="elsewhere.example")
    with pytest.raises(OctoError, match="on elsewhere.example") as info:
        RunLock.acquire_dir(tmp_path)
    assert f"delete {tmp_path / LOCK_FILE}" in str(info.value)
