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
