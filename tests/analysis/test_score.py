"""Readiness score: exact components, the known ranking, ties, paired and seed bootstraps, CI coverage."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import yaml

from octo.analysis.config import AnalysisConfig
from octo.analysis.load import Probe, load_run
from octo.analysis.score import Resampler, difference, score_groups, score_run
from octo.errors import OctoError
from tests.analysis.synth import RunBuilder, curves, eval_rows, metrics_rows, ramp, true_heldout

FAST = AnalysisConfig(bootstrap=300)


def _row_vec(n: int, correct: int) -> list[float]:
    return [1.0] * correct + [0.0] * (n - correct)


def test_components_match_hand_computed_values(tmp_path):
    """Three evaluations of 20 problems, known curves, known clip ratios and lengths."""
    b = RunBuilder(tmp_path / "run")
    pdir = b.probe("s.step-1", "flat", rng_seed=0, steps=20, eval_every=10, n=20)
    greedy, sampled = [0.2, 0.4, 0.3], [0.25, 0.35, 0.45]
    evals = [{"step": s, "n": 20, "k": 4, "acc": g, "acc/sampled": q, "format_rate": 0.8 if s == 0 else 0.5,
              "per_problem/greedy": _row_vec(20, round(g * 20)), "per_problem/sampled": _row_vec(20, round(q * 20)),
              "per_problem/level": [1] * 20} for s, g, q in zip([0, 10, 20], greedy, sampled)]
    (pdir / "evals.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evals))
    rows = [{"step": t, "reward/mean": 0.0, "len/mean": 100.0, "len/correct": 100.0,
             "len/incorrect": 100.0 if t <= 10 else 200.0, "clip_ratio": 0.0 if t <= 10 else 0.2,
             "repeat_rate": 0.0, "multi_boxed_rate": 0.0, "entropy": 1.0, "kl": 0.0} for t in range(1, 21)]
    (pdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    c = score_run(tmp_path / "run", FAST)["checkpoints"]["s.step-1"]
    comp, m = c["components"], c["metrics"]
    # start = 0.75 * mean(0.2, 0.25) + 0.25 * 0.8
    assert comp["start"] == pytest.approx(0.75 * 0.225 + 0.25 * 0.8)
    # greedy: AUC gain (10*0.1 + 10*0.15)/20 = 0.125, slope 0.005/step * 20 = 0.1 -> 0.1125
    # sampled: AUC gain (10*0.05 + 10*0.15)/20 = 0.1, slope 0.01 * 20 = 0.2 -> 0.15
    assert m["learning/greedy"] == pytest.approx(0.1125)
    assert m["learning/sampled"] == pytest.approx(0.15)
    assert comp["learning"] == pytest.approx(0.13125)
    # drawdown: greedy peak 0.4 - final 0.3, sampled none; no detector fired
    assert m["stability/drawdown"] == pytest.approx(0.05)
    assert c["events"] == [] and comp["stability"] == pytest.approx(-0.05)
    # length: late clip 0.2; incorrect length doubled, correct flat -> gap ln 2
    assert m["length/clip_late"] == pytest.approx(0.2)
    assert m["length/gap_growth"] == pytest.approx(math.log(2))
    assert comp["length"] == pytest.approx(-(0.2 + 0.5 * math.log(2)))
    assert comp["control"] is None
    assert c["score"] == pytest.approx(sum(v for v in comp.values() if v is not None))


def _ranking_run(root):
    b = RunBuilder(root, analysis={"bootstrap": 300})
    for i, kind in enumerate(["collapse", "flat", "length_explosion", "clean", "reward_hacker", "weak"]):
        b.probe(f"{kind}.step-1", kind, rng_seed=100 + i)
    return root


def test_ranking_of_synthetic_checkpoints_is_the_known_one(tmp_path):
    scores = score_run(_ranking_run(tmp_path / "run"))
    assert scores["ranking"] == ["clean.step-1", "weak.step-1", "flat.step-1", "reward_hacker.step-1",
                                 "collapse.step-1", "length_explosion.step-1"]
    assert scores["ties"] == []                      # every neighbour is clear of the next
    assert scores["recommended"] == "clean.step-1"
    assert "clear of the runner-up weak.step-1" in scores["reason"]
    assert "learning" in scores["reason"]
    hacker = scores["checkpoints"]["reward_hacker.step-1"]
    assert [e["detector"] for e in hacker["events"]] == ["reward_hacking"]
    assert hacker["components"]["stability"] < -0.1 + 1e-9  # its penalty is in the score


def test_scores_json_follows_the_contract(tmp_path):
    run = _ranking_run(tmp_path / "run")
    scores = score_run(run)
    assert json.loads((run / "scores.json").read_text()) == json.loads(json.dumps(scores))
    assert scores["version"] == 1
    assert {"checkpoints", "ranking", "ties", "recommended", "reason"} <= set(scores)
    assert set(scores["ranking"]) == set(scores["checkpoints"])
    pts = [scores["checkpoints"][c]["score"] for c in scores["ranking"]]
    assert pts == sorted(pts, reverse=True)
    for cid, c in scores["checkpoints"].items():
        assert {"stage", "score", "ci", "components", "component_cis", "events", "probes", "gates"} <= set(c)
        assert c["ci"][0] <= c["ci"][1] and c["probes"] == [cid]
        assert set(c["components"]) == {"start", "learning", "stability", "length", "control"}
        for e in c["events"]:
            assert set(e) == {"detector", "step", "probe_id", "detail", "penalty"}
            assert e["penalty"] == scores["config"]["event_penalty"][e["detector"]]
        # the synthetic probes have no start pass: their predictors are the probe's own
        assert {"readiness", "start/acc", "final/acc", "sigmoid/predicted"} <= set(c["predictors"])
        for name in ("start/acc", "final/acc", "readiness"):
            p = c["predictors"][name]
            assert p["ci"][0] <= p["value"] <= p["ci"][1], (cid, name)
        assert c["seeds"] == 1 and "one probe seed" in c["intervals"]
    assert scores["config"]["bootstrap"] == 300        # read from recipe.resolved.yaml's analysis key
    assert "mean of greedy and sampled" in scores["accuracy"]
    assert {"start/pass@k", "start/learnable_mass", "sigmoid/predicted"} <= set(scores["predictor_definitions"])


def test_ties_are_called_and_broken_by_the_gates(tmp_path):
    """Two clean learners overlap; the one on the gate Pareto set is recommended even when its point
    estimate is lower, and the reason says so."""
    b = RunBuilder(tmp_path / "run", analysis={"bootstrap": 300})
    b.probe("decay-a.step-5", "clean", rng_seed=1)
    b.probe("decay-b.step-5", "clean", rng_seed=2)
    scores = score_run(tmp_path / "run")
    assert sorted(scores["ties"][0]) == ["decay-a.step-5", "decay-b.step-5"]
    low = scores["ranking"][1]
    high = scores["ranking"][0]
    b.stage("base", init="random", gates=[{"step": 10, "ppl/general": 10.0, "acc/toy": 0.2, "format_rate": 0.5}])
    b.stage(low.split(".")[0], init="base", gates=[{"step": 5, "ppl/general": 9.0, "acc/toy": 0.3,
                                                     "format_rate": 0.6}])
    b.stage(high.split(".")[0], init="base", gates=[{"step": 5, "ppl/general": 12.0, "acc/toy": 0.25,
                                                      "format_rate": 0.5}])
    scores = score_run(tmp_path / "run")
    assert scores["recommended"] == low
    assert "ties with" in scores["reason"] and "passes the gate stop rule" in scores["reason"]
    # with both passing the stop rule the Pareto set decides
    scores = score_run(tmp_path / "run", AnalysisConfig(bootstrap=300, tau_g=1.0))
    assert scores["recommended"] == low and "Pareto" in scores["reason"]


def test_weights_from_the_recipe_change_the_ranking(tmp_path):
    """High start, no learning vs low start, steady learning: the default weights prefer the first,
    analysis.weights.learning = 3 in recipe.resolved.yaml prefers the second."""
    b = RunBuilder(tmp_path / "run", analysis={"bootstrap": 300})
    b.probe("starter.step-1", "flat", rng_seed=1, heldout=lambda t: 0.5)
    b.probe("learner.step-1", "clean", rng_seed=2, heldout=ramp(0.2, 0.4))
    assert score_run(tmp_path / "run")["ranking"] == ["starter.step-1", "learner.step-1"]
    b.recipe["analysis"]["weights"] = {"learning": 3.0}
    b.write_recipe()
    scores = score_run(tmp_path / "run")
    assert scores["ranking"] == ["learner.step-1", "starter.step-1"]
    assert scores["config"]["weights"] == {"learning": 3.0, "start": 1.0, "stability": 1.0, "length": 1.0,
                                           "control": 1.0}


def other_notes(scores: dict) -> list[str]:
    """The notes but the one saying that probes without a step-0 sampling pass have no combined readiness (the
    synthetic probes here have none; tests/analysis/test_predictors.py checks that note)."""
    return [n for n in scores["notes"] if not n.startswith("no combined readiness for")]


def test_control_component_is_learning_beyond_the_negative_control(branches):
    scores = score_run(branches)
    for c in scores["checkpoints"].values():
        assert len(c["control_probes"]) == 1 and c["control_probes"][0].endswith(".control-random")
        assert c["components"]["control"] == pytest.approx(c["components"]["learning"]
                                                           - c["metrics"]["control/learning"])
    short = scores["checkpoints"]["decay-short.step-20"]
    assert short["components"]["control"] > 0.15 > abs(scores["checkpoints"]["pretrain.step-40"]["components"]
                                                        ["control"])
    assert other_notes(scores) == []


def test_control_is_off_unless_every_checkpoint_has_one(branches):
    import shutil

    shutil.rmtree(branches / "probes" / "pretrain.step-40.control-random")
    scores = score_run(branches)
    assert all(c["components"]["control"] is None for c in scores["checkpoints"].values())
    assert other_notes(scores) == ["control component off: not every checkpoint has a negative-control probe"]


def test_seeds_are_pooled_and_their_disagreement_widens_the_interval(tmp_path):
    b = RunBuilder(tmp_path / "agree", analysis={"bootstrap": 1000})
    d = RunBuilder(tmp_path / "disagree", analysis={"bootstrap": 1000})
    for i in range(3):
        b.probe("c.step-1", "clean", seed=i, first_seed=i == 0, rng_seed=i)
        d.probe("c.step-1", "clean", seed=i, first_seed=i == 0, rng_seed=i, heldout=ramp(0.3, [0.4, 0.6, 0.8][i]))
    agree = score_run(tmp_path / "agree")["checkpoints"]["c.step-1"]
    disagree = score_run(tmp_path / "disagree")["checkpoints"]["c.step-1"]
    assert agree["probes"] == ["c.step-1", "c.step-1.seed-1", "c.step-1.seed-2"]
    per_seed = [disagree["per_probe"][p]["learning"] for p in disagree["probes"]]
    assert disagree["components"]["learning"] == pytest.approx(np.mean(per_seed))
    width = lambda c: c["ci"][1] - c["ci"][0]  # noqa: E731
    assert width(disagree) > 2 * width(agree)


def test_differences_are_paired_on_a_shared_heldout_set(tmp_path):
    """Two checkpoints answering the same problems except a few: each CI is wide, the paired difference
    CI is narrow and excludes zero."""
    b = RunBuilder(tmp_path / "run")
    b.probe("a.step-1", "flat", rng_seed=5)
    b.probe("b.step-1", "flat", rng_seed=5)
    rows = [json.loads(x) for x in (tmp_path / "run/probes/b.step-1/evals.jsonl").read_text().splitlines()]
    for r in rows[1:]:           # b gets 10 more problems right than a after step 0
        g = r["per_problem/greedy"]
        flipped = [i for i, v in enumerate(g) if v == 0][:10]
        for i in flipped:
            g[i] = 1
        r["acc"] = float(np.mean(g))
    (tmp_path / "run/probes/b.step-1/evals.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = load_run(tmp_path / "run")
    cfg = AnalysisConfig()
    ranked, _, _ = score_groups({p.checkpoint_id: [p] for p in run.probes}, cfg)
    a, bb = sorted(ranked, key=lambda r: r.checkpoint_id)
    d = difference(bb, a, "final/acc", cfg)
    assert d["paired"] and d["diff"] == pytest.approx(0.025, abs=1e-9)     # (10 / 200) / 2 (greedy half)
    assert d["ci"][0] > 0 and d["ci"][1] - d["ci"][0] < 0.5 * (a.metric_cis["final/acc"][1]
                                                               - a.metric_cis["final/acc"][0])


def test_parametric_bootstrap_without_per_problem_vectors(tmp_path):
    b = RunBuilder(tmp_path / "run")
    pdir = b.probe("a.step-1", "clean", rng_seed=3)
    with_vectors = score_run(tmp_path / "run", FAST)["checkpoints"]["a.step-1"]
    rows = [json.loads(x) for x in (pdir / "evals.jsonl").read_text().splitlines()]
    (pdir / "evals.jsonl").write_text("".join(json.dumps({k: v for k, v in r.items()
                                                          if not k.startswith("per_problem/")}) + "\n" for r in rows))
    without = score_run(tmp_path / "run", FAST)["checkpoints"]["a.step-1"]
    assert without["score"] == pytest.approx(with_vectors["score"])
    w0, w1 = (with_vectors["ci"][1] - with_vectors["ci"][0]), (without["ci"][1] - without["ci"][0])
    assert 0.5 * w0 < w1 < 3 * w0
    assert without["ci"][0] < without["score"] < without["ci"][1]
    # evaluations of different sizes: binomial with each evaluation's own n
    (pdir / "evals.jsonl").write_text("".join(json.dumps({**{k: v for k, v in r.items() if not k.startswith("per_")},
                                                          "n": 100 + i}) + "\n" for i, r in enumerate(rows)))
    varied = score_run(tmp_path / "run", FAST)
    assert varied["checkpoints"]["a.step-1"]["ci"][1] - varied["checkpoints"]["a.step-1"]["ci"][0] > 0.5 * w0
    assert other_notes(varied) == ["control component off: no negative-control probes"]
    # no n at all: the interval cannot include problem noise, and the scores say so
    (pdir / "evals.jsonl").write_text("".join(json.dumps({k: v for k, v in r.items()
                                                          if not k.startswith("per_") and k != "n"}) + "\n"
                                              for r in rows))
    blind = score_run(tmp_path / "run", FAST)
    assert blind["checkpoints"]["a.step-1"]["ci"][0] == pytest.approx(blind["checkpoints"]["a.step-1"]["ci"][1])
    assert "neither per-problem vectors nor n" in blind["notes"][0]


def _simulated_probe(spec, metrics, rng, pid="c.step-1", steps=40, every=10, n=200, k=4) -> Probe:
    evals = eval_rows(spec, steps=steps, eval_every=every, n=n, k=k, rng=rng)
    return Probe(path=__import__("pathlib").Path(pid), probe_id=pid, checkpoint_id="c.step-1", stage="c", seed=0,
                 control=None, meta={}, metrics=metrics, evals=evals, complete=True)


def test_bootstrap_ci_covers_the_true_readiness_in_at_least_90_percent_of_200_draws():
    """200 independent draws of a 40-step clean learner evaluated on 200 problems (k = 4 samples):
    the 95% interval contains the population value of the score at least 180 times."""
    spec = curves("clean", heldout=ramp(0.3, 0.6, 40))
    metrics = metrics_rows(spec, steps=40, rng=np.random.default_rng(0))
    cfg = AnalysisConfig()                      # the default 1000 resamples
    resampler = Resampler(cfg)
    steps = np.array([0, 10, 20, 30, 40], dtype=float)
    true = np.array([true_heldout(spec, t) for t in steps])
    T = 40.0
    auc = float(np.sum((true[1:] + true[:-1] - 2 * true[0]) / 2 * 10) / T)
    slope = float(np.polyfit(steps, true, 1)[0])
    learning = 0.5 * auc + 0.5 * slope * T
    start = 0.75 * true[0] + 0.25 * spec["format_rate"]
    covered, draws = 0, 200
    length = None
    for i in range(draws):
        probe = _simulated_probe(spec, metrics, np.random.default_rng(1000 + i))
        (r,), _, _ = score_groups({"c.step-1": [probe]}, cfg, resampler)
        assert r.events == []
        length = r.components["length"] if length is None else length
        assert r.components["length"] == length      # metrics are fixed across draws
        truth = start + learning + 0.0 + length     # no drawdown, no events, no control
        covered += r.ci[0] <= truth <= r.ci[1]
    assert covered >= 0.9 * draws, covered


def test_learning_ci_covers_a_flat_learners_zero():
    """The learning component is linear in the curve: for a flat learner its CI covers 0 in >= 90%."""
    spec = curves("flat", heldout=lambda t: 0.4)
    metrics = metrics_rows(spec, steps=40, rng=np.random.default_rng(0))
    cfg = AnalysisConfig(bootstrap=500)
    resampler = Resampler(cfg)
    covered = 0
    for i in range(100):
        rng = np.random.default_rng(5000 + i)
        probe = _simulated_probe(spec, metrics, rng)
        # independent answers per evaluation (no coupling), the harder case for a flat line
        for e in probe.evals:
            q = np.clip(0.4 + np.array([{1: 0.2, 2: 0.07, 3: -0.07, 4: -0.2}[lv] for lv in e["per_problem/level"]]),
                        0, 1)
            e["per_problem/greedy"] = (rng.random(len(q)) < q).astype(int).tolist()
            e["acc"] = float(np.mean(e["per_problem/greedy"]))
        (r,), _, _ = score_groups({"c.step-1": [probe]}, cfg, resampler)
        lo, hi = r.component_cis["learning"]
        covered += lo <= 0.0 <= hi
    assert covered >= 90, covered


def test_probes_that_cannot_be_scored_are_listed(tmp_path):
    b = RunBuilder(tmp_path / "run", analysis={"bootstrap": 300})
    b.probe("good.step-1", "clean", rng_seed=1)
    only0 = b.probe("young.step-1", "clean", rng_seed=2)
    first = (only0 / "evals.jsonl").read_text().splitlines()[0]
    (only0 / "evals.jsonl").write_text(first + "\n")
    (tmp_path / "run/probes/empty.step-1").mkdir()
    (tmp_path / "run/probes/empty.step-1/probe.json").write_text("{}")
    scores = score_run(tmp_path / "run")
    assert scores["ranking"] == ["good.step-1"]
    reasons = {e["probe_id"]: e["reason"] for e in scores["excluded"]}
    assert set(reasons) == {"young.step-1", "empty.step-1"}
    assert "two or more steps" in reasons["young.step-1"]


@pytest.mark.parametrize("setup,message", [
    (lambda p: None, "does not exist"),
    (lambda p: p.mkdir(), "has no probes/ directory"),
    (lambda p: (p / "probes" / "x").mkdir(parents=True), "no probe with a held-out evaluation"),
    (lambda p: p.write_text("not a dir"), "is not a directory"),
])
def test_user_errors_are_one_sentence(tmp_path, setup, message):
    path = tmp_path / "run"
    setup(path)
    with pytest.raises(OctoError, match=message) as err:
        score_run(path)
    assert "\n" not in str(err.value)


def test_damaged_files_are_user_errors(tmp_path):
    b = RunBuilder(tmp_path / "run")
    pdir = b.probe("a.step-1", "clean", rng_seed=1)
    lines = (pdir / "evals.jsonl").read_text().splitlines()
    lines[1] = "{broken"
    (pdir / "evals.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(OctoError, match="not valid JSON"):
        score_run(tmp_path / "run")
    (pdir / "evals.jsonl").write_text("[1, 2]\n")
    with pytest.raises(OctoError, match="not a JSON object"):
        score_run(tmp_path / "run")


def test_config_errors_in_the_recipe_name_the_key(tmp_path):
    b = RunBuilder(tmp_path / "run", analysis={"weights": {"speed": 1.0}})
    b.probe("a.step-1", "clean", rng_seed=1)
    with pytest.raises(OctoError, match="analysis.weights.speed"):
        score_run(tmp_path / "run")
    (tmp_path / "run/recipe.resolved.yaml").write_text("name: [unclosed\n")
    with pytest.raises(OctoError, match="not valid YAML"):
        score_run(tmp_path / "run")
    (tmp_path / "run/recipe.resolved.yaml").write_text(yaml.safe_dump({"name": "x"}))
    assert score_run(tmp_path / "run")["config"]["bootstrap"] == 1000      # no analysis key: defaults


def test_a_single_checkpoint_is_recommended_as_the_only_one(tmp_path):
    b = RunBuilder(tmp_path / "run", analysis={"bootstrap": 200})
    b.probe("only.step-1", "clean", rng_seed=1, steps=12, eval_every=6, n=90, k=2)
    scores = score_run(tmp_path / "run")
    assert scores["recommended"] == "only.step-1" and scores["ties"] == [] and scores["differences"] == {}
    assert scores["reason"].startswith("it is the only scored checkpoint")


def test_a_damaged_per_problem_vector_falls_back_to_the_parametric_bootstrap(tmp_path):
    b = RunBuilder(tmp_path / "run")
    pdir = b.probe("a.step-1", "clean", rng_seed=3)
    rows = [json.loads(x) for x in (pdir / "evals.jsonl").read_text().splitlines()]
    rows[2]["per_problem/greedy"][5] = None
    (pdir / "evals.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    c = score_run(tmp_path / "run", FAST)["checkpoints"]["a.step-1"]
    assert c["ci"][0] < c["score"] < c["ci"][1]


def test_entropy_drop_of_a_healthy_learner_costs_nothing_and_breaks_no_tie(tmp_path):
    """Issue 21: RL sharpening fires entropy_collapse on healthy probes, and its 0.05 penalty decided the
    quickstart's recommendation. Two checkpoints that learn identically, one of them spending its entropy:
    the event is reported as information, costs no stability and does not decide between them."""
    from tests.analysis.synth import jump

    b = RunBuilder(tmp_path / "run", analysis={"bootstrap": 300})
    b.probe("sharpens.step-1", "clean", rng_seed=7, entropy=jump(60, 0.8, 0.1))
    b.probe("steady.step-1", "clean", rng_seed=7)
    scores = score_run(tmp_path / "run")
    sharp, steady = scores["checkpoints"]["sharpens.step-1"], scores["checkpoints"]["steady.step-1"]
    assert [(e["detector"], e["penalty"]) for e in sharp["events"]] == [("entropy_collapse", 0.0)]
    assert steady["events"] == []
    assert sharp["components"]["stability"] == pytest.approx(steady["components"]["stability"])
    assert sharp["score"] == pytest.approx(steady["score"])
    assert "fewer penalised detector events" not in scores["reason"]
    if scores["recommended"] == "sharpens.step-1":
        assert "entropy_collapse at step 60 (sharpens.step-1; information, no penalty)" in scores["reason"]


def test_truncation_is_penalised(tmp_path):
    b = RunBuilder(tmp_path / "run", analysis={"bootstrap": 300})
    b.probe("cut.step-1", "clean", rng_seed=7, clip=jump_clip())
    b.probe("whole.step-1", "clean", rng_seed=7)
    c = score_run(tmp_path / "run")["checkpoints"]
    assert [(e["detector"], e["penalty"]) for e in c["cut.step-1"]["events"]] == [("truncation", 0.05)]
    assert c["cut.step-1"]["metrics"]["stability/penalty"] == pytest.approx(0.05)
    assert c["whole.step-1"]["metrics"]["stability/penalty"] == 0.0


def jump_clip():
    from tests.analysis.synth import jump

    return jump(100, 0.02, 0.4)
