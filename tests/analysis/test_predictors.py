"""Predictors (octo.analysis.predictors): exact formulas against brute force and the library, unbiasedness,
the sigmoid fit's recovery and interval coverage, the entropy law, and their place in scores.json."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from scipy.special import comb

from octo.analysis.config import AnalysisConfig
from octo.analysis.predictors import (B_GRID, MID_GRID, Curve, compute_through, entropy_at_evals, entropy_law,
                                      fit_sigmoid, group_learnable_mass, learnable_mass, learnable_mass_trend,
                                      pass_at_k, start_predictors, start_rows)
from octo.analysis.score import Resampler, score_run
from tests.analysis.synth import RunBuilder, ramp

FAST = AnalysisConfig(bootstrap=300)


# --- pass@k ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_pass_at_k_is_the_share_of_k_subsets_with_a_correct_sample(n):
    """Brute force: every way to choose k of the n samples, the share that holds a correct one."""
    for c in range(n + 1):
        samples = [1] * c + [0] * (n - c)
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(samples, k))
            truth = sum(any(s) for s in subsets) / len(subsets)
            assert pass_at_k(c, n, k) == pytest.approx(truth, abs=1e-12), (n, c, k)


def test_pass_at_k_matches_the_binomial_formula_at_large_n():
    """1 - C(n-c, k)/C(n, k) with exact integers (scipy) for n = 64: the product form does not overflow."""
    counts = np.arange(65)
    for k in (1, 2, 8, 16, 64):
        ref = np.array([1 - comb(64 - c, k, exact=True) / comb(64, k, exact=True) for c in counts])
        assert np.allclose(pass_at_k(counts, 64, k), ref, atol=1e-12)
    assert np.allclose(pass_at_k(counts, 64, 1), counts / 64)            # pass@1 is c/n


def test_pass_at_k_rejects_impossible_inputs():
    with pytest.raises(ValueError):
        pass_at_k([1], 4, 5)
    with pytest.raises(ValueError):
        pass_at_k([5], 4, 2)


# --- learnable mass -------------------------------------------------------------------------------

def test_learnable_mass_is_unbiased_where_the_plug_in_is_not():
    """c(n-c)/(n(n-1)) averages to p(1-p) over binomial draws; (c/n)(1 - c/n) falls short by p(1-p)/n."""
    rng = np.random.default_rng(0)
    n, p = 4, np.array([0.1, 0.3, 0.5, 0.9])
    c = rng.binomial(n, p, size=(200_000, len(p)))
    est = learnable_mass(c, n).mean(axis=0)
    plug = ((c / n) * (1 - c / n)).mean(axis=0)
    assert np.allclose(est, p * (1 - p), atol=3e-3)
    assert np.allclose(plug, p * (1 - p) * (n - 1) / n, atol=3e-3)
    assert np.all(plug < p * (1 - p) - 0.01)
    assert learnable_mass([0, 4, 2], 4).tolist() == [0.0, 0.0, pytest.approx(4 / 12)]
    with pytest.raises(ValueError):
        learnable_mass([1], 1)


def _start_rows(held: list[int], prompts: list[int], samples: int = 8, hash_: str = "h") -> list[dict]:
    return [{"step": 0, "set": "heldout", "n": len(held), "samples": samples, "problems_hash": hash_ + "-held",
             "per_problem/correct": held, "per_problem/level": [1] * len(held)},
            {"step": 0, "set": "prompts", "n": len(prompts), "samples": samples, "problems_hash": hash_ + "-rl",
             "per_problem/correct": prompts, "per_problem/level": [0] * len(prompts)}]


def test_start_predictors_are_the_hand_computed_means_with_paired_draws():
    held, prompts = [0, 2, 8, 1], [4, 0, 8, 6]
    res = Resampler(FAST)
    point, draws = start_predictors(_start_rows(held, prompts), res.problem_weights)
    p1 = np.mean([0, 2 / 8, 1, 1 / 8])
    p8 = np.mean([0, 1, 1, 1])
    assert point["start/pass@1"] == pytest.approx(p1)
    assert point["start/pass@k"] == pytest.approx(p8) and point["start/k"] == 8
    assert point["start/headroom"] == pytest.approx(p8 - p1)
    assert point["start/learnable_mass"] == pytest.approx(np.mean([16, 0, 0, 12]) / 56)
    assert all(d.shape == (300,) for d in draws.values())
    # another checkpoint on the same problems gets the same problem weights: its difference draws are paired,
    # so a checkpoint that solves one more problem is ahead in every draw that keeps that problem
    other, _ = start_predictors(_start_rows([0, 2, 8, 8], prompts), res.problem_weights)
    _, other_draws = start_predictors(_start_rows([0, 2, 8, 8], prompts), res.problem_weights)
    diff = other_draws["start/pass@1"] - draws["start/pass@1"]
    assert np.all(diff >= 0) and np.mean(diff > 0) > 0.6
    assert np.array_equal(other_draws["start/learnable_mass"], draws["start/learnable_mass"])


def test_start_rows_leave_out_damaged_rows():
    good = _start_rows([1, 2], [3, 4], samples=4)
    bad = [dict(good[0], **{"per_problem/correct": [1, 9]}),              # a count above the samples
           dict(good[1], **{"per_problem/correct": [1.5, 2]}),            # not an integer
           {"set": "heldout", "samples": 4}]                               # no counts
    assert set(start_rows(good)) == {"heldout", "prompts"}
    assert start_rows(bad) == {}
    assert start_predictors(bad, Resampler(FAST).problem_weights) == ({}, {})


def test_learnable_mass_trend_from_the_training_groups():
    """Groups of 8 whose mixed outcomes run out over 20 steps: a negative trend whose interval excludes 0;
    constant groups: an interval around 0."""
    rng = np.random.default_rng(1)
    rows_fall, rows_flat = [], []
    for t in range(1, 21):
        p = 0.5 + 0.45 * t / 20                  # success drifts to 0.95: p(1-p) 0.25 -> 0.05
        rows_fall.append({"step": t, "per_group/correct": rng.binomial(8, p, size=16).tolist()})
        rows_flat.append({"step": t, "per_group/correct": rng.binomial(8, 0.5, size=16).tolist()})
    rows_fall.append({"step": 21, "per_group/correct": None})               # a row without counts is skipped
    steps, values = group_learnable_mass(rows_fall, 8)
    assert len(steps) == 20 and values[0] == pytest.approx(learnable_mass(rows_fall[0]["per_group/correct"], 8).mean())
    point, draws = learnable_mass_trend(steps, values, 500, np.random.default_rng(0))
    lo, hi = np.quantile(draws["probe/learnable_mass_trend"], [0.025, 0.975])
    assert point["probe/learnable_mass_trend"] < -0.1 and hi < 0
    point, draws = learnable_mass_trend(*group_learnable_mass(rows_flat, 8), 500, np.random.default_rng(0))
    lo, hi = np.quantile(draws["probe/learnable_mass_trend"], [0.025, 0.975])
    assert lo < 0 < hi and point["probe/learnable_mass"] == pytest.approx(0.25 * 8 / 8, abs=0.03)
    assert group_learnable_mass(rows_fall, None)[0].size == 0              # no group size: no predictor
    assert learnable_mass_trend(steps[:2], values[:2], 10, np.random.default_rng(0)) is None


def test_compute_is_the_rollout_tokens_through_each_step():
    rows = [{"step": t, "len/mean": 10.0 * t} for t in range(1, 6)]
    meta = {"prompts_per_step": 4, "num_generations": 2}
    assert compute_through(rows, meta, [0, 2, 5]).tolist() == [0.0, 8 * 30.0, 8 * 150.0]


# --- the sigmoid extrapolation --------------------------------------------------------------------

def _sig(c, r0, a, b, mid):
    return r0 + (a - r0) / (1 + (mid / c) ** b)


def _curves(params, b, compute, c_full, cap=1.0, n=400):
    out = []
    for i, (r0, a, mid) in enumerate(params):
        acc = np.array([r0] + [_sig(c, r0, a, b, mid) for c in compute[1:]])
        out.append(Curve(str(i), np.asarray(compute, dtype=float), acc, n, cap, c_full))
    return out


def test_sigmoid_fit_recovers_exact_curves_on_the_grid():
    """Noise-free curves whose B and C_mid lie on the grid: the shared B, each A and R(C_full) come back."""
    compute = np.array([0, 1e4, 2e4, 4e4, 8e4])
    b = float(B_GRID[4])
    mids = [MID_GRID[20] * 8e4, MID_GRID[24] * 8e4, MID_GRID[16] * 8e4]
    params = [(0.3, 0.8, mids[0]), (0.5, 0.9, mids[1]), (0.1, 0.4, mids[2])]
    fits, _ = fit_sigmoid(_curves(params, b, compute, c_full=1e6))
    for i, (r0, a, mid) in enumerate(params):
        f = fits[str(i)]
        assert f["B"] == b and f["C_mid"] == pytest.approx(mid) and f["A"] == pytest.approx(a, abs=1e-9)
        assert f["predicted"] == pytest.approx(_sig(1e6, r0, a, b, mid), abs=1e-9)
        assert f["R0"] == r0 and f["extrapolated"] == (1e6 > mid) and f["mid_observed"] == (mid <= 8e4)


def test_sigmoid_ceiling_is_capped_by_pass_at_k():
    """A curve still rising steeply would extrapolate far above what the checkpoint can ever sample right;
    A stops at the cap (pass@k) and the fit says so."""
    compute = np.array([0, 1e4, 2e4, 3e4])
    acc = np.array([0.2, 0.4, 0.55, 0.65])
    free, _ = fit_sigmoid([Curve("x", compute, acc, 400, 1.0, 1e6)])
    capped, _ = fit_sigmoid([Curve("x", compute, acc, 400, 0.7, 1e6)])
    assert free["x"]["A"] > 0.7 and not free["x"]["capped"]
    assert 0.69 <= capped["x"]["A"] <= 0.7 and capped["x"]["predicted"] <= 0.7
    assert capped["x"]["predicted"] < free["x"]["predicted"] - 0.05


def test_sigmoid_prediction_is_read_at_the_full_compute_not_at_the_ceiling():
    compute = np.array([0, 1e4, 2e4, 4e4])
    mid = float(MID_GRID[30] * 4e4)                    # C_mid far beyond the probe
    curves = _curves([(0.3, 0.9, mid)], float(B_GRID[2]), compute, c_full=8e4)
    f, _ = fit_sigmoid(curves)
    assert f["0"]["A"] == pytest.approx(0.9, abs=1e-6)
    assert f["0"]["predicted"] == pytest.approx(_sig(8e4, 0.3, 0.9, float(B_GRID[2]), mid), abs=1e-9)
    assert f["0"]["predicted"] < 0.45 and not f["0"]["extrapolated"] and not f["0"]["mid_observed"]


def test_sigmoid_parametric_bootstrap_interval_covers_the_truth():
    """Binomial noise on 300 problems around known curves: the 95% interval of R(C_full) holds the true
    value in at least 85% of 60 simulated probes (the fit is refitted, B included, in every draw)."""
    rng = np.random.default_rng(3)
    compute = np.array([0, 2e4, 4e4, 6e4, 8e4])
    b = float(B_GRID[4])
    params = [(0.3, 0.7, 6e4), (0.5, 0.8, 3e4), (0.2, 0.5, 1e5)]
    truth = [_sig(4e5, r0, a, b, mid) for r0, a, mid in params]
    hits = 0
    for sim in range(60):
        curves = []
        for i, (r0, a, mid) in enumerate(params):
            mean = np.array([r0] + [_sig(c, r0, a, b, mid) for c in compute[1:]])
            acc = rng.binomial(300, mean) / 300
            curves.append(Curve(str(i), compute, acc, 300, 1.0, 4e5))
        fits, draws = fit_sigmoid(curves, draws=200, seed=sim)
        assert all(d.shape == (200,) for d in draws.values())
        hits += sum(fits[str(i)]["ci"][0] <= truth[i] <= fits[str(i)]["ci"][1] for i in range(3))
    assert hits / 180 >= 0.85, hits


def test_shared_mid_fits_one_midpoint_for_every_curve():
    compute = np.array([0, 1e4, 2e4, 4e4])
    curves = _curves([(0.3, 0.8, 3e4), (0.5, 0.9, 3e4)], 1.5, compute, c_full=4e5)
    fits, _ = fit_sigmoid(curves, shared_mid=True)
    assert fits["0"]["C_mid"] == pytest.approx(fits["1"]["C_mid"])     # same multiple of the same compute


# --- the entropy law ------------------------------------------------------------------------------

def test_entropy_law_recovers_a_b_and_the_ceiling():
    h = np.array([1.2, 0.9, 0.6, 0.4, 0.3])
    acc = -0.2 * np.exp(h) + 0.9
    law = entropy_law(h, acc)
    assert law["a"] == pytest.approx(0.2) and law["b"] == pytest.approx(0.9)
    assert law["ceiling"] == pytest.approx(0.7) and law["r2"] == pytest.approx(1.0)
    draws = entropy_law(h, np.stack([acc, acc + 0.01]))
    assert draws["ceiling"] == pytest.approx([0.7, 0.71])
    assert entropy_law(np.array([0.5, 0.5, 0.5]), np.array([0.1, 0.2, 0.3])) is None     # no spread
    assert entropy_law(np.array([0.5, np.nan, 0.4]), np.array([0.1, 0.2, 0.3])) is None  # two pairs


def test_entropy_at_an_evaluation_is_the_next_steps_entropy():
    """TRL logs at step t + 1 the entropy of the rollouts of the policy after t updates: the policy the
    step-t evaluation saw."""
    rows = [{"step": t, "entropy": float(t)} for t in range(1, 11)]
    assert entropy_at_evals(rows, np.array([0, 5, 10]), window=1).tolist() == [1.0, 6.0, 10.0]


# --- in scores.json -------------------------------------------------------------------------------

def _with_start(pdir, held, prompts, samples=8, groups=None):
    (pdir / "start.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _start_rows(held, prompts, samples)))
    if groups is not None:
        rows = [json.loads(x) for x in (pdir / "metrics.jsonl").read_text().splitlines()]
        for row, g in zip(rows, groups):
            row["per_group/correct"] = g
        (pdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_scores_json_carries_every_predictor_with_a_ci(tmp_path):
    b = RunBuilder(tmp_path / "run", analysis={"bootstrap": 300})
    rng = np.random.default_rng(0)
    kw = dict(steps=40, eval_every=10, n=120, k=4)
    strong = b.probe("strong.step-1", "clean", rng_seed=1, heldout=ramp(0.4, 0.7, 40), **kw)
    weak = b.probe("weak.step-1", "clean", rng_seed=2, heldout=ramp(0.2, 0.25, 40), **kw)
    _with_start(strong, rng.binomial(8, 0.5, 60).tolist(), rng.binomial(8, 0.5, 60).tolist(),
                groups=[rng.binomial(8, 0.5, 8).tolist() for _ in range(40)])
    _with_start(weak, rng.binomial(8, 0.1, 60).tolist(), rng.binomial(8, 0.05, 60).tolist(),
                groups=[rng.binomial(8, 0.05, 8).tolist() for _ in range(40)])
    scores = score_run(tmp_path / "run")
    s, w = scores["checkpoints"]["strong.step-1"], scores["checkpoints"]["weak.step-1"]
    names = {"readiness", "combined", "start/acc", "start/pass@1", "start/pass@k", "start/headroom",
             "start/learnable_mass", "probe/learnable_mass", "probe/learnable_mass_trend", "final/acc",
             "sigmoid/predicted", "entropy_law/ceiling"}
    assert set(s["predictors"]) == names == set(w["predictors"])
    # the shipped default (analysis.rank_by: combined): readiness is the predicted final accuracy from step-0 pass@k
    for c in (s, w):
        assert c["score"] == pytest.approx(0.022 + 0.852 * c["metrics"]["start/pass@k"])
        assert c["metrics"]["readiness/components"] != pytest.approx(c["score"])
    assert scores["ranking"] == ["strong.step-1", "weak.step-1"]
    assert not [n for n in scores["notes"] if "combined" in n]
    # the recommendation's reason says what the score is made of, not which component leads
    assert (f"readiness is the combined predictor (start/pass@k {s['metrics']['start/pass@k']:.3f} vs "
            f"{w['metrics']['start/pass@k']:.3f} for weak.step-1)") in scores["reason"]
    assert "largest lead" not in scores["reason"]
    for c in (s, w):
        for name, p in c["predictors"].items():
            assert p["ci"] is not None and p["ci"][0] <= p["ci"][1], name
        fit = c["sigmoid"][next(iter(c["sigmoid"]))]
        assert fit["c_full"] == pytest.approx(10 * fit["c_probe"])        # extrapolate_steps 0: 10 x the probe
    for name in ("start/pass@k", "start/learnable_mass", "probe/learnable_mass", "sigmoid/predicted", "final/acc"):
        assert s["predictors"][name]["ci"][0] > w["predictors"][name]["ci"][1], name
    assert s["sigmoid"]["strong.step-1"]["B"] == w["sigmoid"]["weak.step-1"]["B"]     # B is shared


def test_extrapolate_steps_sets_the_full_compute(tmp_path):
    b = RunBuilder(tmp_path / "run", analysis={"bootstrap": 100, "extrapolate_steps": 400})
    b.probe("a.step-1", "clean", rng_seed=1, steps=40, eval_every=10, n=60)
    fit = score_run(tmp_path / "run")["checkpoints"]["a.step-1"]["sigmoid"]["a.step-1"]
    assert fit["c_full"] == pytest.approx(10 * fit["c_probe"])
    b.recipe["analysis"]["extrapolate_steps"] = 80
    b.write_recipe()
    fit = score_run(tmp_path / "run")["checkpoints"]["a.step-1"]["sigmoid"]["a.step-1"]
    assert fit["c_full"] == pytest.approx(2 * fit["c_probe"])
    assert math.isfinite(fit["predicted"])


# --- the data: success counts and the step-0 sampling pass (octo/accuracy.py) -----------------------

class _Chars:
    """A character tokenizer: enough for the scripted backend below to know which problem a prompt is."""

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(ch) for ch in text]}


class _Scripted:
    """A rollout backend (octo.rollout protocol) whose i-th sample of a problem is right iff i < correct[q]:
    the counts the evaluation must report are known exactly."""

    def __init__(self, correct: dict[str, int], answers: dict[str, str]):
        self.correct, self.answers, self.calls = correct, answers, []

    def generate(self, prompts, *, n, max_tokens, temperature=1.0, top_p=1.0, seed=None):
        from octo.rollout.base import Completion

        self.calls.append((n, temperature, seed))
        out = []
        for ids in prompts:
            q = "".join(map(chr, ids)).split("User:")[1].split("\n")[0]
            right = self.correct[q] if temperature > 0 else int(self.correct[q] > n // 2)
            texts = [f"so \\boxed{{{self.answers[q] if i < right else '-1'}}}" for i in range(n)]
            out.append([Completion(token_ids=[1] * (3 + i), text=t, logprobs=[0.0] * (3 + i),
                                   finish_reason="length" if i == 0 else "stop") for i, t in enumerate(texts)])
        return out


def _problems(k: int, level_of=lambda i: 1 + i % 2, tag="q") -> list[dict]:
    return [{"question": f"{tag}{i}", "answer": str(i + 10), "level": level_of(i)} for i in range(k)]


def test_evaluation_rows_keep_per_problem_success_counts():
    from octo.accuracy import evaluate_problems
    from octo.verifiers import shared_pool

    probs = _problems(6)
    correct = {p["question"]: c for p, c in zip(probs, [0, 1, 2, 3, 4, 4])}
    backend = _Scripted(correct, {p["question"]: p["answer"] for p in probs})
    res = evaluate_problems(backend, _Chars(), probs, template="User:{question}\nAssistant:", max_new_tokens=8,
                            verifier=None, pool=shared_pool(), k=4, temperature=1.0, seed=3)
    assert res["per_problem/sampled_correct"] == [0, 1, 2, 3, 4, 4]
    assert res["per_problem/sampled"] == [c / 4 for c in [0, 1, 2, 3, 4, 4]]
    assert res["pass@k"] == pytest.approx(5 / 6)
    # pass@j for every j <= k is now estimable from the row: pass@1 is the sampled accuracy
    assert pass_at_k(res["per_problem/sampled_correct"], 4, 1).mean() == pytest.approx(res["acc/sampled"])


def test_start_pass_writes_counts_on_fixed_subsets_of_heldout_and_prompts():
    from octo.accuracy import problems_hash, select_problems, start_pass
    from octo.verifiers import shared_pool

    held, prompts = _problems(10), _problems(12, level_of=lambda i: 0, tag="p")
    counts = {p["question"]: i % 5 for i, p in enumerate(held + prompts)}
    answers = {p["question"]: p["answer"] for p in held + prompts}
    backend = _Scripted(counts, answers)
    rows = start_pass(backend, _Chars(), heldout=held, prompts=prompts, template="User:{question}\nAssistant:",
                      max_new_tokens=16, pool=shared_pool(), samples=4, heldout_problems=6, prompt_problems=8,
                      temperature=0.7, seed=5)
    assert [r["set"] for r in rows] == ["heldout", "prompts"]
    h, p = rows
    subset = select_problems(held, 6)                       # level-balanced, deterministic
    assert h["n"] == 6 and h["samples"] == 4 and h["problems_hash"] == problems_hash(subset)
    assert h["per_problem/correct"] == [counts[q["question"]] for q in subset]
    assert h["per_problem/level"] == [q["level"] for q in subset]
    assert h["pass@1"] == pytest.approx(np.mean(h["per_problem/correct"]) / 4)
    assert h["pass@4"] == pytest.approx(np.mean([c > 0 for c in h["per_problem/correct"]]))
    assert p["learnable_mass"] == pytest.approx(learnable_mass(p["per_problem/correct"], 4).mean())
    assert h["clip_ratio"] == pytest.approx(1 / 4) and h["temperature"] == 0.7 and h["max_len"] == 16
    assert backend.calls == [(4, 0.7, 5), (4, 0.7, 6)]
    # a set of size 0 is skipped; the rows read back as the predictors' input
    only = start_pass(backend, _Chars(), heldout=held, prompts=prompts, template="User:{question}\nAssistant:",
                      max_new_tokens=16, pool=shared_pool(), samples=4, heldout_problems=0, prompt_problems=8)
    assert [r["set"] for r in only] == ["prompts"]
    assert set(start_rows(rows)) == {"heldout", "prompts"}


def test_start_pass_with_a_real_tiny_model(tiny_ctx):
    """The embedded hf backend on an untrained toy model: rows of the documented shape, counts in range."""
    from octo.accuracy import start_pass
    from octo.model import build_toy_model
    from octo.rollout import make_backend
    from octo.rollout.config import RolloutConfig
    from octo.verifiers import shared_pool

    recipe = tiny_ctx.recipe
    model = build_toy_model(recipe.model, tiny_ctx.tokenizer, seed=0).eval()
    backend = make_backend(RolloutConfig(backend="hf"), tokenizer=tiny_ctx.tokenizer, model=model)
    try:
        rows = start_pass(backend, tiny_ctx.tokenizer, heldout=tiny_ctx.problems(recipe.data.heldout),
                          prompts=tiny_ctx.problems(recipe.data.prompts), template=recipe.probe.prompt_template,
                          max_new_tokens=8, pool=shared_pool(recipe.verifier), samples=3, heldout_problems=4,
                          prompt_problems=5, seed=1)
    finally:
        backend.close()
    assert [(r["set"], r["n"], len(r["per_problem/correct"])) for r in rows] == [("heldout", 4, 4), ("prompts", 5, 5)]
    for r in rows:
        assert all(0 <= c <= 3 for c in r["per_problem/correct"])
        assert {"step", "samples", "temperature", "max_len", "problems_hash", "pass@1", "pass@3", "learnable_mass",
                "len/mean", "clip_ratio", "per_problem/level"} <= set(r)
        json.dumps(r)                                       # a JSONL row


def test_group_success_counts_split_a_step_into_its_prompt_groups():
    from octo.accuracy import group_success_counts

    assert group_success_counts([1, 0, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1], 4) == [3, 0, 4]
    with pytest.raises(ValueError):
        group_success_counts([1, 0, 1], 2)


def test_start_pass_settings_are_checked():
    from octo.config import ProbeConfig
    from octo.errors import ConfigError
    from octo.schema import from_dict

    cfg = from_dict(ProbeConfig, {"start_samples": 8, "start_prompt_problems": 0}, "probe")
    assert (cfg.start_samples, cfg.start_heldout_problems, cfg.start_prompt_problems) == (8, 64, 0)
    with pytest.raises(ConfigError, match="start_samples"):
        from_dict(ProbeConfig, {"start_samples": 1}, "probe").validate()


# --- combining without peeking (octo.analysis.combine) -----------------------------------------------

def _world(seed: int, n: int = 12):
    """n checkpoints with a known RL outcome y; 'good' tracks it, 'half' tracks half of it, 'noise' does not."""
    rng = np.random.default_rng(seed)
    y = np.sort(rng.uniform(0.1, 0.9, n))
    X = {"good": y + rng.normal(0, 0.03, n), "half": 0.5 * y + rng.normal(0, 0.08, n),
         "noise": rng.uniform(0, 1, n), "anti": 1 - y + rng.normal(0, 0.03, n)}
    return X, y


def test_fit_finds_the_simplex_weights_and_reads_them_as_an_outcome():
    from octo.analysis.combine import fit, simplex

    assert simplex(3, 0.5).tolist() == [[0, 0, 1], [0, .5, .5], [0, 1, 0], [.5, 0, .5], [.5, .5, 0], [1, 0, 0]]
    rng = np.random.default_rng(0)
    X = {"a": rng.uniform(0, 1, 30), "b": rng.uniform(0, 2, 30)}
    y = 0.2 + 0.5 * X["a"] + 0.3 * X["b"]
    m = fit(X, y, ("a", "b"), step=0.01)
    # natural-unit coefficients and intercept come back (to the grid's resolution)
    d = m.to_dict()
    assert d["coefs"] == pytest.approx([0.5, 0.3], rel=0.05) and d["intercept"] == pytest.approx(0.2, abs=0.03)
    assert sum(d["weights"]) == pytest.approx(1.0) and np.corrcoef(m.score(X), y)[0, 1] > 0.999
    assert m.score(X) == pytest.approx(y, abs=0.02)
    # a predictor that falls as the outcome rises gets weight 0; named "-anti" it is used
    W, y2 = _world(1)
    assert fit(W, y2, ("good", "anti")).weights == (1.0, 0.0)
    neg = fit(W, y2, ("-anti",))
    assert neg.weights == (1.0,) and neg.slope > 0 and np.corrcoef(neg.score(W), y2)[0, 1] > 0.9


def test_loco_predictions_never_see_their_own_truth():
    """Changing checkpoint r's outcome leaves its own held-out prediction unchanged (and moves the others)."""
    from octo.analysis.combine import loco

    X, y = _world(2)
    base = loco(X, y, ("good", "half"))
    y2 = y.copy()
    y2[5] += 0.5
    moved = loco(X, y2, ("good", "half"))
    assert moved[5] == pytest.approx(base[5])
    assert not np.allclose(np.delete(moved, 5), np.delete(base, 5))


