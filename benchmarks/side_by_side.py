"""``octo probe`` runs started together, one torch thread each (as ``octo validate --jobs 2`` runs them), and the wall
seconds each took: what the benchmarks that compare two settings of the same run in the same run share
(full_run_evals.py, probe_passes.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path


def start_probe(checkpoint: Path, out: Path, recipe: Path, seed: int, sets: list[str]) -> subprocess.Popen:
    """``octo probe CHECKPOINT`` with its run directory in ``out/run``, its results in ``out/probe`` and its log in
    ``out/log``, one torch thread, the recipe overridden by ``sets`` (``--set`` each)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "octo.cli", "probe", str(checkpoint.resolve()), "--recipe", str(recipe.resolve()),
           "--run-dir", str(out / "run"), "--out", str(out / "probe"), "--seed", str(seed)]
    for s in sets:
        cmd += ["--set", s]
    with open(out / "log", "w") as log:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log,
                                cwd=Path(__file__).resolve().parents[1])


def run_side_by_side(runs: dict, what: str = "run") -> dict:
    """Start ``runs`` ({key: (checkpoint, out, recipe, seed, sets)}, each ``out`` an existing empty directory) at once
    and wait for all; returns {key: wall seconds from the common start}. A run that fails stops the others and
    exits with one line naming it and its log."""
    t0 = time.perf_counter()
    procs = {k: start_probe(*spec) for k, spec in runs.items()}
    wall = {}
    while len(wall) < len(procs):
        for k, p in procs.items():
            if k not in wall and p.poll() is not None:
                if p.returncode:
                    for q in procs.values():
                        q.kill()
                    raise SystemExit(f"the {what} {k!r} failed; see {runs[k][1] / 'log'}")
                wall[k] = time.perf_counter() - t0
        time.sleep(0.5)
    return wall
