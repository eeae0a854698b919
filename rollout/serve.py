"""``octo serve``: start a vLLM server for a checkpoint, wait until it is healthy, stop it cleanly.

    octo serve runs/toy/cpt/stable/checkpoints/step-40 [--port 8000] [--python .venv-vllm/bin/python]

vLLM pins its own torch and transformers, so the server runs with the Python of a separate venv
(``scripts/install-vllm-server.sh``), with the flags octo's backends need (docs/rollout.md, "octo
serve"). It binds 127.0.0.1 by default: vLLM's API key guards ``/v1`` only, not the weight-sync
endpoints; the key goes to vLLM through its environment, never a command line or a log. The URL is
printed alone on stdout once ``GET /health`` answers 200; Ctrl-C or SIGTERM stops the server's
whole process group. :func:`start_server` is the same as a Python API (tests, benchmark, probes).
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from octo.errors import OctoError
from octo.procs import die_with_parent, guarded

PYTHON_ENV = "OCTO_VLLM_PYTHON"
DEFAULT_VENV = ".venv-vllm"
_LIVE: set[ServerHandle] = set()


def resolve_python(python: str | None = None) -> str:
    """The server venv's Python: ``python``, else ``$OCTO_VLLM_PYTHON``, else ``./.venv-vllm/bin/python``."""
    candidate = python or os.environ.get(PYTHON_ENV)
    source = "--python" if python else PYTHON_ENV
    if not candidate:
        default = Path.cwd() / DEFAULT_VENV / "bin" / "python"
        if not default.exists():
            raise OctoError(f"no vLLM server venv found (no --python, no {PYTHON_ENV}, no ./{DEFAULT_VENV}); build "
                            f"it with scripts/install-vllm-server.sh and set {PYTHON_ENV} to the python it prints")
        candidate, source = str(default), f"./{DEFAULT_VENV}"
    path = Path(candidate)
    if not path.exists() or not os.access(path, os.X_OK):
        raise OctoError(f"the vLLM server python {candidate} (from {source}) does not exist or is not executable; "
                        f"build the venv with scripts/install-vllm-server.sh or fix {source}")
    return str(path)


