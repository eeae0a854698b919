"""Servers octo starts itself (``probe.rollout.backend: vllm-server`` with no URLs): started on free
ports, healthy before use, stopped by close(), on Ctrl-C, on an error, and when octo is killed;
healthy servers a user started are reused and left running.

A fake server (tests/rollout/fake_vllm_server.py, the same command line as vLLM's api_server) stands
in where no vLLM venv exists; the last test does the kill check with the real server (marker vllm).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from octo.procs import GRACE_S, group_members

from octo.errors import OctoError
from octo.rollout import make_backend
from octo.rollout.config import RolloutConfig
from octo.rollout.serve import health
from tests.rollout.fake_peer import FakePeer, closed_port_url, expected_ids

HERE = Path(__file__).resolve().parent


class _Tok:
    def batch_decode(self, seqs, skip_special_tokens=True):
        return [" ".join(map(str, s)) for s in seqs]


@pytest.fixture
def fake_vllm_python(tmp_path) -> str:
    """A 'server venv python' that runs the fake server whatever module it is asked for."""
    script = tmp_path / "bin" / "python"
    script.parent.mkdir()
    script.write_text(f"#!/bin/sh\nexec {sys.executable} {HERE / 'fake_vllm_server.py'} \"$@\"\n")
    script.chmod(0o755)
    return str(script)


@pytest.fixture
def model_dir(tmp_path) -> Path:
    d = tmp_path / "ckpt"
    d.mkdir()
    (d / "config.json").write_text("{}")
    return d


def _group_alive(pgid: int) -> bool:
    """True while any process of the server's group is alive (zombies count as gone)."""
    return bool(group_members(pgid))


def _gone_within(pgid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _group_alive(pgid):
            return True
        time.sleep(0.1)
    return False


def _cfg(python: str, **kw) -> RolloutConfig:
    return RolloutConfig(backend="vllm-server", server_python=python, max_concurrency=4, startup_timeout_s=60,
                         **kw)


def test_no_urls_starts_a_server_uses_it_and_close_stops_it(fake_vllm_python, model_dir, capsys, monkeypatch):
    monkeypatch.setenv("FAKE_VLLM_STARTUP_S", "1.5")  # a load time: health is polled, not assumed
    backend = make_backend(_cfg(fake_vllm_python), tokenizer=_Tok(), model_path=str(model_dir))
    try:
        (handle,) = backend.started
        assert handle.alive() and health(handle.url)
        assert backend.healthy_servers == [handle.url]
        groups = backend.generate([[5, 6], [7]], n=2, max_tokens=3, seed=0)
        assert [c.token_ids for c in groups[1]] == [expected_ids([7], j, 3) for j in range(2)]
    finally:
        backend.close()
    assert not handle.alive() and _gone_within(handle.process.pid, 10)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "vLLM server" in ln]
    assert "starting 1 vLLM server(s) for" in lines[0] and handle.url in lines[0] and "log:" in lines[0]
    assert "healthy after" in lines[1]


def test_two_servers_on_distinct_ports(fake_vllm_python, model_dir):
    with make_backend(_cfg(fake_vllm_python, num_servers=2), tokenizer=_Tok(), model_path=str(model_dir)) as b:
        assert len({h.port for h in b.started}) == 2 and len(b.healthy_servers) == 2
        pids = [h.process.pid for h in b.started]
    assert all(_gone_within(pid, 10) for pid in pids)


def test_a_healthy_user_server_is_reused_and_left_running(fake_vllm_python, model_dir):
    user = FakePeer()
    try:
        with make_backend(_cfg(fake_vllm_python, servers=[user.url], num_servers=1), tokenizer=_Tok(),
                          model_path=str(model_dir)) as b:
            assert b.started == [] and b.healthy_servers == [user.url]
            b.generate([[3]], n=1, max_tokens=2, seed=0)
        assert user.paths("/v1/completions") and health(user.url)  # used, then not stopped
    finally:
        user.close()


def test_an_unhealthy_listed_server_is_replaced(fake_vllm_python, model_dir, caplog):
    dead = closed_port_url()
    with make_backend(_cfg(fake_vllm_python, servers=[dead], num_servers=1), tokenizer=_Tok(),
                      model_path=str(model_dir)) as b:
        assert len(b.started) == 1 and b.healthy_servers == [b.started[0].url]
    assert f"vLLM server {dead} does not answer GET /health; octo starts its own" in caplog.text


def test_listed_urls_without_num_servers_start_nothing(fake_vllm_python, model_dir):
    user = FakePeer()
    try:
        with make_backend(_cfg(fake_vllm_python, servers=[user.url]), tokenizer=_Tok(),
                          model_path=str(model_dir)) as b:
            assert b.started == []
    finally:
        user.close()


def test_a_server_failing_to_start_is_one_sentence_and_leaves_nothing(fake_vllm_python, model_dir, monkeypatch):
    monkeypatch.setenv("FAKE_VLLM_FAIL", "RuntimeError: not enough memory for the KV cache")
    with pytest.raises(OctoError, match=r"exited during startup with code 3 \(RuntimeError: not enough memory"):
        make_backend(_cfg(fake_vllm_python), tokenizer=_Tok(), model_path=str(model_dir))


