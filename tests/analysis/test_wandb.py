"""wandb mirroring: what is logged under which names (a recording stand-in), and a real offline run
when wandb is installed."""

from __future__ import annotations

import importlib.machinery
import sys
import types

import pytest

from octo.analysis.wandb_mirror import is_wandb_available, mirror_to_wandb
from octo.errors import OctoError


class _Recorder:
    """Records wandb.init / run.log / summary / finish calls."""

    def __init__(self):
        self.runs = []

    def module(self):
        rec = self
        mod = types.ModuleType("wandb")
        mod.__spec__ = importlib.machinery.ModuleSpec("wandb", None)

        class Table:
            def __init__(self, columns, data):
                self.columns, self.data = columns, data

        class Run:
            def __init__(self, kwargs):
                self.kwargs, self.logs, self.summary, self.finished = kwargs, [], {}, False

            def log(self, values, step=None):
                self.logs.append((step, dict(values)))

            def finish(self):
                self.finished = True

        def init(**kwargs):
            run = Run(kwargs)
            rec.runs.append(run)
            return run

        mod.init, mod.Table = init, Table
        return mod


def test_names_steps_and_values_logged(branches, monkeypatch):
    rec = _Recorder()
    monkeypatch.setitem(sys.modules, "wandb", rec.module())
    names = mirror_to_wandb(branches, project="octo-test")
    run = branches.name
    stages = ["pretrain", "stable", "decay-long", "decay-short", "decay-hybrid"]
    probes = sorted(p.name for p in (branches / "probes").iterdir())
    assert sorted(names) == sorted([f"{run}/cpt/{s}" for s in stages] + [f"{run}/probes/{p}" for p in probes]
                                   + [f"{run}/scores"])
    by_name = {r.kwargs["name"]: r for r in rec.runs}
    for r in rec.runs:
        assert r.finished and r.kwargs["mode"] == "offline" and r.kwargs["project"] == "octo-test"
        assert r.kwargs["group"] == run and r.kwargs["dir"] == str(branches / "wandb")
        steps = [s for s, _ in r.logs if s is not None]
        assert steps == sorted(steps) and len(set(steps)) == len(steps)
    probe = by_name[f"{run}/probes/decay-long.step-20"]
    logged = dict(probe.logs)
    assert set(logged) == set(range(0, 301))                       # evals at 0, metrics from step 1
    assert logged[0] == {k: v for k, v in logged[0].items() if k.startswith("eval/")}
    assert {"len/mean", "clip_ratio", "reward/mean", "entropy", "kl", "eval/acc", "eval/acc/sampled",
            "eval/pass@k"} <= set(logged[150])
    assert not any("per_problem" in k for values in logged.values() for k in values)
    assert all(isinstance(v, float) for values in logged.values() for v in values.values())
    stage = dict(by_name[f"{run}/cpt/pretrain"].logs)
    assert stage[0] == {k: v for k, v in stage[0].items() if k.startswith("gates/")}
    assert stage[40]["gates/ppl/general"] == 12.0 and "loss" in stage[40] and stage[40]["spike"] == 0
    scores = by_name[f"{run}/scores"]
    assert scores.summary["recommended"] == "decay-short.step-20"
    assert "readiness/decay-long.step-20" in scores.summary
    (_, table), = scores.logs
    assert table["readiness"].columns[:2] == ["checkpoint", "score"] and len(table["readiness"].data) == 4


def test_missing_wandb_is_a_user_error(branches, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    assert not is_wandb_available()
    with pytest.raises(OctoError, match="wandb is not installed"):
        mirror_to_wandb(branches)


def test_bad_mode_is_a_user_error(branches):
    with pytest.raises(OctoError, match="offline, online or disabled"):
        mirror_to_wandb(branches, mode="sometimes")


@pytest.mark.skipif(not is_wandb_available(), reason="wandb is not installed (optional extra octo-midtrain[wandb])")
def test_real_wandb_offline(branches, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DISABLE_GIT", "true")
    names = mirror_to_wandb(branches, project="octo-test", mode="offline")
    assert len(names) == 5 + 9 + 1
    assert len(list((branches / "wandb" / "wandb").glob("offline-run-*"))) == len(names)
