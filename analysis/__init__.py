"""octo.analysis: RL-readiness of mid-training checkpoints from their GRPO probes.

    from octo.analysis import score_run, write_report, compare
    scores = score_run("runs/quickstart")        # scores.json: readiness per checkpoint, CIs, events
    write_report("runs/quickstart")              # report/index.html + report/report.md
    compare(["runs/quickstart"], out="compare")  # Long / Short / Hybrid side by side

Reads run directories only (docs/run-directory.md); never imports the engine or torch. The
public names below load their modules on first use, because ``octo.config`` imports
``octo.analysis.config`` whenever a recipe is read and that must not pull in numpy or matplotlib.
"""

from __future__ import annotations

import importlib

from octo.analysis.config import AnalysisConfig, load_analysis_config

_LAZY = {
    "score_run": "octo.analysis.score",
    "write_report": "octo.analysis.report",
    "compare": "octo.analysis.comparison",
    "mirror_to_wandb": "octo.analysis.wandb_mirror",
    "is_wandb_available": "octo.analysis.wandb_mirror",
    "detect": "octo.analysis.detectors",
    "gate_table": "octo.analysis.gates",
    "load_run": "octo.analysis.load",
    "write_validation": "octo.analysis.validation",
}

__all__ = ["AnalysisConfig", "load_analysis_config", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'octo.analysis' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