def test_select_picks_the_informative_predictor_and_judges_the_choice_nested():
    from octo.analysis.combine import kendall_tau, select

    X, y = _world(3)
    rep = select(X, y, (("noise",), ("half",), ("good",), ("good", "noise")))
    assert rep["chosen"] == ["good"] and rep["fit"]["coefs"][0] == pytest.approx(1.0, abs=0.1)
    assert rep["nested_tau"] > 0.8
    taus = {tuple(c["features"]): c["loco_tau"] for c in rep["candidates"]}
    assert taus[("good",)] > taus[("half",)] > taus[("noise",)]
    assert rep["nested_tau"] == pytest.approx(kendall_tau(rep["nested_predictions"], y))


def test_held_out_predictions_of_noise_rank_at_random():
    """Two predictors of pure noise, 10 checkpoints, 300 worlds: the mean LOCO tau is 0 (within 3 SE). A fit whose
    held-out checkpoint falls back to the training mean would rank backwards here (about -0.13)."""
    from octo.analysis.combine import kendall_tau, loco

    taus = []
    for seed in range(300):
        rng = np.random.default_rng(seed)
        y = rng.uniform(0, 1, 10)
        X = {"n": rng.uniform(0, 1, 10), "m": rng.uniform(0, 1, 10)}
        taus.append(kendall_tau(loco(X, y, ("n", "m")), y))
    assert abs(np.mean(taus)) < 3 * np.std(taus) / np.sqrt(len(taus))


