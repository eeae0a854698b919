"""Console output: one line per stage start/end, a progress bar with ETA for long loops.

Every line goes to stderr. Inside ``octo run`` each line says which part of the run it belongs to
(``[stage 3/5]``, ``[probe 2/4]``: :func:`set_part`) and ends with the ETA of the whole run when the run's
plan gives one (:func:`set_run_eta`, octo.plan).

A progress bar is a tqdm bar in a terminal; it degrades to periodic lines (one every
:data:`LINE_INTERVAL_S` seconds, with the part, step/total, rate and ETA) when stderr is not a terminal,
has no width (``COLUMNS=0``), or line mode is forced (:func:`line_mode`, or ``OCTO_PROGRESS=lines`` in
the environment, which processes spawned afterwards inherit), so that a log file, a narrow terminal and
two probes printing from two worker processes stay readable. Work without steps (a probe's start pass,
an evaluation, gates) runs inside :func:`activity`: a line at least every :data:`LINE_INTERVAL_S`
seconds says it is still going.
"""

from __future__ import annotations

import os
import sys
import threading
import time

_T0 = time.monotonic()
LINE_ENV = "OCTO_PROGRESS"          # "lines": periodic lines instead of bars, in this process and its children
LINE_INTERVAL_S = 9.5               # at least one line every ~10 s while something runs, and no more often
_LOCK = threading.RLock()
_state: dict = {"part": None, "eta": None, "deadline": None, "activity": None, "bar": None,
                "last_line": time.monotonic(), "position": None}
_heartbeat: threading.Thread | None = None


def _now() -> float:
    return time.monotonic()


# --- where the run is -------------------------------------------------------------------------------
def set_part(label: str | None) -> None:
    """The part of the run the next lines belong to, e.g. 'stage 3/5' (None: no part)."""
    _state["part"] = label


def set_run_eta(fn) -> None:
    """``fn()`` -> seconds left in the whole run (or None); its value ends every line (None: no ETA)."""
    _state["eta"] = fn


def set_run_deadline(wall_time: float | None) -> None:
    """A worker process's run ETA: the parent's estimate of the run's end, as ``time.time()`` (None: none)."""
    _state["deadline"] = wall_time


def enter_worker(context: dict) -> None:
    """In a worker process running one part of a run: its part label and run deadline (octo.plan's
    ``RunPlan.worker_context``), and periodic lines, so that the workers' lines interleave readably."""
    global _T0
    line_mode(True)
    set_part(context.get("part"))
    set_run_deadline(context.get("deadline"))
    if context.get("run_started") is not None:  # the command's clock: worker lines count from the run's start
        _T0 = _now() - (time.time() - context["run_started"])


def run_started_wall() -> float:
    """When this process's clock started, as wall time (a worker's lines count from it: ``enter_worker``)."""
    return time.time() - (_now() - _T0)


def run_eta() -> float | None:
    fn, deadline = _state["eta"], _state["deadline"]
    if fn is not None:
        try:
            return fn()
        except Exception:  # noqa: BLE001 - an ETA that cannot be computed must never stop the run
            return None
    if deadline is not None:
        return max(0.0, deadline - time.time())
    return None


