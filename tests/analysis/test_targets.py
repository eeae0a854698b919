"""Validation protocol v2 (octo.analysis.targets): the noise ceiling, seed groups, the gain target, the
combination chosen without peeking and the verdict on issue 21's target."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import pytest

from octo.analysis.targets import choose, gain_target, noise_ceiling, predictor_matrix, seed_groups, verdict


def _brute_tau(x, y) -> float:
    c = d = tx = ty = 0
    for i, j in itertools.combinations(range(len(x)), 2):
        a, b = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
        c += a * b > 0
        d += a * b < 0
        tx += a == 0
        ty += b == 0
    n0 = len(x) * (len(x) - 1) / 2
    return (c - d) / np.sqrt((n0 - tx) * (n0 - ty))


def test_noise_ceiling_is_the_mean_tau_between_seed_groups_with_a_ci_over_the_shared_draws():
    rng = np.random.default_rng(0)
    truth = np.linspace(0.1, 0.8, 8)
    groups = []
    for _ in range(3):
        point = truth + rng.normal(0, 0.08, 8)
        groups.append((point, point + rng.normal(0, 0.03, (500, 8))))
    c = noise_ceiling(groups, 0.95)
    pairs = list(itertools.combinations(range(3), 2))
    assert c["groups"] == 3 and c["per_pair"] == pytest.approx([_brute_tau(groups[a][0], groups[b][0])
                                                               for a, b in pairs])
    assert c["tau"] == pytest.approx(np.mean(c["per_pair"]))
    per_draw = [np.mean([_brute_tau(groups[a][1][i], groups[b][1][i]) for a, b in pairs]) for i in range(500)]
    assert c["ci"] == pytest.approx(list(np.quantile(per_draw, [0.025, 0.975])))
    # identical groups reach 1; reversed ones -1
    same = noise_ceiling([groups[0], groups[0]], 0.95)
    assert same["tau"] == 1.0 and same["ci"] == [1.0, 1.0]
    rev = noise_ceiling([groups[0], (-groups[0][0], -groups[0][1])], 0.95)
    assert rev["tau"] == -1.0
    one = noise_ceiling(groups[:1], 0.95)
    assert one["tau"] is None and "full_seeds needs two or more" in one["note"]
    flat = noise_ceiling([(np.ones(8), np.ones((10, 8))), groups[0]], 0.95)
    assert flat["tau"] is None and "undefined" in flat["note"]


def _run(seed):
    return SimpleNamespace(meta={"seed": seed})


def test_seed_groups_keep_only_the_seeds_every_checkpoint_has():
    full = {"a": [_run(1), _run(2), _run(3)], "b": [_run(2), _run(1)], "c": [_run(1), _run(2)]}
    groups = seed_groups(full, ["a", "b", "c"])
    assert [{s: [p.meta["seed"] for p in g[s]] for s in g} for g in groups] == \
        [{"a": [1], "b": [1], "c": [1]}, {"a": [2], "b": [2], "c": [2]}]
    assert seed_groups({"a": [_run(1)], "b": [_run(2)]}, ["a", "b"]) == []


def test_gain_target_is_final_minus_step_0_per_draw():
    def score(start, final, ds, df):
        return SimpleNamespace(metrics={"start/acc": start, "final/acc": final},
                               draws={"start/acc": np.array(ds), "final/acc": np.array(df)})
    scores = {"a": score(0.1, 0.5, [0.1, 0.2], [0.5, 0.4]), "b": score(0.3, 0.35, [0.3, 0.25], [0.35, 0.4])}
    point, draws = gain_target(scores, ["a", "b"])
    assert point == pytest.approx([0.4, 0.05])
    assert draws.shape == (2, 2) and draws[:, 0] == pytest.approx([0.4, 0.2]) and \
        draws[:, 1] == pytest.approx([0.05, 0.15])


def _pred(values, sign=1, missing=False):
    p = {"label": "x", "sign": sign, "values": list(values)}
    if missing:
        p["missing"] = "no x"
    return p


def test_choose_selects_among_the_predictors_by_nested_loco_and_leaves_readiness_and_missing_ones_out():
    rng = np.random.default_rng(1)
    y = np.linspace(0, 1, 12)
    predictors = {"readiness": _pred(y), "start_acc": _pred(rng.normal(size=12)),
                  "start/pass@k": _pred(y + rng.normal(0, 0.05, 12)),
                  "ppl/general": _pred(-y + rng.normal(0, 0.3, 12) + 5, sign=-1),
                  "start/pass@1": _pred(y, missing=True)}
    X = predictor_matrix(predictors)
    assert set(X) == {"start/acc", "start/pass@k", "ppl/general"}   # readiness and missing ones are not candidates
    assert X["ppl/general"] == pytest.approx([-v for v in predictors["ppl/general"]["values"]])  # lower is better
    c = choose(predictors, y)
    assert "start/pass@k" in c["chosen"] and c["nested_tau"] > 0.7
    assert len(c["nested_picks"]) == 12
    assert "error" in choose(predictors, y[:3])   # too few checkpoints: said, not raised


def test_verdict_needs_the_target_the_ceiling_share_and_every_baseline_beaten():
    taus = {"readiness": {"tau": 0.85},
            "start_acc": {"tau": 0.5, "readiness_gain": {"ci": [0.1, 0.5]}},
            "start/pass@k": {"tau": 0.8, "readiness_gain": {"ci": [-0.1, 0.2]}},
            "start/pass@1": {"tau": None}}
    v = verdict(taus, {"tau": 0.9}, 0.8)
    assert v["reaches_target"] is True and v["reaches_ceiling_share"] is True   # 0.85 >= 0.9 x 0.9
    assert v["beats"] == {"start_acc": True, "start/pass@k": False} and v["not_beaten"] == ["start/pass@k"]
    assert v["beats_all"] is False
    assert verdict(taus, {"tau": 0.99}, 0.8)["reaches_ceiling_share"] is False
    assert verdict(taus, {"tau": None}, 0.8)["reaches_ceiling_share"] is None
    assert verdict({**taus, "readiness": {"tau": 0.7}}, {"tau": 0.7}, 0.8)["reaches_target"] is False


def test_late_bloomers_are_those_full_rl_lifts_three_places_or_more():
    from octo.analysis.targets import late_bloomers

    stages = ["a", "b", "c", "d", "e"]
    start = [0.9, 0.8, 0.7, 0.6, 0.1]      # ranks 1..5
    final = [0.5, 0.4, 0.3, 0.9, 0.95]     # e: 5 -> 1 (4 places), d: 4 -> 2 (2 places)
    late = late_bloomers(stages, start, final)
    assert late == {"places": 3, "checkpoints": [{"stage": "e", "rank_start": 5, "rank_full": 1, "shift": 4}]}
    assert [x["stage"] for x in late_bloomers(stages, start, final, places=2)["checkpoints"]] == ["e", "d"]
    assert late_bloomers(stages, start, start)["checkpoints"] == []
