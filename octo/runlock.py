"""One writer per run directory: ``<run_dir>/.lock``.

A second process writing the same run directory would interleave rows and race on checkpoints, so
:class:`RunLock` stops it at once with one line naming the holder; :class:`~octo.context.RunContext`
takes it in ``prepare()``. Commands that only read a run directory never take it.

- An ``flock(LOCK_EX | LOCK_NB)`` on a descriptor kept open for the process's life: the kernel drops
  it when the process dies, even by SIGKILL, so a stale file is taken over (and stderr says so).
- Re-entrant within one process (the pipeline builds several ``RunContext`` for one directory): a
  registry counts holders; the last release, the end of the ``octo.cli.main`` call, or exit frees it.
- A release unlinks the file while still holding the flock, so a taker checks after locking that the
  path still names the inode it locked, and retries if not.
- Without flock (network filesystems: ENOLCK / EOPNOTSUPP / EINVAL), an ``O_CREAT | O_EXCL`` create;
  a lock from this host whose pid is gone or reused (``/proc/<pid>/stat`` field 22) is stale, one from
  another host is refused. Best effort: two simultaneous takeovers of one stale file may both win.
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from octo import progress
from octo.errors import OctoError

LOCK_FILE = ".lock"

# resolved run directory -> [RunLock, number of holders in this process]
_HELD: dict[Path, list[Any]] = {}

_NO_FLOCK = (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP))


def proc_start(pid: int) -> int | None:
    """Start time of ``pid`` (``/proc/<pid>/stat`` field 22), so a reused pid is not taken for the holder."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:  # the command name (field 2) may hold spaces and parentheses: split after its last ')'
        return int(text[text.rindex(")") + 2:].split()[19])
    except (ValueError, IndexError):
        return None