def test_choosing_among_noise_predictors_is_optimistic_unless_judged_nested():
    """Five predictors of pure noise: the best LOCO tau of the five is biased upwards by the choice; the nested
    tau, which makes the choice again without each checkpoint, is not."""
    from octo.analysis.combine import select

    best, nested = [], []
    for seed in range(40):
        rng = np.random.default_rng(100 + seed)
        y = rng.uniform(0, 1, 10)
        X = {f"n{j}": rng.uniform(0, 1, 10) for j in range(5)}
        rep = select(X, y, tuple((f"n{j}",) for j in range(5)))
        best.append(rep["chosen_loco_tau"])
        nested.append(rep["nested_tau"])
    assert np.mean(best) > 0.2
    assert abs(np.mean(nested)) < 0.12 and np.mean(best) > np.mean(nested) + 0.15


def test_transfer_fits_on_one_world_seed_and_judges_on_another():
    from octo.analysis.combine import transfer

    (Xa, ya), (Xb, yb) = _world(4), _world(5)
    good = transfer(Xa, ya, Xb, yb, ("good",))
    noise = transfer(Xa, ya, Xb, yb, ("noise",))
    assert good["tau"] > 0.8 and abs(noise["tau"]) < 0.6 and len(good["predictions"]) == len(yb)


