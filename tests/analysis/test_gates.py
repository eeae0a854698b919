"""Gates beside readiness: stability gap, J(t), the stop rule and the Pareto set (seed 001), exact values."""

from __future__ import annotations

import json
import math

import pytest

from octo.analysis.config import AnalysisConfig
from octo.analysis.gates import gate_table, pareto_set
from octo.analysis.load import load_run
from octo.analysis.score import score_run
from octo.errors import OctoError
from tests.analysis.synth import RunBuilder


def _builder(root, *, recipe=True) -> RunBuilder:
    b = RunBuilder(root, analysis={"bootstrap": 300})
    b.stage("pretrain", init="random", gates=[{"step": 0, "ppl/general": 500.0, "acc/toy": 0.0, "format_rate": 0.0},
                                              {"step": 40, "ppl/general": 10.0, "acc/toy": 0.2, "format_rate": 0.6}])
    b.stage("stable", init="pretrain", gates=[{"step": 40, "ppl/general": 11.0, "acc/toy": 0.3, "format_rate": 0.7}])
    b.stage("decay-a", init="stable", gates=[{"step": 20, "ppl/general": 12.0, "acc/toy": 0.35, "format_rate": 0.65}])
    b.stage("decay-b", init="stable", gates=[{"step": 20, "ppl/general": 10.5, "acc/toy": 0.25, "format_rate": 0.4}])
    b.stage("decay-c", init="stable", gates=[{"step": 10, "ppl/general": 10.0, "acc/toy": 0.19, "format_rate": 0.6},
                                             {"step": 20, "ppl/general": 10.0, "acc/toy": 0.18, "format_rate": 0.6}])
    if not recipe:
        (root / "recipe.resolved.yaml").unlink()
    return b


def _run(root, *, recipe=True):
    return _builder(root, recipe=recipe).root


def _rows(root, cfg=None):
    table = gate_table(load_run(root, require_probes=False), cfg or AnalysisConfig())
    return table, {r["checkpoint_id"]: r for r in table["rows"]}


def test_stability_gap_j_and_verdicts_exact(tmp_path):
    table, rows = _rows(_run(tmp_path / "run"))
    assert table["reference"] == "pretrain.step-40"        # the base model: final checkpoint of the root stage
    assert table["domain_metric"] == "acc/toy"
    s = rows["stable.step-40"]
    assert s["stab_gap/ppl/general"] == pytest.approx(1.0)
    assert s["stab_gap/acc/toy"] == pytest.approx(0.1)
    assert s["stab_gap/format_rate"] == pytest.approx(0.1)
    assert s["J"] == pytest.approx(0.1 - math.log(1.1))
    assert s["verdict"] == "pass"                           # ln 1.1 = 0.095 <= tau_g = 0.1
    a = rows["decay-a.step-20"]
    assert a["J"] == pytest.approx(0.15 - math.log(1.2))
    assert a["verdict"] == "stop: general regression"
    b = rows["decay-b.step-20"]
    assert b["J"] == pytest.approx(0.05 - math.log(1.05) - 0.5 * 0.2)
    assert b["verdict"] == "stop: behavior regression"
    assert rows["decay-c.step-10"]["verdict"] == "pass"     # one eval below eps_d, patience is 2
    assert rows["decay-c.step-20"]["verdict"] == "stop: no domain gain"
    assert rows["pretrain.step-40"]["verdict"] == "reference" and rows["pretrain.step-40"]["J"] == 0
    assert rows["pretrain.step-0"]["verdict"] == "before reference"


def test_pareto_set_exact(tmp_path):
    _, rows = _rows(_run(tmp_path / "run"))
    front = {cid for cid, r in rows.items() if r["pareto"]}
    assert front == {"pretrain.step-40", "stable.step-40", "decay-a.step-20", "decay-b.step-20"}


def test_pareto_set_function():
    pts = {"a": (1.0, 1.0), "b": (2.0, 0.0), "c": (0.5, 0.5), "d": (1.0, 1.0), "e": (2.0, -1.0)}
    assert pareto_set(pts) == {"a", "b", "d"}             # equal points do not dominate each other


def test_settings_move_the_verdicts_and_the_reference(tmp_path):
    root = _run(tmp_path / "run")
    _, rows = _rows(root, AnalysisConfig(tau_g=0.5, tau_b=0.5, stop_patience=3))
    assert rows["decay-a.step-20"]["verdict"] == "pass"
    assert rows["decay-b.step-20"]["verdict"] == "pass"
    assert rows["decay-c.step-20"]["verdict"] == "pass"
    table, rows = _rows(root, AnalysisConfig(reference="stable.step-40"))
    assert table["reference"] == "stable.step-40"
    assert rows["decay-a.step-20"]["stab_gap/acc/toy"] == pytest.approx(0.05)
    with pytest.raises(OctoError, match="analysis.reference 'nope' is not a checkpoint with gates"):
        _rows(root, AnalysisConfig(reference="nope"))
    _, rows = _rows(root, AnalysisConfig(gate_weights={"domain": 2.0, "general": 0.0, "behavior": 0.0}))
    assert rows["decay-a.step-20"]["J"] == pytest.approx(0.3)


def test_without_a_recipe_the_pretrain_stage_is_the_base(tmp_path):
    table, rows = _rows(_run(tmp_path / "run", recipe=False))
    assert table["reference"] == "pretrain.step-40"
    assert rows["stable.step-40"]["J"] == pytest.approx(0.1 - math.log(1.1))


def test_values_written_by_the_engine_are_kept(tmp_path):
    root = _run(tmp_path / "run")
    path = root / "cpt/decay-a/gates.jsonl"
    row = json.loads(path.read_text())
    row.update({"J": 0.77, "verdict": "pass", "pareto": False})
    path.write_text(json.dumps(row) + "\n")
    _, rows = _rows(root)
    assert rows["decay-a.step-20"]["J"] == 0.77
    assert rows["decay-a.step-20"]["verdict"] == "pass"
    assert rows["decay-a.step-20"]["pareto"] is False


def test_gates_sit_beside_readiness_in_scores_json(tmp_path):
    b = _builder(tmp_path / "run")
    b.probe("decay-a.step-20", "clean", rng_seed=1)
    b.probe("decay-b.step-20", "flat", rng_seed=2)
    scores = score_run(b.root)
    gates = scores["checkpoints"]["decay-a.step-20"]["gates"]
    assert gates["verdict"] == "stop: general regression" and gates["pareto"] is True
    assert gates["J"] == pytest.approx(0.15 - math.log(1.2))
    table = scores["gates"]["rows"]
    # probed checkpoints first, in readiness order, then the others by J
    assert [r["checkpoint_id"] for r in table[:2]] == scores["ranking"]
    assert [r["rank"] for r in table] == [1, 2, None, None, None, None, None]
    rest = [r["J"] for r in table[2:]]
    assert rest == sorted(rest, reverse=True)
    assert table[0]["readiness"] == scores["checkpoints"][table[0]["checkpoint_id"]]["score"]
