"""Read a run directory (docs/run-directory.md) into plain objects; the only I/O of octo.analysis.

    run = load_run("runs/quickstart")
    for probe in run.probes: print(probe.probe_id, len(probe.metrics), len(probe.evals))

Rows keep their JSONL keys. Values that are not finite numbers (``null``, strings, lists where a
number belongs) read as missing; a damaged file or one that cannot be read raises ``OctoError``.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from octo.errors import OctoError
from octo.runio import (CPT_DIR, EVALS_FILE, GATES_FILE, METRICS_FILE, PROBE_META_FILE, PROBES_DIR, RECIPE_FILE,
                        STAGE_DONE_FILE, START_FILE, parse_probe_id, read_json, read_jsonl)


@dataclass
class Probe:
    """One probe directory: what was probed (probe.json) and its logs."""

    path: Path
    probe_id: str
    checkpoint_id: str
    stage: str | None
    seed: int | None
    control: str | None
    meta: dict
    metrics: list[dict]          # one row per GRPO step, sorted by step
    evals: list[dict]            # held-out evaluations, sorted by step
    complete: bool               # DONE.json exists
    start: list[dict] = field(default_factory=list)   # start.jsonl: the step-0 sampling pass, one row per set


@dataclass
class Stage:
    """One mid-training stage directory."""

    name: str
    path: Path
    metrics: list[dict]
    gates: list[dict]
    done: dict | None
    init: str | None = None      # the stage it starts from (recipe), when known


@dataclass
class Run:
    path: Path
    name: str
    recipe: dict | None
    probes: list[Probe] = field(default_factory=list)
    stages: dict[str, Stage] = field(default_factory=dict)
    skipped: list[dict] = field(default_factory=list)   # {"probe_id", "reason"} for unusable probe dirs


def num(value: Any) -> float | None:
    """A finite float, or None for null / non-numbers (bools are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if value == value and value not in (float("inf"), float("-inf")) else None


@contextmanager
def _reading(path: Path):
    try:
        yield
    except OSError as err:
        raise OctoError(f"cannot read {path} ({err.strerror}); fix its permissions and rerun") from None
    except UnicodeDecodeError:
        raise OctoError(f"{path} is not UTF-8 text; the file is damaged, rerun the stage that wrote it") from None


def _rows(path: Path) -> list[dict]:
    with _reading(path):
        rows = read_jsonl(path)
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise OctoError(f"{path} row {i + 1} is not a JSON object; the file is damaged, rerun the stage "
                            "that wrote it")
    return rows


def _json(path: Path) -> Any:
    with _reading(path):
        return read_json(path)


def _by_step(rows: list[dict]) -> list[dict]:
    """Rows with a numeric step, sorted; a repeated step keeps its last row (a resumed writer)."""
    out: dict[float, dict] = {}
    for row in rows:
        step = num(row.get("step"))
        if step is not None:
            out[step] = row
    return [out[s] for s in sorted(out)]


def is_probe_dir(path: Path) -> bool:
    return (path / EVALS_FILE).exists() or (path / METRICS_FILE).exists() and (path / PROBE_META_FILE).exists()


def load_probe(path: str | Path) -> Probe:
    """A probe directory; raises OctoError if it is missing or has neither evals nor metrics."""
    path = Path(path)
    if not path.is_dir():
        raise OctoError(f"probe directory {path} does not exist; pass runs/<name>/probes/<probe-id>")
    if not is_probe_dir(path):
        raise OctoError(f"{path} is not a probe directory (no {EVALS_FILE} or {METRICS_FILE}); pass "
                        "runs/<name>/probes/<probe-id> or a run directory")
    meta_path = path / PROBE_META_FILE
    meta = _json(meta_path) if meta_path.exists() else {}
    if not isinstance(meta, dict):
        raise OctoError(f"{meta_path} is not a JSON object; the file is damaged, rerun the probe")
    probe_id = str(meta.get("probe_id") or path.name)
    parsed = parse_probe_id(probe_id)
    seed = meta.get("seed", parsed["seed"])
    control = meta.get("control", parsed["control"])
    return Probe(
        path=path, probe_id=probe_id,
        checkpoint_id=str(meta.get("checkpoint_id") or parsed["checkpoint_id"]),
        stage=meta.get("stage") or parsed["stage"],
        seed=int(seed) if isinstance(seed, int) and not isinstance(seed, bool) else None,
        control=str(control) if control not in (None, "none", "") else None,
        meta=meta, metrics=_by_step(_rows(path / METRICS_FILE)), evals=_by_step(_rows(path / EVALS_FILE)),
        complete=(path / STAGE_DONE_FILE).exists(),
        start=_rows(path / START_FILE) if (path / START_FILE).exists() else [],
    )


def _load_recipe(path: Path) -> dict | None:
    file = path / RECIPE_FILE
    if not file.exists():
        return None
    from octo.schema import read_recipe_file

    try:
        return read_recipe_file(file)
    except OctoError:
        return None   # load_analysis_config reports a broken recipe; the run's files still analyse


def load_stages(path: Path, recipe: dict | None = None) -> dict[str, Stage]:
    stages: dict[str, Stage] = {}
    root = path / CPT_DIR
    if not root.is_dir():
        return stages
    inits = {}
    try:
        inits = {name: s.get("init") for name, s in recipe["cpt"]["stages"].items() if isinstance(s, dict)}
    except (KeyError, TypeError, AttributeError):
        pass
    order = list(inits) + sorted(d.name for d in root.iterdir() if d.is_dir() and d.name not in inits)
    for name in order:
        sdir = root / name
        if not sdir.is_dir():
            continue
        done_path = sdir / STAGE_DONE_FILE
        done = _json(done_path) if done_path.exists() else None
        stages[name] = Stage(name=name, path=sdir, metrics=_by_step(_rows(sdir / METRICS_FILE)),
                             gates=_by_step(_rows(sdir / GATES_FILE)), done=done if isinstance(done, dict) else None,
                             init=inits.get(name))
    return stages


def load_run(run_dir: str | Path, *, require_probes: bool = True) -> Run:
    """Everything octo.analysis reads from a run directory (``require_probes``: at least one evaluated probe)."""
    path = Path(run_dir)
    if not path.exists():
        raise OctoError(f"run directory {path} does not exist; pass the directory `octo run` wrote "
                        "(runs/<name>)")
    if not path.is_dir():
        raise OctoError(f"{path} is not a directory; pass a run directory (runs/<name>)")
    recipe = _load_recipe(path)
    run = Run(path=path, name=path.resolve().name, recipe=recipe)
    run.stages = load_stages(path, recipe)
    pdir = path / PROBES_DIR
    if pdir.is_dir():
        for sub in sorted(pdir.iterdir()):
            if not sub.is_dir():
                continue
            if not is_probe_dir(sub):
                run.skipped.append({"probe_id": sub.name, "reason": f"no {EVALS_FILE} yet"})
                continue
            probe = load_probe(sub)
            if not any(num(e.get("acc")) is not None for e in probe.evals):
                run.skipped.append({"probe_id": probe.probe_id, "reason": "no held-out evaluation with acc yet"})
                continue
            run.probes.append(probe)
    if require_probes and not run.probes:
        what = "no probes/ directory" if not pdir.is_dir() else "no probe with a held-out evaluation"
        raise OctoError(f"run directory {path} has {what}; run `octo run RECIPE` (or `octo probe`) to write "
                        f"{PROBES_DIR}/<probe-id>/{EVALS_FILE} first")
    return run