def has_gpu() -> bool:
    """True when ``nvidia-smi -L`` lists a GPU."""
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def health(url: str, timeout_s: float = 2.0) -> bool:
    """True when ``GET url/health`` answers 200 within ``timeout_s``."""
    try:
        with urllib.request.urlopen(url + "/health", timeout=timeout_s) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _last_log_line(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def _die_with_parent() -> None:
    """``preexec_fn`` of a server (or a test's ``octo serve``): SIGTERM when the thread that started it
    dies, so that the server still stops its own engine process on the way out."""
    die_with_parent(sig=signal.SIGTERM)


class ServerHandle:
    """A running vLLM server started by :func:`start_server`; a context manager that stops it."""

    def __init__(self, process: subprocess.Popen, *, url: str, model_dir: Path, log_path: Path, port: int):
        self.process = process
        self.url = url
        self.model_dir = model_dir
        self.log_path = log_path
        self.port = port

    def alive(self) -> bool:
        return self.process.poll() is None

    def healthy(self) -> bool:
        return self.alive() and health(self.url)

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """Stop the server and everything it started (SIGTERM to its process group, SIGKILL after
        ``timeout_s``); return its exit code. Idempotent."""
        _LIVE.discard(self)
        pgid = self.process.pid  # start_new_session: the server leads its own group
        if self.process.poll() is None:
            _signal_group(pgid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                _signal_group(pgid, signal.SIGKILL)
                self.process.wait()
        # The engine-core child may outlive the leader by a moment; make sure the group is gone.
        deadline = time.monotonic() + 10
        while _signal_group(pgid, 0) and time.monotonic() < deadline:
            time.sleep(0.1)
        _signal_group(pgid, signal.SIGKILL)
        return self.process.returncode

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"ServerHandle(url={self.url!r}, pid={self.process.pid}, alive={self.alive()})"


def _signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to a process group; False when the group no longer exists."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


@atexit.register
def _stop_all() -> None:
    for handle in list(_LIVE):
        handle.stop(timeout_s=10)


def start_server(model_dir: str | Path, *, python: str | None = None, port: int | None = None,
                 host: str = "127.0.0.1", max_model_len: int | None = None, api_key_env: str | None = None,
                 dtype: str | None = None, extra_args: list[str] | tuple[str, ...] = (),
                 log_path: str | Path | None = None, startup_timeout_s: float = 600.0,
                 env: dict[str, str] | None = None) -> ServerHandle:
    """Start ``vllm serve`` for ``model_dir`` with the server venv's Python; return once healthy. ``port`` None picks a
    free port; ``dtype`` None is float32 without a GPU, ``auto`` with one. The server stops with the handle, at exit,
    and (Linux) when the thread that started it dies."""
    handle = launch_server(model_dir, python=python, port=port, host=host, max_model_len=max_model_len,
                           api_key_env=api_key_env, dtype=dtype, extra_args=extra_args, log_path=log_path, env=env)
    wait_healthy([handle], startup_timeout_s)
    return handle


def wait_healthy(handles: list[ServerHandle], timeout_s: float) -> None:
    """Wait until every server answers ``GET /health``; on a server that exits or a timeout, stop them all
    and raise :class:`OctoError` naming the server and its log. Ctrl-C stops them too."""
    try:
        deadline = time.monotonic() + timeout_s
        waiting = list(handles)
        while waiting:
            waiting = [h for h in waiting if not health(h.url)]
            for h in waiting:
                code = h.process.poll()
                if code is not None:
                    last = _last_log_line(h.log_path)
                    raise OctoError(f"octo serve: the vLLM server for {h.model_dir} exited during startup with code "
                                    f"{code}{f' ({last})' if last else ''}; see its log at {h.log_path}")
            if waiting and time.monotonic() > deadline:
                raise OctoError(f"octo serve: the vLLM server for {waiting[0].model_dir} was not healthy after "
                                f"{timeout_s:g} s; see its log at {waiting[0].log_path}")
            if waiting:
                time.sleep(0.5)
    except BaseException:
        for h in handles:
            h.stop(timeout_s=10)
        raise


def launch_server(model_dir: str | Path, *, python: str | None = None, port: int | None = None,
                  host: str = "127.0.0.1", max_model_len: int | None = None, api_key_env: str | None = None,
                  dtype: str | None = None, extra_args: list[str] | tuple[str, ...] = (),
                  log_path: str | Path | None = None, env: dict[str, str] | None = None) -> ServerHandle:
    """Start the server process of :func:`start_server` and return at once (see :func:`wait_healthy`),
    so that several servers load side by side. Call it from a thread that lives as long as the server
    should: on Linux the server gets SIGTERM when that thread ends."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise OctoError(f"octo serve: model directory {model_dir} does not exist; pass a checkpoint directory "
                        f"such as runs/NAME/cpt/stable/checkpoints/step-N")
    if not (model_dir / "config.json").is_file():
        raise OctoError(f"octo serve: {model_dir} has no config.json, so it is not a model checkpoint; pass a "
                        f"checkpoint directory such as runs/NAME/cpt/stable/checkpoints/step-N")
    python = resolve_python(python)
    if port is None:
        port = free_port(host)
    elif _port_in_use(host, port):
        raise OctoError(f"octo serve: port {port} on {host} is already in use; pick another with --port")
    gpu = has_gpu()
    server_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VLLM_API_KEY")}
    server_env["VLLM_SERVER_DEV_MODE"] = "1"
    server_env.setdefault("HF_HUB_OFFLINE", "1")
    server_env.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not gpu:
        server_env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    if api_key_env:
        from octo.rollout.vllm_server import read_api_key

        server_env["VLLM_API_KEY"] = read_api_key(api_key_env)
    server_env.update(env or {})
    cmd = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir.resolve()),
           "--host", host, "--port", str(port), "--dtype", dtype or ("auto" if gpu else "float32"),
           "--logprobs-mode", "processed_logprobs", "--generation-config", "vllm"]
    if not gpu:
        # No chunked prefill on CPU: vLLM's CPU worker crashes ("CPU Generator does not use
        # offset") when it rewinds the generator of a seeded request whose prefill was split
        # over steps, and every probe rollout is seeded. Whole prompts per step avoid that path.
        cmd += ["--enforce-eager", "--no-enable-chunked-prefill"]
    if max_model_len is not None:
        cmd += ["--max-model-len", str(max_model_len)]
    cmd += list(extra_args)

    if log_path is None:
        fd, name = tempfile.mkstemp(prefix=f"octo-vllm-{port}-", suffix=".log")
        os.close(fd)
        log_path = name
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    url = f"http://{_url_host(host)}:{port}"
    with open(log_path, "ab") as log_file:
        # under a guard that leads the server's group and takes the parent-death signal itself: when octo dies,
        # even mid-load, the api_server and its engine-core process go with it (octo.procs.guarded)
        process = subprocess.Popen(guarded(cmd, os.getpid()), stdin=subprocess.DEVNULL, stdout=log_file,
                                   stderr=subprocess.STDOUT, env=server_env, start_new_session=True)
    handle = ServerHandle(process, url=url, model_dir=model_dir, log_path=log_path, port=port)
    _LIVE.add(handle)
    return handle


# -- CLI ------------------------------------------------------------------------------------------

def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="checkpoint directory (config.json, safetensors, tokenizer)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; the weight-sync endpoints are not guarded by the key)")
    p.add_argument("--python", default=None,
                   help=f"Python of the vLLM server venv (default ${PYTHON_ENV}, else ./{DEFAULT_VENV}/bin/python)")
    p.add_argument("--max-model-len", type=int, default=None, help="longest prompt + completion in tokens")
    p.add_argument("--api-key-env", default=None, metavar="VAR",
                   help="environment variable holding the API key clients must send")
    p.add_argument("--dtype", default=None, help="weight dtype (default: float32 without a GPU, auto with one)")
    p.add_argument("--log", default=None, help="file for the server's output (default: a temporary file)")
    p.add_argument("--startup-timeout", type=float, default=600.0, help="seconds to wait for health (default 600)")
    p.add_argument("--vllm-arg", action="append", default=[], metavar="ARG", dest="vllm_args",
                   help="one more argument for vLLM's api_server, repeatable "
                        "(e.g. --vllm-arg=--gpu-memory-utilization=0.5)")


def run_serve(args: argparse.Namespace) -> int:
    stop = threading.Event()

    def on_term(signum, frame):
        if not stop.is_set():
            stop.set()
            raise KeyboardInterrupt  # interrupts a startup wait as Ctrl-C would

    extra = list(args.vllm_args or [])
    previous = signal.signal(signal.SIGTERM, on_term)
    handle = None
    try:
        handle = start_server(args.model, python=args.python, port=args.port, host=args.host,
                              max_model_len=args.max_model_len, api_key_env=args.api_key_env, dtype=args.dtype,
                              extra_args=extra, log_path=args.log, startup_timeout_s=args.startup_timeout)
        print(f"octo serve: vLLM server for {args.model} is healthy at {handle.url} (log: {handle.log_path}); "
              f"Ctrl-C to stop", file=sys.stderr, flush=True)
        print(handle.url, flush=True)
        while not stop.wait(1.0):
            code = handle.process.poll()
            if code is not None:
                raise OctoError(f"octo serve: the vLLM server at {handle.url} exited with code {code}; see its log "
                                f"at {handle.log_path}")
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        if handle is not None:
            code = handle.stop()
            print(f"octo serve: stopped the vLLM server at {handle.url} (exit code {code})", file=sys.stderr,
                  flush=True)
    return 0
