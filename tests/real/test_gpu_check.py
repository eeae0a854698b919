"""scripts/gpu-check.sh --dry-run: every part of the GPU check runs at toy size on the CPU (the wiring;
the figures themselves come from a GPU run, docs/gpu.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_dry_run_runs_every_part(tmp_path):
    out = tmp_path / "out"
    res = subprocess.run(["bash", str(REPO / "scripts" / "gpu-check.sh"), "--dry-run", "--out", str(out)],
                         capture_output=True, text=True, timeout=1500, env={**os.environ, "PYTHON": sys.executable})
    report = json.loads((out / "gpu-check.json").read_text())
    assert res.returncode == 0 and report["ok"], (res.stderr[-3000:], report)
    parts = report["parts"]
    assert list(parts) == ["env", "matmul", "cpt", "probe", "tests"] and report["dry_run"] is True
    assert parts["env"]["versions"]["trl"] and parts["env"]["cuda_available"] in (True, False)
    for variant in ("packed", "causal"):
        fig = parts["cpt"][variant]
        assert fig["tokens_per_s"] > 0 and fig["params"] == 147_776 and fig["loss"] > 0
    assert parts["probe"]["steps"] == 2 and parts["probe"]["time/train"] > 0
    assert "skipped" in parts["tests"]["summary"] or "passed" in parts["tests"]["summary"]
    assert json.loads(res.stdout) == report


def test_unknown_part_is_refused():
    res = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_check.py"), "--dry-run", "--parts", "cpt,gpus"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "unknown part(s) gpus" in res.stderr
