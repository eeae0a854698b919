"""A verifier worker process: ``python -m octo.verifiers.worker CONFIG_JSON``.

Started by :class:`~octo.verifiers.pool.VerifierPool`; not a user command. Messages are pickled dicts
preceded by their length (4 bytes, big-endian), so any Python string arrives unchanged: requests
``{"i", "g", "c", "t"}`` on stdin, results ``{"i", "r"}`` from :func:`~octo.verifiers.check.check_item`
run on the main thread (where the timer's signal works). The first message, ``{"ready": True, "pid"}``,
comes after math-verify is imported, so import time never counts against an item. fd 1 points at
stderr so that a printing library cannot corrupt the protocol; the process limits its address space
(``worker_memory_mb``) and dies with the pool thread that started it.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from typing import TYPE_CHECKING

from octo.procs import die_with_parent as _die_with_parent  # SIGKILL when the pool's thread ends

if TYPE_CHECKING:
    from octo.verifiers.pool import _Job


def _limit_memory(mb: int) -> None:
    if mb <= 0:
        return
    try:
        import resource

        limit = mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):
        pass


_WARM_UP = [
    ("x^2+1", "\\boxed{1+x^2}"),
    ("\\frac{\\sqrt{2}}{2}", "\\boxed{\\frac{1}{\\sqrt{2}}}"),
    ("(1,\\infty)", "\\boxed{[1, \\infty)}"),
    ("\\{1,2\\}", "\\boxed{\\{2,1\\}}"),
    ("\\pi", "\\boxed{3.14159265}"),
]


def main(argv: list[str]) -> int:
    from octo.schema import from_dict
    from octo.verifiers.check import _math_verify, check_item, error_result
    from octo.verifiers.config import VerifierConfig

    config = from_dict(VerifierConfig, json.loads(argv[1]))
    parent_pid = int(argv[2]) if len(argv) > 2 else os.getppid()
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    _die_with_parent(parent_pid)
    _limit_memory(config.worker_memory_mb)
    _math_verify()
    for gold, completion in _WARM_UP:  # load sympy's lazy parts now, not during the first items
        check_item(gold, completion, config)

    def send(obj: dict) -> None:
        out.write(frame(obj))

    send({"ready": True, "pid": os.getpid()})
    inp = sys.stdin.buffer
    while True:
        head = inp.read(4)
        if len(head) < 4:
            return 0  # the pool closed our input: done
        body = inp.read(int.from_bytes(head, "big"))
        req = pickle.loads(body)
        try:
            result = check_item(req["g"], req["c"], config, req.get("t"))
        except BaseException as err:  # noqa: BLE001 - report and keep serving (MemoryError, stray timer)
            if isinstance(err, (KeyboardInterrupt, SystemExit)):
                raise
            result = error_result(None, err)
        send({"i": req["i"], "r": result.to_dict()})


def frame(obj: dict) -> bytes:
    """One message on a worker pipe: 4-byte big-endian length, then the pickle."""
    body = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return len(body).to_bytes(4, "big") + body


class WorkerProcess:
    """The pool's end of one worker process: starts it, sends items, reads results, kills it."""

    def __init__(self, config_json: str):
        env = dict(os.environ)
        # the child must import octo exactly as this process does (editable installs, test roots)
        paths = [p for p in sys.path if p and os.path.isdir(p)]
        env["PYTHONPATH"] = os.pathsep.join(paths + [env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env.setdefault("OMP_NUM_THREADS", "1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "octo.verifiers.worker", config_json, str(os.getpid())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0, close_fds=True, env=env)
        self.fd = self.proc.stdout.fileno()
        os.set_blocking(self.fd, False)
        self.buf = bytearray()
        self.ready = False
        self.pid: int | None = None
        self.born = time.monotonic()
        self.job: _Job | None = None
        self.deadline = 0.0
        self.last_gold: str | None = None

    def send(self, job: _Job, deadline: float) -> None:
        msg = {"i": job.id, "g": job.gold, "c": job.completion, "t": job.task}
        self.job, self.deadline, self.last_gold = job, deadline, job.gold
        self.proc.stdin.write(frame(msg))
        self.proc.stdin.flush()

    def read(self) -> list[dict] | None:
        """Complete messages waiting on the pipe; None at end of file (the worker is gone)."""
        try:
            chunk = os.read(self.fd, 1 << 20)
        except BlockingIOError:
            return []
        if not chunk:
            return None
        self.buf += chunk
        msgs = []
        while len(self.buf) >= 4:
            size = int.from_bytes(self.buf[:4], "big")
            if len(self.buf) < 4 + size:
                break
            msgs.append(pickle.loads(bytes(self.buf[4:4 + size])))
            del self.buf[:4 + size]
        return msgs

    def kill(self) -> int | None:
        try:
            self.proc.kill()
        except OSError:
            pass
        return self._reap()

    def close_input(self) -> None:
        try:
            self.proc.stdin.close()  # end of input: the worker finishes and exits
        except OSError:
            pass

    def stop(self) -> None:
        self.close_input()
        try:
            self.proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            self.kill()
        self._close_pipes()

    def _reap(self) -> int | None:
        try:
            code = self.proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            code = None
        self._close_pipes()
        return code

    def _close_pipes(self) -> None:
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except (BrokenPipeError, KeyboardInterrupt):
        sys.exit(0)