def test_select_refuses_too_few_checkpoints_or_no_usable_predictor():
    from octo.analysis.combine import select

    X, y = _world(6, n=3)
    with pytest.raises(ValueError, match="at least 4"):
        select(X, y)
    X, y = _world(6)
    X["good"][0] = np.nan
    with pytest.raises(ValueError, match="no candidate"):
        select(X, y, (("good",), ("missing",)))


def test_combined_readiness_from_the_recipe_with_a_paired_ci(tmp_path):
    """analysis.combination turns fitted coefficients into a 'combined' predictor per checkpoint; its draws
    combine the predictors' own draws, so its interval is that of the sum."""
    from octo.analysis.combine import predictor_matrix

    combo = {"start/acc": 0.5, "final/acc": 0.5}
    b = RunBuilder(tmp_path / "run", analysis={"bootstrap": 300, "combination": combo, "combination_intercept": 0.1})
    b.probe("a.step-1", "clean", rng_seed=1, steps=40, eval_every=10, n=100)
    b.probe("b.step-1", "weak", rng_seed=2, steps=40, eval_every=10, n=100)
    scores = score_run(tmp_path / "run")
    for cid, c in scores["checkpoints"].items():
        p = c["predictors"]
        assert p["combined"]["value"] == pytest.approx(0.1 + 0.5 * p["start/acc"]["value"] + 0.5 * p["final/acc"]["value"])
        assert p["combined"]["ci"][0] <= p["combined"]["value"] <= p["combined"]["ci"][1]
    X = predictor_matrix(scores["checkpoints"], ["a.step-1", "b.step-1"])
    assert X["combined"].shape == (2,) and np.isnan(X.get("start/pass@k", np.array([np.nan]))).all()
    # a predictor the checkpoints lack: no combined value, and a note says why
    b.recipe["analysis"]["combination"] = {"start/pass@k": 1.0}
    b.write_recipe()
    scores = score_run(tmp_path / "run")
    assert "combined" not in scores["checkpoints"]["a.step-1"]["predictors"]
    note = [n for n in scores["notes"] if n.startswith("no combined readiness for")]
    assert note == ["no combined readiness for a.step-1, b.step-1: no start/pass@k (the step-0 sampling pass "
                    "measures it: probe.start_samples > 0); so the components' readiness ranks every checkpoint "
                    "(analysis.rank_by)"]


