"""octo compare: entries from runs and probe directories, differences with paired CIs, overlaid plots."""

from __future__ import annotations

import shutil

import pytest

from octo.analysis import compare
from octo.analysis.config import AnalysisConfig
from octo.errors import OctoError

CFG = AnalysisConfig(bootstrap=300)


def test_branches_of_one_run(branches_template):
    res = compare([branches_template], config=CFG)
    assert res["ranking"] == ["decay-short.step-20", "decay-hybrid.step-20", "pretrain.step-40", "decay-long.step-20"]
    assert res["baseline"] == "decay-short.step-20"
    entry = res["entries"]["decay-short.step-20"]
    assert entry["probes"] == ["decay-short.step-20", "decay-short.step-20.seed-1"]
    assert entry["control_probes"] == ["decay-short.step-20.control-random"]
    long = res["differences"]["decay-long.step-20"]
    assert long["score"]["diff"] < 0 and long["score"]["ci"][1] < 0          # clearly worse, CI excludes 0
    assert long["score"]["paired"] is True
    assert long["final/acc"]["ci"][0] < long["final/acc"]["diff"] < long["final/acc"]["ci"][1]
    assert "collapse" in res["table"] and "length_explosion" in res["table"]
    assert res["files"] == []                                                # nothing written without out


def test_probe_directories_pool_seeds_of_one_checkpoint(branches_template):
    probes = branches_template / "probes"
    res = compare([probes / "decay-short.step-20", probes / "decay-short.step-20.seed-1",
                   probes / "decay-long.step-20", probes / "decay-long.step-20"], config=CFG)
    assert list(res["entries"]) == ["decay-short.step-20", "decay-long.step-20"]
    assert len(res["entries"]["decay-short.step-20"]["probes"]) == 2
    assert res["entries"]["decay-long.step-20"]["probes"] == ["decay-long.step-20"]   # the repeat is ignored


def test_two_runs_identical_single_seed_entries_differ_by_exactly_zero(branches_template, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(branches_template, a)
    shutil.copytree(branches_template, b)
    res = compare([a, b], config=CFG, baseline="a:decay-hybrid.step-20")
    assert "a:decay-hybrid.step-20" in res["entries"] and "b:decay-long.step-20" in res["entries"]
    d = res["differences"]["b:decay-hybrid.step-20"]["score"]
    assert d == {"diff": 0.0, "ci": [0.0, 0.0], "paired": True}
    assert res["ties"] and any({"a:decay-hybrid.step-20", "b:decay-hybrid.step-20"} <= set(g) for g in res["ties"])


def test_errors(tmp_path, branches_template):
    with pytest.raises(OctoError, match="does not exist"):
        compare([tmp_path / "nope"])
    (tmp_path / "plain").mkdir()
    with pytest.raises(OctoError, match="neither a run directory"):
        compare([tmp_path / "plain"])
    with pytest.raises(OctoError, match="--baseline 'x' is not an entry"):
        compare([branches_template], config=CFG, baseline="x")
