"""``octo serve`` / ``start_server`` failure paths that need no vLLM venv (the happy path is in
test_vllm_server.py)."""

from __future__ import annotations

import os
import socket
import stat
import sys

import pytest

from octo.cli import main
from octo.errors import OctoError
from octo.rollout.serve import resolve_python, start_server


def test_missing_model_dir(tmp_path):
    with pytest.raises(OctoError, match="model directory .*nope does not exist"):
        start_server(tmp_path / "nope", python=sys.executable)


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(OctoError, match="no config.json"):
        start_server(tmp_path, python=sys.executable)


def test_no_venv_anywhere(tmp_path, monkeypatch):
    monkeypatch.delenv("OCTO_VLLM_PYTHON", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OctoError, match="no vLLM server venv found.*install-vllm-server.sh"):
        resolve_python(None)


def test_python_from_env_and_default(tmp_path, monkeypatch):
    monkeypatch.setenv("OCTO_VLLM_PYTHON", str(tmp_path / "missing" / "python"))
    with pytest.raises(OctoError, match="from OCTO_VLLM_PYTHON.*does not exist"):
        resolve_python(None)
    monkeypatch.delenv("OCTO_VLLM_PYTHON")
    fake = tmp_path / ".venv-vllm" / "bin" / "python"
    fake.parent.mkdir(parents=True)
    fake.write_text("#!/bin/sh\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.chdir(tmp_path)
    assert resolve_python(None) == str(fake)
    assert resolve_python(sys.executable) == sys.executable


def test_python_without_vllm_fails_fast_with_log(toy_checkpoint, tmp_path):
    """octo's own Python has no vLLM: the server exits at once and the error names its log."""
    log = tmp_path / "server.log"
    with pytest.raises(OctoError) as err:
        start_server(toy_checkpoint, python=sys.executable, log_path=log, startup_timeout_s=60)
    msg = str(err.value)
    assert "exited during startup" in msg and str(log) in msg and "No module named" in msg
    assert "vllm" in log.read_text()


def test_port_in_use(toy_checkpoint):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(OctoError, match=f"port {port} on 127.0.0.1 is already in use"):
            start_server(toy_checkpoint, python=sys.executable, port=port)


def test_cli_prints_one_line_and_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OCTO_VLLM_PYTHON", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["serve", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("octo: error: octo serve: model directory")


def test_api_key_never_on_the_command_line(toy_checkpoint, tmp_path, monkeypatch):
    """The key goes to the server through its environment only."""
    monkeypatch.setenv("OCTO_TEST_KEY", "k3y-visible-nowhere")
    script = tmp_path / "python"
    script.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path}/argv\necho \"$VLLM_API_KEY\" > {tmp_path}/key\nexit 3\n")
    script.chmod(0o755)
    with pytest.raises(OctoError, match="exited during startup with code 3") as err:
        start_server(toy_checkpoint, python=str(script), api_key_env="OCTO_TEST_KEY", log_path=tmp_path / "log")
    assert "k3y" not in str(err.value)
    argv = (tmp_path / "argv").read_text()
    assert "k3y" not in argv and "--logprobs-mode processed_logprobs" in argv and "--host 127.0.0.1" in argv
    assert (tmp_path / "key").read_text().strip() == "k3y-visible-nowhere"
    monkeypatch.delenv("OCTO_TEST_KEY")
    with pytest.raises(OctoError, match="OCTO_TEST_KEY"):
        start_server(toy_checkpoint, python=str(script), api_key_env="OCTO_TEST_KEY")
    assert os.environ.get("VLLM_API_KEY") is None