def test_combination_names_are_checked(tmp_path):
    from octo.errors import ConfigError

    with pytest.raises(ConfigError, match="combination.nope"):
        AnalysisConfig(combination={"nope": 1.0}).validate()
    AnalysisConfig(combination={"-start/learnable_mass": 1.0, "sigmoid/predicted": 0.5}).validate()
    # one '-' negates; a second one is no predictor's name (combined_readiness reads it the same way)
    with pytest.raises(ConfigError, match="combination.--start/pass@k"):
        AnalysisConfig(combination={"--start/pass@k": 1.0}).validate()


def test_the_machinery_end_to_end_finds_the_predictor_the_world_rewards(tmp_path):
    """A synthetic world where RL lifts each checkpoint to its own pass@k (Yue et al. 2025), and step-0 accuracy
    is independent of that ceiling: scored from run-directory files, step-0 pass@k ranks the outcome and
    pass@1 does not, and select() chooses a set carrying pass@k whose nested tau beats pass@1's own tau."""
    from octo.analysis.combine import kendall_tau, predictor_matrix, select

    rng = np.random.default_rng(11)
    b = RunBuilder(tmp_path / "run", analysis={"bootstrap": 100})
    truth, ids = [], []
    for j in range(10):
        cover = rng.uniform(0.3, 0.9)                          # share of problems the checkpoint can ever solve
        level = rng.uniform(0.05, 0.5)                         # its step-0 success on those
        cid = f"c{j}.step-1"
        ids.append(cid)
        truth.append(0.95 * cover)
        r0 = cover * level
        pdir = b.probe(cid, "clean", rng_seed=j, steps=20, eval_every=10, n=100,
                       heldout=lambda t, r0=r0, c=cover: r0 + (0.95 * c - r0) * 0.05 * t / 20)
        counts = [(rng.binomial(16, level) if rng.random() < cover else 0) for _ in range(120)]
        rows = _start_rows(counts[:60], counts[60:], samples=16)
        (pdir / "start.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    scores = score_run(tmp_path / "run")
    X = predictor_matrix(scores["checkpoints"], ids)
    y = np.array(truth)
    assert kendall_tau(X["start/pass@k"], y) > 0.6
    assert kendall_tau(X["start/pass@1"], y) < kendall_tau(X["start/pass@k"], y) - 0.2
    rep = select(X, y)
    # pass@k itself, or pass@1 with the headroom (their sum is pass@k)
    assert {"start/pass@k", "start/headroom"} & set(rep["chosen"]), rep["chosen"]
    assert rep["nested_tau"] > kendall_tau(X["start/pass@1"], y) + 0.2, (rep["nested_tau"], rep["nested_picks"])


def test_rank_by_combined_ranks_and_recommends_by_the_combined_predictor(tmp_path):
    """analysis.rank_by: combined makes the combined predictor each checkpoint's score (interval and paired
    differences included), keeps the components' score as readiness/components, and falls back to readiness with a
    note when a checkpoint lacks a predictor of the combination."""
    from octo.errors import ConfigError

    # a combination that prefers the checkpoint readiness puts second: low start accuracy ranks first
    combo = {"-start/acc": 1.0}
    b = RunBuilder(tmp_path / "run", analysis={"bootstrap": 300, "combination": combo, "combination_intercept": 0.0,
                                                "rank_by": "readiness"})
    b.probe("a.step-1", "clean", rng_seed=1, steps=40, eval_every=10, n=100)
    b.probe("b.step-1", "weak", rng_seed=2, steps=40, eval_every=10, n=100)
    by_readiness = score_run(tmp_path / "run")
    b.recipe["analysis"]["rank_by"] = "combined"
    b.write_recipe()
    scores = score_run(tmp_path / "run")
    for cid, c in scores["checkpoints"].items():
        assert c["score"] == pytest.approx(-c["metrics"]["start/acc"])
        assert c["metrics"]["readiness/components"] == pytest.approx(by_readiness["checkpoints"][cid]["score"])
        assert c["ci"] == pytest.approx(c["metric_cis"]["combined"])
    expected = sorted(scores["checkpoints"], key=lambda cid: scores["checkpoints"][cid]["metrics"]["start/acc"])
    assert scores["ranking"] == expected and scores["recommended"] == expected[0]
    other = expected[1]
    assert scores["differences"][other]["diff"] == pytest.approx(scores["checkpoints"][other]["score"]
                                                                 - scores["checkpoints"][expected[0]]["score"])
    # a predictor the checkpoints lack: readiness ranks, and a note says so
    b.recipe["analysis"]["combination"] = {"start/pass@k": 1.0}
    b.write_recipe()
    fallback = score_run(tmp_path / "run")
    assert fallback["ranking"] == by_readiness["ranking"]
    assert any("no combined readiness for" in n and "the components' readiness ranks every checkpoint" in n
               for n in fallback["notes"])
    b.recipe["analysis"]["combination"] = {}
    b.write_recipe()
    with pytest.raises(ConfigError, match="rank_by"):
        score_run(tmp_path / "run")
