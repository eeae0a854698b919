"""Console output: one line per stage start/end, a progress bar with ETA for long loops."""

from __future__ import annotations

import sys
import time

_T0 = time.monotonic()


def info(message: str) -> None:
    elapsed = time.monotonic() - _T0
    print(f"[octo {elapsed:7.1f}s] {message}", file=sys.stderr, flush=True)


def quiet_libraries() -> None:
    """Silence library progress bars and chatter; octo prints its own progress."""
    import os

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        pass


def end_bars() -> None:
    """Close every open progress bar and end its line, so that a message printed next (an error)
    starts on a line of its own, in a terminal and in a log file alike."""
    tqdm = sys.modules.get("tqdm")
    instances = list(getattr(getattr(tqdm, "tqdm", None), "_instances", None) or [])
    for inst in instances:
        try:
            inst.close()
        except Exception:  # noqa: BLE001 - a bar that cannot close must not hide the error
            pass
    if instances:
        print(file=sys.stderr, flush=True)


def bar(total: int, desc: str, initial: int = 0, unit: str = "step", *, disable: bool = False):
    """A progress bar on stderr; ``disable``: one that shows nothing (the ranks other than 0 train silently)."""
    from tqdm.auto import tqdm

    quiet_libraries()
    interactive = sys.stderr.isatty()
    return tqdm(total=total, initial=initial, desc=f"  {desc}", unit=unit, leave=False, file=sys.stderr,
                mininterval=0.5 if interactive else 15.0, dynamic_ncols=True, disable=disable)