def duration(seconds: float) -> str:
    """3s, 45s, 3m10s, 1h02m."""
    s = round(max(0.0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _decorate(message: str) -> str:
    elapsed = _now() - _T0
    part = _state["part"]
    eta = run_eta()
    return (f"[octo {elapsed:7.1f}s] " + (f"[{part}] " if part else "") + message
            + (f"; run ETA {duration(eta)}" if eta is not None else ""))


def _emit(line: str) -> None:
    with _LOCK:
        bar = _state["bar"]
        tq = getattr(bar, "tqdm", None)
        if tq is not None:
            tq.write(line, file=sys.stderr)   # above the live bar, which is drawn again below the line
            sys.stderr.flush()
        else:
            print(line, file=sys.stderr, flush=True)
        _state["last_line"] = _now()


def info(message: str) -> None:
    _emit(_decorate(message))


# --- what an interrupt loses ------------------------------------------------------------------------
def begin_position(part: str, *, step: int, total: int, unit: str = "step") -> None:
    """A part starts (or resumes) at ``step`` of ``total``: the point a rerun would resume from now."""
    _state["position"] = {"part": part, "step": step, "total": total, "saved": step, "t_saved": _now(),
                          "unit": unit}


def note_step(step: int) -> None:
    if _state["position"] is not None:
        _state["position"]["step"] = step


def note_saved(step: int) -> None:
    """A checkpoint of ``step`` is complete: a rerun resumes from it."""
    pos = _state["position"]
    if pos is not None:
        pos["saved"], pos["t_saved"] = step, _now()


def end_position() -> None:
    _state["position"] = None


def interrupt_note() -> str:
    """What a rerun redoes after an interrupt now ('' when no part is in progress): the steps since the
    part's newest checkpoint and the seconds this process spent since it was written (or the part began)."""
    pos = _state["position"]
    if not pos:
        return ""
    lost, secs = max(0, pos["step"] - pos["saved"]), _now() - pos["t_saved"]
    where = f"its checkpoint at {pos['unit']} {pos['saved']}" if pos["saved"] else "its start (no checkpoint yet)"
    if lost == 0 and secs < 1:
        return f"the rerun resumes {pos['part']} from {where}; nothing is redone"
    return (f"the rerun resumes {pos['part']} from {where} and redoes {lost} {pos['unit']}"
            f"{'' if lost == 1 else 's'} of {pos['total']}, about {duration(secs)} of work")


# --- libraries --------------------------------------------------------------------------------------
def quiet_libraries() -> None:
    """Silence library progress bars and chatter; octo prints its own progress."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        pass


# --- bars and lines ---------------------------------------------------------------------------------
def line_mode(force: bool | None = None) -> bool:
    """Whether progress prints periodic lines instead of bars; ``force=True`` switches this process (and the
    processes it spawns afterwards, through ``OCTO_PROGRESS=lines``) to lines."""
    if force:
        os.environ[LINE_ENV] = "lines"
    if os.environ.get(LINE_ENV, "") == "lines":
        return True
    return terminal_width() == 0


def terminal_width() -> int:
    """Columns of the terminal stderr writes to; 0 when it is not a terminal or has no width (COLUMNS=0)."""
    if os.environ.get("COLUMNS", "").strip() == "0":
        return 0
    try:
        if not sys.stderr.isatty():
            return 0
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 0


def end_bars() -> None:
    """Close every open progress bar and end its line, so that a message printed next (an error)
    starts on a line of its own, in a terminal and in a log file alike."""
    _state["bar"] = None
    _state["activity"] = None
    tqdm = sys.modules.get("tqdm")
    instances = list(getattr(getattr(tqdm, "tqdm", None), "_instances", None) or [])
    for inst in instances:
        try:
            inst.close()
        except Exception:  # noqa: BLE001 - a bar that cannot close must not hide the error
            pass
    if instances:
        print(file=sys.stderr, flush=True)


class Bar:
    """Progress of one loop: a tqdm bar in a terminal, periodic lines otherwise (see the module docstring).
    ``n``, ``initial``, ``total`` and :meth:`rate` are what octo.plan's run ETA reads."""

    def __init__(self, total: int, desc: str, initial: int = 0, unit: str = "step", *, lines: bool):
        self.total, self.desc, self.initial, self.n, self.unit = total, desc, initial, initial, unit
        self.t0 = _now()
        self.postfix: dict = {}
        self.tqdm = None
        if not lines:
            from tqdm.auto import tqdm

            self.tqdm = tqdm(total=total, initial=initial, desc=f"  {desc}", unit=unit, leave=False,
                             file=sys.stderr, mininterval=0.5, dynamic_ncols=True)
        _state["bar"] = self
        _start_heartbeat()

    def rate(self) -> float | None:
        """Steps per second in this process (None before the first step)."""
        done, dt = self.n - self.initial, _now() - self.t0
        return done / dt if done > 0 and dt > 0 else None

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.tqdm is not None:
            self.tqdm.update(n)
        elif _now() - _state["last_line"] >= LINE_INTERVAL_S:
            _emit(_decorate(self.line()))

    def set_postfix(self, refresh: bool = False, **kw) -> None:
        self.postfix = kw
        if self.tqdm is not None:
            self.tqdm.set_postfix(refresh=refresh, **kw)

    def line(self) -> str:
        rate = self.rate()
        pct = 100.0 * self.n / self.total if self.total else 100.0
        text = f"{self.desc}: {self.unit} {self.n}/{self.total} ({pct:.0f}%)"
        if rate:
            text += (f", {rate:.2f} {self.unit}/s" if rate >= 1 else f", {1 / rate:.2f} s/{self.unit}")
            text += f", ETA {duration((self.total - self.n) / rate)}"
        if self.postfix:
            text += "; " + " ".join(f"{k}={v}" for k, v in self.postfix.items())
        return text

    def close(self) -> None:
        if self.tqdm is not None:
            self.tqdm.close()
            self.tqdm = None
        if _state["bar"] is self:
            _state["bar"] = None


class _NoBar:
    """The bar of a rank other than 0, which trains silently."""

    n = initial = total = 0

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, refresh: bool = False, **kw) -> None:
        pass

    def rate(self) -> None:
        return None

    def close(self) -> None:
        pass


def bar(total: int, desc: str, initial: int = 0, unit: str = "step", *, disable: bool = False):
    """A progress bar on stderr; ``disable``: one that shows nothing (the ranks other than 0 train silently)."""
    quiet_libraries()
    if disable:
        return _NoBar()
    return Bar(total, desc, initial, unit, lines=line_mode())


def current_bar() -> Bar | None:
    return _state["bar"]


class activity:
    """``with progress.activity("held-out evaluation at step 20"):`` work without steps; while it runs, a line
    at least every LINE_INTERVAL_S seconds says what it is and how long it has taken."""

    def __init__(self, label: str):
        self.label = label

    def __enter__(self):
        self.outer = _state["activity"]
        _state["activity"] = (self.label, _now())
        _start_heartbeat()
        return self

    def __exit__(self, *exc) -> None:
        _state["activity"] = self.outer


def _beat() -> str | None:
    """The line the heartbeat prints now, if one is due."""
    if _now() - _state["last_line"] < LINE_INTERVAL_S:
        return None
    act, bar_ = _state["activity"], _state["bar"]
    if act is not None:
        label, t0 = act
        if _now() - t0 < 1.0:       # just begun: its first line comes a moment later, with a duration
            return None
        return _decorate(f"{label}: running for {duration(_now() - t0)}")
    if bar_ is not None and bar_.tqdm is None:
        return _decorate(bar_.line())
    return None


def _heartbeat_loop() -> None:
    while True:
        time.sleep(0.25)
        with _LOCK:
            line = _beat()
            if line is not None:
                _emit(line)


def _after_fork() -> None:
    global _LOCK, _heartbeat
    _LOCK, _heartbeat = threading.RLock(), None   # a lock held by the parent's heartbeat is never released here


os.register_at_fork(after_in_child=_after_fork)


def _start_heartbeat() -> None:
    global _heartbeat
    with _LOCK:
        if _heartbeat is None or not _heartbeat.is_alive():
            _heartbeat = threading.Thread(target=_heartbeat_loop, name="octo-progress", daemon=True)
            _heartbeat.start()
