"""Plain-file I/O for the run directory (shared/DESIGN.md, "The run directory"); a stdlib-only leaf.

A killed writer can leave a truncated last JSONL line: readers skip it and :func:`truncate_jsonl`
(on resume) removes it. Whole files are written to a temp file, fsynced and renamed.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from octo.errors import OctoError

# Names of files inside a run directory (the contract between stages).
RECIPE_FILE = "recipe.resolved.yaml"
MANIFEST_FILE = "manifest.json"
SCORES_FILE = "scores.json"
METRICS_FILE = "metrics.jsonl"
GATES_FILE = "gates.jsonl"
EVALS_FILE = "evals.jsonl"
START_FILE = "start.jsonl"
SAMPLES_FILE = "samples.jsonl"
PROBE_META_FILE = "probe.json"
STAGE_DONE_FILE = "DONE.json"
CPT_DIR = "cpt"
PROBES_DIR = "probes"
REPORT_DIR = "report"
CHECKPOINTS_DIR = "checkpoints"

# Checkpoint ids (docs/run-directory.md): a stage's checkpoint cpt/<stage>/checkpoints/step-<N> is <stage>.step-<N>;
# a probe of it is <stage>.step-<N>[.seed-<s>][.control-<kind>]. The one reader and writer of both.
STEP_DIR_RE = re.compile(r"^step-(\d+)$")
PROBE_ID_RE = re.compile(r"^(?P<ckpt>(?P<stage>.+)\.step-(?P<step>\d+))(?:\.seed-(?P<seed>-?\d+))?"
                         r"(?:\.control-(?P<control>[A-Za-z0-9_-]+))?$")


def checkpoint_id(stage: str, step: int) -> str:
    return f"{stage}.step-{step}"


def checkpoint_location(path: str | os.PathLike) -> tuple[Path | None, str, int] | None:
    """(run directory, stage, step) of a checkpoint path <stage>/checkpoints/step-<N>, the run directory being the
    one above cpt/ (None when the stage directory is not in a cpt/ folder); None for any other path."""
    path = Path(path).resolve()
    m = STEP_DIR_RE.match(path.name)
    if not (m and path.parent.name == CHECKPOINTS_DIR):
        return None
    stage_dir = path.parent.parent
    return (stage_dir.parent.parent if stage_dir.parent.name == CPT_DIR else None), stage_dir.name, int(m.group(1))


def parse_probe_id(probe_id: str) -> dict:
    """checkpoint_id, stage, seed and control encoded in a probe id (None where absent)."""
    m = PROBE_ID_RE.match(probe_id)
    if not m:
        return {"checkpoint_id": probe_id, "stage": None, "seed": None, "control": None}
    return {"checkpoint_id": m["ckpt"], "stage": m["stage"], "seed": int(m["seed"]) if m["seed"] else None,
            "control": m["control"]}


_UMASK = os.umask(0)
os.umask(_UMASK)


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: write them as null so every reader can parse the row."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return _clean(value.item())
    return value


def dumps(row: Any) -> str:
    return json.dumps(_clean(row), ensure_ascii=False, allow_nan=False)


# errno values of a write that the user can fix, then resume: a full disk or quota, a read-only file
# system, a file or directory without write permission
_FULL = (errno.ENOSPC, errno.EDQUOT)
_DENIED = (errno.EROFS, errno.EACCES, errno.EPERM)
# how libraries quote an errno: Rust's io::Error (safetensors, tokenizers) "os error 28", torch's
# file writer "open file failed because of errno 13 on fopen"
_ERRNO_IN_TEXT = re.compile(r"(?:os error|errno) (\d+)")
# torch's file writer when a write comes up short, with no errno (torch.save into a full disk)
_TORCH_SHORT_WRITE = re.compile(r"inline_container\.cc.*(?:unexpected pos|file write failed)", re.DOTALL)
_LOW_SPACE = 64 << 20


def write_errno(err: BaseException) -> int | None:
    """The errno behind a failed write, in the exception, its text ("os error 28") or its causes."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno is not None:
            return err.errno
        m = _ERRNO_IN_TEXT.search(str(err))
        if m:
            return int(m.group(1))
        err = err.__cause__ or err.__context__
    return None


def write_error(err: BaseException, path: str | os.PathLike, what: str = "write",
                note: str = "") -> OctoError | None:
    """One OctoError for a write that failed on a full disk or an unwritable path; None otherwise (re-raise)."""
    code = write_errno(err)
    if code is None and _TORCH_SHORT_WRITE.search(str(err)) and _free_bytes(path) < _LOW_SPACE:
        code = errno.ENOSPC  # a short write of torch.save on a disk that is (nearly) full
    if code in _FULL:
        advice = "free space and rerun the same command to resume"
    elif code in _DENIED:
        advice = "make it writable and rerun the same command to resume"
    else:
        return None
    return OctoError(f"cannot {what} {path} ({os.strerror(code)}); {note + ': ' if note else ''}{advice}")


def _free_bytes(path: str | os.PathLike) -> int:
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return 1 << 62


def _write_all(fd: int, data: bytes) -> None:
    """Write all of ``data``: ``os.write`` may write part of it (a disk filling up) before it fails."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class JsonlWriter:
    """Append rows to a JSONL file, one unbuffered write per row (a kill -9 loses at most one line). Unbuffered because
    a buffered file whose flush failed (disk full) fails again when closed, and that error would replace the first,
    clear one."""

    def __init__(self, path: str | os.PathLike, *, mode: str = "a"):
        self.path = Path(path)
        self._fd: int | None = None
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode == "a" else os.O_TRUNC)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, flags, 0o666)
        except OSError as err:
            raise (write_error(err, self.path, "open for writing") or err) from None

    def write(self, row: dict) -> None:
        try:
            _write_all(self._fd, (dumps(row) + "\n").encode("utf-8"))
        except OSError as err:
            raise (write_error(err, self.path) or err) from None

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_jsonl(path: str | os.PathLike) -> Iterator[dict]:
    """Rows of a JSONL file; a truncated final line (from a killed writer) is skipped."""
    path = Path(path)
    if not path.exists():
        return
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            if i >= len(lines) - 2:  # only the last non-empty line may be partial
                return
            raise OctoError(f"{path} line {i + 1} is not valid JSON; the file is damaged") from None


def user_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) of every non-blank line of a user's JSONL file; any invalid line is an error."""
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield i, json.loads(line)
            except json.JSONDecodeError:
                raise OctoError(f"{path} line {i} is not valid JSON") from None


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    return list(iter_jsonl(path))


def truncate_jsonl(path: str | os.PathLike, *, keep_step_le: int | None, key: str = "step") -> int:
    """On resume: keep rows whose ``key`` <= ``keep_step_le`` (all if None), drop a partial tail; rows kept."""
    if not Path(path).exists():
        return 0
    rows = [r for r in iter_jsonl(path) if keep_step_le is None or r.get(key) is None or r[key] <= keep_step_le]
    write_jsonl(path, rows)
    return len(rows)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            _write_all(fd, text.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give them the usual permissions
        os.replace(tmp, path)
    except OSError as err:
        if tmp is not None:  # a failed write leaves no temp file behind
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise (write_error(err, path) or err) from None


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(path, json.dumps(_clean(obj), indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise OctoError(f"{path} does not exist") from None
    except json.JSONDecodeError as err:
        raise OctoError(f"{path} is not valid JSON ({err.msg} at line {err.lineno})") from None


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    write_text_atomic(path, "".join(dumps(r) + "\n" for r in rows))