def pid_alive(pid: int, start: int | None = None) -> bool:
    """True when ``pid`` runs on this host (and, if ``start`` is known, is the same process)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    if start is not None:
        now = proc_start(pid)
        if now is not None and now != start:
            return False  # the pid was reused by another process
    return True


def _command() -> str:
    argv = list(sys.argv)
    if argv and (argv[0].endswith(os.path.join("octo", "cli.py")) or os.path.basename(argv[0]) == "octo"):
        argv[0] = "octo"
    text = " ".join(argv) or "python"
    return text if len(text) <= 200 else text[:197] + "..."


def _describe(info: dict) -> str:
    pid = info.get("pid", "?")
    host = info.get("host", "?")
    command = info.get("command") or "?"
    since = info.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if isinstance(since, (int, float)) else "?"
    return f"pid {pid} on {host} ({command}, since {when})"


def _read_info(path: Path) -> dict:
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


class RunLock:
    """The exclusive write lock of one run directory (see the module docstring)."""

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._fd: int | None = None
        self._owner: int | None = None  # pid that took the lock; a forked child shares the fd, not the lock
        self.mode: str | None = None   # "flock" or "excl" (the NFS fallback) once held
        self.info: dict = {}

    # --- public -------------------------------------------------------------------------
    @classmethod
    def acquire_dir(cls, run_dir: str | os.PathLike) -> RunLock:
        """The lock of ``run_dir``, taken now or shared with an earlier holder in this process."""
        key = Path(run_dir).resolve()
        entry = _HELD.get(key)
        if entry is not None:
            entry[1] += 1
            return entry[0]
        lock = cls(run_dir)
        lock._acquire()
        _HELD[key] = [lock, 1]
        return lock

    @property
    def held(self) -> bool:
        return self.mode is not None

    def release(self) -> None:
        """Drop one holder; the last one unlocks and removes the lock file."""
        key = self.run_dir.resolve()
        entry = _HELD.get(key)
        if entry is not None and entry[0] is self:
            entry[1] -= 1
            if entry[1] > 0:
                return
            del _HELD[key]
        self._unlock()

    # --- acquisition --------------------------------------------------------------------
    def _record(self) -> dict:
        pid = os.getpid()
        return {"pid": pid, "host": socket.gethostname(), "started": time.time(), "command": _command(),
                "proc_start": proc_start(pid)}

    def _flock_supported(self) -> bool:
        """Probe flock on the directory itself, so the fallback never finds a lock file we just created."""
        fd = os.open(self.run_dir, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except BlockingIOError:
            return True
        except OSError as err:
            if err.errno in _NO_FLOCK:
                return False
            raise
        finally:
            os.close(fd)
        return True

    def _acquire(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not self._flock_supported():
            self._acquire_excl()
            return
        for _ in range(20):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as err:
                raise OctoError(f"cannot create the lock file {self.path} ({err.strerror}); check the "
                                "run directory's permissions") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                self._refuse(_read_info(self.path), held_by_flock=True)
            except OSError as err:
                os.close(fd)
                raise OctoError(f"cannot lock {self.path} ({err.strerror})") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the previous holder removed the file between our open and our flock
                os.close(fd)
                continue
            old = _read_info(self.path)
            self._fd, self.mode, self._owner = fd, "flock", os.getpid()
            self._write_info(fd)
            if old.get("pid") is not None:
                progress.info(f"run directory {self.run_dir}: taking over the lock left by "
                              f"{_describe(old)}, which ended without releasing it")
            return
        raise OctoError(f"cannot lock {self.path}: it keeps being replaced; is another octo process "
                        "starting in the same run directory?")

    def _acquire_excl(self) -> None:
        """The fallback for filesystems without flock: create-exclusive plus a liveness check."""
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            except FileExistsError:
                old = _read_info(self.path)
                if not self._stale(old):
                    self._refuse(old, held_by_flock=False)
                # move the stale file aside atomically, so only one taker removes it
                aside = self.path.with_name(f"{LOCK_FILE}.stale.{os.getpid()}")
                try:
                    os.replace(self.path, aside)
                    aside.unlink(missing_ok=True)
                except FileNotFoundError:
                    pass
                progress.info(f"run directory {self.run_dir}: taking over the stale lock of "
                              f"{_describe(old)}, which is no longer running")
                continue
            except OSError as err:
                raise OctoError(f"cannot create the lock file {self.path} ({err.strerror})") from None
            self._fd, self.mode, self._owner = fd, "excl", os.getpid()
            self._write_info(fd)
            return
        raise OctoError(f"cannot lock {self.path}: it keeps being replaced; is another octo process "
                        "starting in the same run directory?")

    @staticmethod
    def _stale(info: dict) -> bool:
        if not info:
            return False  # unreadable or being written: treat as held (refuse, say how to clear)
        if info.get("host") != socket.gethostname():
            return False  # cannot see another host's processes
        pid = info.get("pid")
        if not isinstance(pid, int):
            return False
        start = info.get("proc_start")
        return not pid_alive(pid, start if isinstance(start, int) else None)

    def _write_info(self, fd: int) -> None:
        self.info = self._record()
        data = (json.dumps(self.info) + "\n").encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        try:
            os.fsync(fd)
        except OSError:
            pass

    def _refuse(self, info: dict, *, held_by_flock: bool) -> None:
        who = _describe(info) if info.get("pid") is not None else "another process"
        hint = "wait for it to finish or stop it, or pass another --run-dir"
        if held_by_flock and info.get("host") == socket.gethostname() and isinstance(info.get("pid"), int) \
                and not pid_alive(info["pid"], info.get("proc_start")):
            hint = ("that process is gone but a child it started still holds the lock; stop the child, "
                    "or pass another --run-dir")
        elif not held_by_flock:
            hint += f"; if that process no longer runs, delete {self.path}"
        raise OctoError(f"run directory {self.run_dir} is in use by {who}; one writer per run directory: {hint}")

    def _unlock(self) -> None:
        if self._fd is None or self._owner != os.getpid():
            return  # never held, or a forked child exiting: the flock is shared with the parent; leave it
        try:
            self.path.unlink(missing_ok=True)  # still locked: a waiting taker will see the inode change
        except OSError:
            pass
        try:
            if self.mode == "flock":
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        except OSError:
            pass
        os.close(self._fd)
        self._fd, self.mode = None, None


def held_locks() -> list[Path]:
    """Run directories this process holds the lock of (for tests and diagnostics)."""
    return list(_HELD)


def release_new(before: list[Path]) -> None:
    """Release the locks taken since ``held_locks()`` returned ``before`` (the CLI, when a command ends)."""
    for key in [k for k in _HELD if k not in before]:
        lock, _ = _HELD.pop(key)
        lock._unlock()


@atexit.register
def _release_all() -> None:
    """A clean exit removes the lock files; a killed process leaves them for the next one to take over."""
    for lock, _ in list(_HELD.values()):
        lock._unlock()
    _HELD.clear()
