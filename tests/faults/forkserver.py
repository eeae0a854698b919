"""A fork server for fault trials: runs ``octo`` commands in forked children of one warm process.

Starting ``octo`` costs seconds of imports (torch, transformers, TRL) before it does any work; the kill
trials start dozens of commands, so they fork them from a process that has imported everything once.
A child runs exactly what the ``octo`` entry point runs (``octo.cli.main(argv)``), with its own
stdout/stderr files, and is killed with SIGKILL like any process.

The server is single-threaded (forking a process with threads is unsafe) and speaks JSON lines:

    stdin   {"id": N, "argv": [...], "cwd": DIR, "log": FILE}   start a command
            {"kill": PID}                                        SIGKILL it (if it is still running)
    stdout  {"id": N, "pid": PID}                                started
            {"pid": PID, "rc": CODE}                             ended (-9 when killed)

The client (:class:`ForkServer`) is thread-safe, so trials can run side by side.
"""

from __future__ import annotations

import importlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _child(req: dict) -> None:
    code = 1
    try:
        os.chdir(req["cwd"])
        fd = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        os.close(null)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.argv = ["octo", *req["argv"]]
        from octo import progress
        from octo.cli import main

        progress._T0 = progress.time.monotonic()  # log times from the command's start, not the server's
        code = main(req["argv"])
    except SystemExit as err:
        code = err.code if isinstance(err.code, int) else 1
    except BaseException:  # noqa: BLE001 - report anything, like the interpreter would
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def serve() -> None:  # pragma: no cover - runs in the server process
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # everything the commands import, imported once (imports only: no thread pools started before a fork)
    for name in ("datasets", "torch", "transformers", "trl", "octo.analysis", "octo.cli", "octo.cpt.cli",
                 "octo.cpt.trainer", "octo.pipeline", "octo.probe.cli", "octo.probe.grpo"):
        importlib.import_module(name)
    from trl import GRPOConfig, GRPOTrainer  # noqa: F401 - TRL imports its trainers lazily

    live: set[int] = set()
    buf = b""
    out = sys.stdout

    def send(obj: dict) -> None:
        out.write(json.dumps(obj) + "\n")
        out.flush()

    send({"ready": True})
    stdin_open = True
    while stdin_open or live:
        ready, _, _ = select.select([0] if stdin_open else [], [], [], 0.02)
        if ready:
            data = os.read(0, 65536)
            if not data:
                stdin_open = False
                for pid in live:
                    os.kill(pid, signal.SIGKILL)
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                req = json.loads(line)
                if "kill" in req:
                    if req["kill"] in live:  # only a child not yet reaped: its pid cannot have been reused
                        os.kill(req["kill"], signal.SIGKILL)
                    continue
                pid = os.fork()
                if pid == 0:
                    _child(req)
                live.add(pid)
                send({"id": req["id"], "pid": pid})
        while live:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            live.discard(pid)
            send({"pid": pid, "rc": os.waitstatus_to_exitcode(status)})


class Child:
    def __init__(self, server: ForkServer, pid: int, log: Path):
        self.server, self.pid, self.log = server, pid, log
        self.ended = threading.Event()
        self.rc: int | None = None

    def poll(self) -> int | None:
        return self.rc if self.ended.is_set() else None

    def kill(self) -> None:
        self.server._send({"kill": self.pid})

    def wait(self, timeout: float | None = None) -> int:
        if not self.ended.wait(timeout):
            raise TimeoutError(f"octo child {self.pid} still running after {timeout}s; log {self.log}")
        return self.rc

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class ForkServer:
    """Client side: ``start(argv, log=...)`` returns a :class:`Child`."""

    def __init__(self, env: dict):
        self.proc = subprocess.Popen([sys.executable, "-c", "from tests.faults.forkserver import serve; serve()"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=str(REPO), env=env)
        self._lock = threading.Lock()
        self._next = 0
        self._started: dict[int, threading.Event] = {}
        self._pids: dict[int, int] = {}
        self._children: dict[int, Child] = {}
        self._early: dict[int, int] = {}
        ready = self.proc.stdout.readline()
        if not ready:
            raise RuntimeError("the fork server did not start")
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _send(self, obj: dict) -> None:
        with self._lock:
            self.proc.stdin.write((json.dumps(obj) + "\n").encode())
            self.proc.stdin.flush()

    def _read(self) -> None:
        for line in self.proc.stdout:
            msg = json.loads(line)
            with self._lock:
                if "id" in msg:
                    self._pids[msg["id"]] = msg["pid"]
                    self._started[msg["id"]].set()
                else:
                    child = self._children.get(msg["pid"])
                    if child is None:
                        self._early[msg["pid"]] = msg["rc"]
                    else:
                        child.rc = msg["rc"]
                        child.ended.set()

    def start(self, argv: list[str], *, log: Path, cwd: Path = REPO) -> Child:
        with self._lock:
            rid = self._next
            self._next += 1
            self._started[rid] = threading.Event()
        self._send({"id": rid, "argv": [str(a) for a in argv], "cwd": str(cwd), "log": str(log)})
        if not self._started[rid].wait(60):
            raise RuntimeError("the fork server did not answer")
        with self._lock:
            pid = self._pids.pop(rid)
            child = Child(self, pid, Path(log))
            self._children[pid] = child
            if pid in self._early:  # ended before we registered it
                child.rc = self._early.pop(pid)
                child.ended.set()
        return child

    def close(self) -> None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
