"""Mirror a run directory to Weights & Biases (off unless asked; offline by default).

    mirror_to_wandb("runs/quickstart")                                # offline, into runs/quickstart/wandb/
    mirror_to_wandb("runs/quickstart", project="octo", mode="online")

One wandb run per CPT stage and per probe, grouped under the run's name, plus one ``scores`` run.
metrics.jsonl rows keep their names; the other file of a directory is prefixed by its name (``eval/acc``,
``gates/ppl/general``), since a wandb run has one namespace; lists stay in the run directory. wandb is
an optional extra: ``pip install 'octo-midtrain[wandb]'``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from octo.analysis.load import load_run, num
from octo.errors import OctoError


def is_wandb_available() -> bool:
    return importlib.util.find_spec("wandb") is not None


def _scalars(row: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in row.items():
        if key == "step":
            continue
        if isinstance(value, bool):
            out[prefix + key] = int(value)
        elif num(value) is not None:
            out[prefix + key] = num(value)
    return out


def _merge(*streams: tuple[list[dict], str]) -> list[tuple[int, dict]]:
    """Rows of several files merged by step (ascending), each file's keys under its prefix."""
    by_step: dict[int, dict] = {}
    for rows, prefix in streams:
        for row in rows:
            step = num(row.get("step"))
            if step is None:
                continue
            by_step.setdefault(int(step), {}).update(_scalars(row, prefix))
    return [(s, by_step[s]) for s in sorted(by_step) if by_step[s]]


def mirror_to_wandb(run_dir: str | Path, project: str = "octo", mode: str = "offline", *,
                    entity: str | None = None, scores: dict | None = None) -> list[str]:
    """Log every stage, probe and the scores of a run to wandb (``mode``: offline, online, disabled); run names."""
    if mode not in ("offline", "online", "disabled"):
        raise OctoError(f"wandb mode must be offline, online or disabled (got {mode!r})")
    if not is_wandb_available():
        raise OctoError("wandb is not installed; install it with pip install 'octo-midtrain[wandb]' "
                        "or leave wandb mirroring off")
    import wandb

    run = load_run(run_dir, require_probes=False)
    if scores is None:
        from octo.analysis.report import ensure_scores

        scores = ensure_scores(run.path) if run.probes else None
    wdir = run.path / "wandb"
    wdir.mkdir(parents=True, exist_ok=True)
    names = []

    def one(name: str, job_type: str, config: dict, rows: list[tuple[int, dict]], summary: dict | None = None,
            tables: dict | None = None) -> None:
        wrun = wandb.init(project=project, entity=entity, mode=mode, dir=str(wdir), name=f"{run.name}/{name}",
                          group=run.name, job_type=job_type, config=config)
        try:
            for step, values in rows:
                wrun.log(values, step=step)
            for key, value in (summary or {}).items():
                wrun.summary[key] = value
            for key, (columns, data) in (tables or {}).items():
                wrun.log({key: wandb.Table(columns=columns, data=data)})
        finally:
            wrun.finish()
        names.append(f"{run.name}/{name}")

    for stage in run.stages.values():
        one(f"cpt/{stage.name}", "cpt", {"stage": stage.name, "init": stage.init, **(stage.done or {})},
            _merge((stage.metrics, ""), (stage.gates, "gates/")))
    for probe in run.probes:
        one(f"probes/{probe.probe_id}", "probe", {k: v for k, v in probe.meta.items() if not isinstance(v, dict)},
            _merge((probe.metrics, ""), (probe.evals, "eval/")))
    if scores:
        summary, data = {}, []
        for cid in scores["ranking"]:
            c = scores["checkpoints"][cid]
            summary[f"readiness/{cid}"] = c["score"]
            summary[f"readiness/{cid}/ci_lo"], summary[f"readiness/{cid}/ci_hi"] = c["ci"]
            for comp, value in c["components"].items():
                if value is not None:
                    summary[f"{comp}/{cid}"] = value
            data.append([cid, c["score"], c["ci"][0], c["ci"][1], len(c["events"])])
        summary["recommended"] = scores["recommended"]
        one("scores", "analysis", {"analysis": scores.get("config", {})}, [], summary,
            {"readiness": (["checkpoint", "score", "ci_lo", "ci_hi", "events"], data)})
    return names