def test_no_server_and_no_checkpoint(fake_vllm_python):
    with pytest.raises(OctoError, match="no running server and no checkpoint to start one from"):
        make_backend(_cfg(fake_vllm_python), tokenizer=_Tok())


def test_missing_server_venv_names_the_fix(model_dir, monkeypatch, tmp_path):
    monkeypatch.delenv("OCTO_VLLM_PYTHON", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OctoError, match="no vLLM server venv found.*install-vllm-server.sh"):
        make_backend(RolloutConfig(backend="vllm-server"), tokenizer=_Tok(), model_path=str(model_dir))


def _owner(python: str, model_dir: Path, *extra: str) -> tuple[subprocess.Popen, int]:
    """Start managed_child.py (an octo process owning one server); return it and the server's pid."""
    proc = subprocess.Popen([sys.executable, str(HERE / "managed_child.py"), python, str(model_dir), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=30)
        pytest.fail(f"the owner printed no server pid: {proc.stderr.read()[-2000:]}")
    return proc, int(line.split()[0])


def _reap(proc, server: int) -> None:
    """Whatever a test left: the owner process and the server's process group."""
    if proc.poll() is None:
        proc.kill()
    try:
        os.killpg(server, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM", "Ctrl-C", "error"])
def test_the_server_dies_with_its_owner(fake_vllm_python, model_dir, how):
    """No orphan server whichever way octo ends: killed (the kernel's parent-death signal), terminated
    (Python's default SIGTERM runs no cleanup, so the same), Ctrl-C and an error (close() in finally)."""
    proc, server = _owner(fake_vllm_python, model_dir, *(["error"] if how == "error" else []))
    try:
        assert _group_alive(server)
        if how != "error":
            proc.send_signal({"SIGKILL": signal.SIGKILL, "SIGTERM": signal.SIGTERM, "Ctrl-C": signal.SIGINT}[how])
        proc.wait(timeout=60)
        assert _gone_within(server, 15), f"server {server} outlived its owner ({how})"
    finally:
        _reap(proc, server)


@pytest.mark.vllm
@pytest.mark.slow
def test_a_real_vllm_server_dies_with_its_killed_owner(vllm_python, toy_checkpoint):
    """The real api_server and its engine-core process: SIGKILL the owner, nothing is left."""
    proc, server = _owner(vllm_python, toy_checkpoint)
    try:
        assert _group_alive(server)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert _gone_within(server, 60), "the vLLM server's process group outlived its killed owner"
    finally:
        _reap(proc, server)


def test_a_server_killed_mid_load_leaves_no_process(fake_vllm_python, model_dir, tmp_path, monkeypatch):
    """octo killed while its server still loads, the server ignoring SIGTERM and holding an engine process that
    ignores it too (as a vLLM api_server can mid-load): the guard octo starts it under ends the whole tree.
    Without the guard the parent-death SIGTERM reaches the server alone, and both would outlive octo."""
    pids = tmp_path / "pids"
    for key, value in (("FAKE_VLLM_STARTUP_S", "120"), ("FAKE_VLLM_STUBBORN", "1"), ("FAKE_VLLM_PIDFILE", str(pids))):
        monkeypatch.setenv(key, value)
    proc = subprocess.Popen([sys.executable, str(HERE / "managed_child.py"), fake_vllm_python, str(model_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (pids.exists() and len(pids.read_text().split()) == 3) and time.monotonic() < deadline:
            time.sleep(0.1)
        server, engine, group = map(int, pids.read_text().split())
        assert group_members(group) and proc.poll() is None   # still loading: the owner waits for health
        proc.kill()
        proc.wait(timeout=30)
        assert _gone_within(group, GRACE_S + 15), f"server {server} or engine {engine} outlived its killed owner"
    finally:
        _reap(proc, group)


def test_the_heartbeat_names_the_server_load(fake_vllm_python, model_dir, capsys, monkeypatch):
    """While a server loads inside a probe's held-out evaluation (the backend is made on its first use), the
    progress lines say that servers are loading, not that the evaluation is running."""
    from octo import progress

    monkeypatch.setattr(progress, "LINE_INTERVAL_S", 0.3)
    monkeypatch.setenv("FAKE_VLLM_STARTUP_S", "3")
    with progress.activity("held-out evaluation at step 0"):
        backend = make_backend(_cfg(fake_vllm_python), tokenizer=_Tok(), model_path=str(model_dir))
    backend.close()
    err = capsys.readouterr().err
    loading = [ln for ln in err.splitlines() if "loading 1 vLLM server(s): running for" in ln]
    assert loading, err[-2000:]
    start = err.index("starting 1 vLLM server(s)")
    end = err.index("healthy after")
    assert "held-out evaluation at step 0: running" not in err[start:end]
