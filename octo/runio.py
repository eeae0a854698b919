"""Plain-file I/O for the run directory (shared/DESIGN.md, "The run directory").

Every stage reads and writes plain files so that any stage can be rerun, resumed or
analysed elsewhere. This module is a leaf (stdlib only): the engine, ``octo.analysis``
and the tests all use it.

- JSONL files hold one JSON object per line. A process killed mid-write can leave a
  truncated last line; readers skip it, and :func:`truncate_jsonl` (called on resume)
  removes it together with the rows after the resumed step.
- :func:`write_json_atomic` writes a temp file, fsyncs and renames, so a reader never
  sees half a file.
"""

from __future__ import annotations

import json
import math
import os
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
SAMPLES_FILE = "samples.jsonl"
PROBE_META_FILE = "probe.json"
STAGE_DONE_FILE = "DONE.json"
CPT_DIR = "cpt"
PROBES_DIR = "probes"
REPORT_DIR = "report"
CHECKPOINTS_DIR = "checkpoints"


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


class JsonlWriter:
    """Append rows to a JSONL file, flushing each row (a kill -9 loses at most one line)."""

    def __init__(self, path: str | os.PathLike, *, mode: str = "a"):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._fh = open(self.path, mode, encoding="utf-8")
        except OSError as err:
            raise OctoError(f"cannot open {self.path} for writing ({err.strerror}); "
                            "check the run directory's permissions and free space") from None

    def write(self, row: dict) -> None:
        try:
            self._fh.write(dumps(row) + "\n")
            self._fh.flush()
        except OSError as err:
            raise OctoError(f"cannot write to {self.path} ({err.strerror}); free space or fix "
                            "permissions, then rerun the same command to resume") from None

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
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


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    return list(iter_jsonl(path))


def truncate_jsonl(path: str | os.PathLike, *, keep_step_le: int | None, key: str = "step") -> int:
    """Keep rows whose ``key`` <= ``keep_step_le`` (all rows if None); drop a partial tail.

    Used on resume: rows written after the checkpoint we resume from are rewritten by the
    resumed run, so the final file equals an uninterrupted run's. Returns rows kept.
    """
    path = Path(path)
    if not path.exists():
        return 0
    rows = [r for r in iter_jsonl(path)
            if keep_step_le is None or r.get(key) is None or r[key] <= keep_step_le]
    write_text_atomic(path, "".join(dumps(r) + "\n" for r in rows))
    return len(rows)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give them the usual permissions
        os.replace(tmp, path)
    except OSError as err:
        raise OctoError(f"cannot write {path} ({err.strerror}); free space or fix permissions, "
                        "then rerun the same command to resume") from None


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
