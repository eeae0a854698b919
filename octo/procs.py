"""Child processes that die with their parent (stdlib only, so every part of octo may import it).

Linux's ``prctl(PR_SET_PDEATHSIG, sig)`` makes the kernel send ``sig`` to a process when the
*thread* that forked it ends (normally or by SIGKILL). octo sets it in every long-lived child it
starts (verifier workers, vLLM servers), so none is orphaned when octo is killed with no chance to
clean up. Elsewhere it is a no-op.
"""

from __future__ import annotations

import os
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int | None = None, sig: int = signal.SIGKILL) -> None:
    """In the child (``preexec_fn`` or a worker's start): get ``sig`` when the parent thread dies. With ``parent_pid``
    (read before the fork), a parent already gone makes the child exit at once."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(0)  # the parent is gone already; os._exit is also safe in a preexec_fn


# -- a guard for a process tree --------------------------------------------------------------------
# The parent-death signal reaches only the direct child. A vLLM server starts an engine-core process, and while
# it loads it may outlive a SIGTERM; so octo starts it under a guard (``guarded``): a small process that leads
# the server's process group, gets the parent-death signal itself, and then ends the whole group: SIGTERM,
# and SIGKILL to whatever is left after a grace period. Linux only (it reads /proc); elsewhere the command runs
# as it is.

GRACE_S = 10.0


def guarded(cmd: list[str], parent_pid: int) -> list[str]:
    """``cmd`` run under a guard that ends its whole process tree when ``parent_pid`` dies or the guard is
    signalled; start it with ``start_new_session=True`` so that the guard leads the group."""
    import sys

    if not sys.platform.startswith("linux"):
        return list(cmd)
    # the file as an isolated script (stdlib only): the guard needs no octo on the server's sys.path
    return [sys.executable, "-I", os.path.abspath(__file__), str(parent_pid), "--", *cmd]


def group_members(pgid: int) -> list[int]:
    """Live processes of process group ``pgid`` but the caller (zombies left out), from /proc."""
    members = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(name))
    return members


def _end_group(grace_s: float) -> None:
    """SIGTERM to every other process of the caller's group, SIGKILL to those left after ``grace_s``."""
    import time

    pgid = os.getpgid(0)
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        members = group_members(pgid)
        for pid in members:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + wait
        while members and time.monotonic() < deadline:
            time.sleep(0.1)
            members = group_members(pgid)
        if not members:
            return


def _guard(parent_pid: int, cmd: list[str], grace_s: float = GRACE_S) -> int:
    import subprocess
    import time

    die_with_parent(parent_pid, signal.SIGTERM)
    told: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: told.append(signum))
    child = subprocess.Popen(cmd)
    while child.poll() is None and not told:
        time.sleep(0.1)
    _end_group(grace_s)   # the command ended or the guard was told to stop: nothing of its tree stays
    code = child.wait()
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    import sys

    args = sys.argv[1:]
    if len(args) < 3 or args[1] != "--" or not args[0].isdigit():
        sys.exit("usage: python -I octo/procs.py PARENT_PID -- COMMAND [ARG...]")
    sys.exit(_guard(int(args[0]), args[2:]))
