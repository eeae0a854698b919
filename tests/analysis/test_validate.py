"""octo validate: Kendall tau and its bootstrap, the analysis on a synthetic experiment with a known answer,
recipe checks (one-line errors, exit 2), and the reduced pipeline end to end (slow)."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from octo.analysis.stats import kendall_tau, kendall_tau_rows, ranking, ranks, tau_ci, tau_gain_ci
from octo.analysis.validation import separated_agreement, separated_pairs, write_validation
from octo.config import load_recipe, stage_order
from octo.runio import read_jsonl

from tests.analysis.synth import RunBuilder, const, jump, ramp
from tests.conftest import QUICKSTART, REPO

VALIDATION = REPO / "recipes" / "toy" / "validation.yaml"


# --- Kendall tau-b ----------------------------------------------------------------------------

def brute_tau_b(x, y) -> float:
    """Kendall (1945) tau-b by counting pairs, independently of the vectorised implementation."""
    c = d = tx = ty = 0
    for i, j in itertools.combinations(range(len(x)), 2):
        a, b = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
        if a == 0 and b == 0:
            continue
        if a == 0:
            tx += 1
        elif b == 0:
            ty += 1
        elif a == b:
            c += 1
        else:
            d += 1
    den = np.sqrt((c + d + tx) * (c + d + ty))
    return (c - d) / den if den else float("nan")


@pytest.mark.parametrize("x, y, expected", [
    ([1, 2, 3, 4, 5], [1, 2, 3, 4, 5], 1.0),
    ([1, 2, 3, 4, 5], [5, 4, 3, 2, 1], -1.0),
    ([1, 2, 3, 4], [2, 1, 4, 3], 1 / 3),               # C=4, D=2, no ties: (4-2)/6
    ([1, 2, 2, 3], [1, 3, 2, 4], 5 / np.sqrt(30)),     # one tie in x: (5-0)/sqrt(5*6) = 0.9129 (scipy: 0.912870929)
    ([1, 1, 2, 2], [1, 2, 1, 2], 0.0),                 # C=1 (pair 0,3), D=1 (pair 1,2): 0/sqrt(4*4)
    ([0.3, 0.3, 0.3], [1, 2, 3], float("nan")),        # a constant predictor ranks nothing
])
def test_kendall_tau_known_values(x, y, expected):
    got = kendall_tau(x, y)
    if np.isnan(expected):
        assert np.isnan(got)
    else:
        assert got == pytest.approx(expected, abs=1e-12)


def test_kendall_tau_matches_pair_counting_with_ties():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 4, size=(300, 7)).astype(float)   # many ties on both sides
    Y = rng.integers(0, 4, size=(300, 7)).astype(float)
    rows = kendall_tau_rows(X, Y)
    for x, y, t in zip(X, Y, rows):
        want = brute_tau_b(x, y)
        assert (np.isnan(t) and np.isnan(want)) or t == pytest.approx(want, abs=1e-12)
    assert kendall_tau([3, 1, 2], [30, 10, 20]) == kendall_tau([3, 1, 2], [3.5, 1.5, 2.5]) == 1.0  # ranks only


def test_tau_bootstrap_ci():
    truth = np.arange(7, dtype=float)
    rng = np.random.default_rng(1)
    # a predictor equal to the truth in every draw: the interval is exactly [1, 1]
    exact = np.tile(truth, (500, 1))
    assert tau_ci(exact, exact, 0.95)[0] == [1.0, 1.0]
    # noise much larger than the gaps: the interval is wide and contains 0
    noisy = truth + rng.normal(0, 20, size=(500, 7))
    ci, finite = tau_ci(noisy, exact, 0.95)
    assert finite == 500 and ci[0] < 0 < ci[1] and ci[1] - ci[0] > 0.8
    # noise comparable to the gaps: a positive interval, narrower than pure noise, below 1
    mild = truth + rng.normal(0, 1.0, size=(500, 7))
    lo, hi = tau_ci(mild, exact, 0.95)[0]
    assert 0 < lo < hi <= 1 and hi - lo < ci[1] - ci[0]
    # the interval is the percentile range of the per-draw taus
    taus = kendall_tau_rows(mild, exact)
    assert [lo, hi] == pytest.approx(list(np.quantile(taus, [0.025, 0.975])))
    # undefined in most draws (a constant predictor): no interval
    assert tau_ci(np.zeros((500, 7)), exact, 0.95)[0] is None


def test_tau_gain_is_paired_over_the_same_draws():
    """readiness tau minus a baseline's: the percentile CI of the per-draw difference (both taus from the same draw)
    and the share of draws where the first ranks better, ties half."""
    rng = np.random.default_rng(2)
    truth = np.arange(7, dtype=float) + rng.normal(0, 0.6, size=(400, 7))   # a noisy truth, shared by both
    good = np.tile(np.arange(7, dtype=float), (400, 1))
    poor = good + rng.normal(0, 10.0, size=(400, 7))
    ci, share = tau_gain_ci(good, poor, truth, 0.95)
    diffs = [brute_tau_b(good[b], truth[b]) - brute_tau_b(poor[b], truth[b]) for b in range(400)]
    assert ci == pytest.approx(list(np.quantile(diffs, [0.025, 0.975])))
    assert share == pytest.approx(np.mean(np.array(diffs) > 0) + 0.5 * np.mean(np.array(diffs) == 0))
    assert ci[0] > 0 and share > 0.95
    assert tau_gain_ci(good, good, truth, 0.95) == ([0.0, 0.0], 0.5)     # the same predictor: no gain, half
    swapped = tau_gain_ci(poor, good, truth, 0.95)
    assert swapped[0] == pytest.approx([-ci[1], -ci[0]]) and swapped[1] == pytest.approx(1 - share)
    assert tau_gain_ci(np.zeros((400, 7)), good, truth, 0.95) == (None, None)   # undefined in every draw


def test_separated_pairs_are_those_full_rl_tells_apart_and_predictors_are_counted_on_them():
    """A pair counts as separated when the CI of its full-RL difference excludes 0 (better one first); a predictor
    is counted right, wrong or tied on those pairs only, with the share right (ties half) and its CI over draws."""
    rng = np.random.default_rng(3)
    stages = ["a", "b", "c", "d"]
    truth = np.array([0.90, 0.50, 0.89, 0.10])             # a ~ c within noise; every other pair far apart
    draws = truth + rng.normal(0, 0.02, size=(2000, 4))
    pairs = separated_pairs(stages, truth, draws, 0.95)
    assert [p["pair"] for p in pairs] == [["a", "b"], ["a", "d"], ["c", "b"], ["b", "d"], ["c", "d"]]
    ab = pairs[0]
    assert ab["diff"] == pytest.approx(0.4)
    assert ab["ci"] == pytest.approx(list(np.quantile(draws[:, 0] - draws[:, 1], [0.025, 0.975])))
    x = np.array([0.45, 0.5, 0.5, 0.2])                     # b over a: wrong; c = b: tied; the rest right
    got = separated_agreement(pairs, x, np.tile(x, (50, 1)), 0.95)
    assert {k: got[k] for k in ("right", "wrong", "tied", "n")} == {"right": 3, "wrong": 1, "tied": 1, "n": 5}
    assert got["share"] == pytest.approx(3.5 / 5) and got["ci"] == pytest.approx([0.7, 0.7])
    assert got["wrong_pairs"] == [["a", "b"]]
    noisy = x + rng.normal(0, 0.5, size=(400, 4))
    per = np.array([[np.sign(d[i] - d[j]) for i, j in (p["idx"] for p in pairs)] for d in noisy])
    shares = ((per > 0).sum(axis=1) + 0.5 * (per == 0).sum(axis=1)) / 5
    assert separated_agreement(pairs, x, noisy, 0.95)["ci"] == pytest.approx(list(np.quantile(shares, [0.025, 0.975])))
    assert separated_agreement([], x, noisy, 0.95)["share"] is None


def test_ranking_groups_ties():
    groups = ranking(["a", "b", "c", "d"], [0.2, 0.5, 0.2, 0.1])
    assert groups == [["b"], ["a", "c"], ["d"]]
    assert ranks(groups) == {"b": 1, "a": 2, "c": 2, "d": 4}


# --- the analysis on a synthetic experiment with a known answer ---------------------------------

# stage -> (probe held-out curve, full-run held-out curve, extra curve overrides of the full run)
SYNTH = {
    "pretrain": (const(0.1), const(0.1), {}),
    "stable": (ramp(0.3, 0.45), ramp(0.3, 0.45), {}),
    "stable-more": (ramp(0.5, 0.65), ramp(0.5, 0.65), {}),
    "decay-short": (ramp(0.6, 0.75), ramp(0.6, 0.75), {}),
    "decay-long-noif": (ramp(0.4, 0.55), ramp(0.4, 0.55), {}),
    # the Long branch: its probe's lengths run to the limit within 10 steps; its full run collapses after 150
    "decay-long": (const(0.4), jump(150, 0.4, 0.05),
                   dict(length=jump(140, 220, 950), clip=jump(140, 0.03, 0.6), len_incorrect=jump(140, 240, 1010))),
}
TRUTH = ["decay-short", "stable-more", "decay-long-noif", "stable", "pretrain", "decay-long"]
PPL = {"pretrain": 40.0, "stable": 20.0, "stable-more": 15.0, "decay-short": 14.0, "decay-long-noif": 16.0,
       "decay-long": 12.0}


def synthetic_validation(root: Path) -> Path:
    b = RunBuilder(root, name="synthetic-validation", analysis={"bootstrap": 400})
    for stage in SYNTH:
        b.stage(stage, init="random" if stage == "pretrain" else "pretrain",
                gates=[{"step": 40, "ppl/general": PPL[stage], "acc/toy": 0.3, "format_rate": 0.9}])
    plan_rows = []
    for i, (stage, (probe_curve, full_curve, extra)) in enumerate(SYNTH.items()):
        cid = f"{stage}.step-40"
        probe_extra = {}
        if stage == "decay-long":
            probe_extra = dict(length=jump(10, 200, 900), clip=jump(10, 0.02, 0.5), len_correct=const(190),
                               len_incorrect=jump(10, 220, 1000))
        # RunBuilder writes probes/<id>: the full and fixed runs are written first and moved to their place
        full = b.probe(cid, "clean", steps=300, eval_every=25, rng_seed=100 + i, heldout=full_curve, **extra)
        dst = root / "validation" / "full" / cid
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(full), dst)
        row = {"stage": stage, "checkpoint_id": cid, "probes": [f"probes/{cid}"], "full": [f"validation/full/{cid}"],
               "fixed": []}
        if stage == "decay-long":   # the fixed long limit: lower accuracy early, the same collapse
            fx = b.probe(cid, "clean", steps=300, eval_every=25, rng_seed=200, heldout=jump(150, 0.25, 0.05), **extra)
            dst = root / "validation" / "fixed" / cid
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(fx), dst)
            row["fixed"] = [f"validation/fixed/{cid}"]
        b.probe(cid, "clean", steps=30, eval_every=10, rng_seed=10 + i, heldout=probe_curve, **probe_extra)
        plan_rows.append(row)
    plan = {
        "version": 1, "reduced": False, "command": "octo validate synthetic.yaml", "full_command": "octo validate x",
        "seeds": [0], "checkpoints": plan_rows, "descriptions": {}, "probe": {"steps": 30, "eval_every": 10,
                                                                              "max_len": "fixed 1024"},
        "full": {"steps": 300, "eval_every": 25, "max_len": "fixed 1024"}, "max_probe_ratio": 0.1,
        "ppl_metrics": ["ppl/general", "ppl/nosuch"], "target_tau": 0.8,
        "findings": {"long": "decay-long", "short": "decay-short", "with_if": "decay-long",
                     "without_if": "decay-long-noif", "fewer_stable_tokens": "stable",
                     "more_stable_tokens": "stable-more"},
        "stair_vs_fixed": {"checkpoint": "decay-long", "fixed_len": 1024, "stair": "stair", "early_steps": 150},
        "invocations": [{"wall_s": 12.0, "runs": 13, "of": 13}],
    }
    (root / "validation" / "plan.json").write_text(json.dumps(plan))
    return root


def _last_combined(path: Path) -> float:
    rows = [json.loads(x) for x in (path / "evals.jsonl").read_text().splitlines()]
    return (rows[-1]["acc"] + rows[-1]["acc/sampled"]) / 2


def _first_combined(path: Path) -> float:
    rows = [json.loads(x) for x in (path / "evals.jsonl").read_text().splitlines()]
    return (rows[0]["acc"] + rows[0]["acc/sampled"]) / 2


def test_analysis_of_a_known_experiment(tmp_path):
    run = synthetic_validation(tmp_path / "run")
    doc = tmp_path / "docs" / "validation.md"
    res = write_validation(run, doc=doc)
    stages = res["stages"]
    # the truth is read from the last evaluation of each full run
    truth = {s: _last_combined(run / "validation" / "full" / f"{s}.step-40") for s in stages}
    assert {s: res["checkpoints"][s]["full_final_acc"] for s in stages} == pytest.approx(truth)
    assert [s for g in res["truth_ranking"] for s in g] == TRUTH
    # readiness orders the checkpoints as full RL does; step-0 accuracy alone cannot tell that the Long
    # branch (high start, lengths exploding) ends below the base: the dynamics add information
    assert res["taus"]["readiness"]["tau"] == 1.0 and res["taus"]["readiness"]["ci"][1] == 1.0
    assert res["taus"]["start_acc"]["tau"] < res["taus"]["readiness"]["tau"]
    gain = res["taus"]["start_acc"]["readiness_gain"]
    assert gain["diff"] == pytest.approx(1.0 - res["taus"]["start_acc"]["tau"]) and gain["ci"][0] <= gain["ci"][1]
    assert "readiness_gain" not in res["taus"]["readiness"] and "readiness_gain" not in res["taus"]["ppl/nosuch"]
    sep = res["taus"]["readiness"]["separated"]
    assert sep["n"] == len(res["separated_pairs"]) > 0 and sep["wrong"] == 0 and sep["right"] + sep["tied"] == sep["n"]
    # perplexity: lower predicts better; tau recomputed from the gates by pair counting
    order = [truth[s] for s in stages]
    assert res["taus"]["ppl/general"]["tau"] == pytest.approx(brute_tau_b([-PPL[s] for s in stages], order))
    assert res["taus"]["ppl/nosuch"]["tau"] is None and "no ppl/nosuch" in res["taus"]["ppl/nosuch"]["note"]
    # the compute ratio is the rollout tokens of probe.json
    p = sum(json.loads((run / "probes" / f"{s}.step-40" / "probe.json").read_text())["rollout_tokens"] for s in stages)
    f = sum(json.loads((run / "validation/full" / f"{s}.step-40" / "probe.json").read_text())["rollout_tokens"]
            for s in stages)
    assert res["budget"]["ratio"] == pytest.approx(p / f)
    assert res["budget"]["within"] == (res["budget"]["max_ratio"] <= 0.1)
    # findings: constructed so that four hold and one (IF reduces instability) does not
    holds = {f["key"]: f["holds"] for f in res["findings"]}
    assert holds == {"long_vs_short": True, "short_stable": True, "if_data": False, "stable_tokens": True,
                     "stair_vs_fixed": True}
    # the page: tau table, findings table with yes/no, images that exist, numbers as in the files
    for md in (doc, run / "validation" / "validation.md"):
        text = md.read_text()
        assert "| probe readiness score (octo score: weighted components) | +1.000 |" in text
        # the synthetic probes have no step-0 sampling pass, so the default combined readiness falls back
        assert ("**Which readiness is judged:** the weighted components' score (`analysis.rank_by: combined`, "
                "falling back because a checkpoint lacks a predictor of the combination).") in text
        assert f"full RL separates {sep['n']} beyond noise" in text
        assert (f"| step-0 held-out accuracy alone | {res['taus']['start_acc']['tau']:+.3f} | "
                f"[{res['taus']['start_acc']['ci'][0]:+.3f}, {res['taus']['start_acc']['ci'][1]:+.3f}] | "
                f"{gain['diff']:+.3f} [{gain['ci'][0]:+.3f}, {gain['ci'][1]:+.3f}] | {gain['share']:.2f} |") in text
        for f in res["findings"]:
            assert re.search(re.escape(f["claim"]) + r" \| " + ("yes" if f["holds"] else r"\*\*no\*\*"), text)
        for s in stages:
            assert f"| {truth[s]:.3f} |" in text
        for link in re.findall(r"!\[[^]]*\]\(([^)]+)\)", text):
            assert (md.parent / link).is_file(), link
    assert (tmp_path / "docs" / "validation" / "tau.png").is_file()
    assert json.loads((run / "validation" / "validation.json").read_text())["taus"]["readiness"]["tau"] == 1.0
    assert "not evidence" not in doc.read_text()   # only the reduced run says so
    # protocol v2: the gain target is final minus the full run's own step 0; one full-run seed has no ceiling
    first = {s: _first_combined(run / "validation" / "full" / f"{s}.step-40") for s in stages}
    gains = [truth[s] - first[s] for s in stages]
    assert res["taus_gain"]["readiness"]["tau"] == pytest.approx(
        brute_tau_b([res["checkpoints"][s]["readiness"] for s in stages], gains))
    assert res["noise_ceiling"]["final"]["tau"] is None and res["verdict"]["final"]["reaches_ceiling_share"] is None
    assert res["verdict"]["final"]["reaches_target"] is True
    text = doc.read_text()
    assert "## Protocol v2" in text and "no second group to compare" in text
    assert "final accuracy: readiness tau +1.000 >= 0.8: yes" in text
    chosen = res["combination"]["final"]
    assert f"nested one, where the whole choice is remade without each checkpoint: **{chosen['nested_tau']:+.3f}**" \
        in text
    assert "12 s, executing 13 of the 13 GRPO runs" in doc.read_text()


def test_settle_swaps_name_the_pairs_that_changed_order_and_whether_that_is_noise(tmp_path):
    """Where the full-RL ranking changed between the last two evaluations, the page names each pair that changed
    (a tie counts), with its final difference and bootstrap CI; only when some such CI excludes 0 does it ask for
    longer full runs."""
    from octo.analysis.validation import settle_swaps
    from octo.analysis.validation_page import _swaps_text, improvements

    stages = ["a", "b", "c", "d"]
    prev, last = np.array([0.5, 0.6, 0.9, 0.71]), np.array([0.7, 0.6, 0.9, 0.7])   # d ties a at the last one
    rng = np.random.default_rng(0)
    draws = last + rng.normal(0, 0.01, size=(2000, 4))
    swaps = settle_swaps(stages, prev, last, draws, 0.95)
    assert [w["pair"] for w in swaps] == [["a", "b"], ["a", "d"]]   # the other pairs kept their order
    ab, ad = swaps
    assert ab["diff"] == pytest.approx(0.1) and ab["before"] == pytest.approx(-0.1)
    assert ab["ci"] == pytest.approx(list(np.quantile(draws[:, 0] - draws[:, 1], [0.025, 0.975])))
    assert ab["ci"][0] > 0 and ad["ci"][0] < 0 < ad["ci"][1] and ad["diff"] == 0.0
    text = _swaps_text(swaps, 95)
    assert f"a ahead of b by +0.100 [{ab['ci'][0]:+.3f}, {ab['ci'][1]:+.3f}] (-0.100 the evaluation before)" in text
    assert "a and d tied [" in text and _swaps_text([], 95) == ""
    res = write_validation(synthetic_validation(tmp_path / "run"))
    for swapped, says in (([ab, ad], "also between checkpoints whose difference is beyond noise: longer full runs"),
                          ([ad], "only between checkpoints whose final accuracies are within noise")):
        lines = improvements({**res, "settle_tau": 0.9, "settle_swaps": swapped})
        assert sum(says in line for line in lines) == 1, lines


def test_probe_compute_curve_tau_and_tokens_at_each_probe_evaluation(tmp_path):
    """How much probe the prediction needs: at every evaluation step of the probes, tau of their held-out accuracy
    there (step 0 = step-0 accuracy, the last = the probe's final accuracy) beside the rollout tokens spent up to that
    step over a full run's, recomputed here from metrics.jsonl; the page shows the table."""
    run = synthetic_validation(tmp_path / "run")
    res = write_validation(run)
    curve = res["probe_compute"]
    assert [c["step"] for c in curve] == [0, 10, 20, 30]
    assert curve[0]["tau"] == pytest.approx(res["taus"]["start_acc"]["tau"])
    assert curve[-1]["tau"] == pytest.approx(res["taus"]["probe_final_acc"]["tau"])
    stages = res["stages"]
    full = {s: res["checkpoints"][s]["full_tokens"] for s in stages}
    for c in curve:
        tokens = {}
        for s in stages:
            rows = [json.loads(x) for x in (run / "probes" / f"{s}.step-40" / "metrics.jsonl").read_text().splitlines()]
            tokens[s] = 64 * sum(r["len/mean"] for r in rows if "len/mean" in r and r["step"] <= c["step"])
        assert c["probe_tokens"] == pytest.approx(np.mean(list(tokens.values())))
        assert c["ratio"] == pytest.approx(np.mean(list(tokens.values())) / np.mean(list(full.values())))
        assert c["max_ratio"] == pytest.approx(max(tokens[s] / full[s] for s in stages))
        values = [c["values"][s] for s in stages]
        assert c["tau"] == pytest.approx(brute_tau_b(values, [res["checkpoints"][s]["full_final_acc"] for s in stages]))
        assert c["ci"] is not None and c["ci"][0] <= c["ci"][1]
    assert curve[0]["probe_tokens"] == 0 and curve[-1]["probe_tokens"] == pytest.approx(res["budget"]["probe_tokens"],
                                                                                          rel=1e-3)
    text = (run / "validation" / "validation.md").read_text()
    assert "### How much probe does the prediction need?" in text
    c = curve[1]
    assert f"| {c['step']} | {c['probe_tokens']:,.0f} | {c['ratio']:.3f} | {c['max_ratio']:.3f} | {c['tau']:+.3f} |" in text
    # over budget: the page names the longest probe prefix that fits it, and its tau
    assert curve[1]["max_ratio"] < curve[2]["max_ratio"]
    plan = json.loads((run / "validation" / "plan.json").read_text())
    plan["max_probe_ratio"] = curve[1]["max_ratio"]
    plan["invocations"].append({"wall_s": 3.0, "runs": 0, "of": 13})   # a rerun that only re-analysed
    (run / "validation" / "plan.json").write_text(json.dumps(plan))
    res = write_validation(run)
    assert not res["budget"]["within"]
    page = (run / "validation" / "validation.md").read_text()
    assert "12 s, executing 13 of the 13 GRPO runs." in page and "executing 0 of" not in page
    assert (f"Up to step 10 they stayed within it (largest ratio {curve[1]['max_ratio']:.3f}), and their held-out "
            f"accuracy there ranks the checkpoints with tau {curve[1]['tau']:+.3f}: a probe of 10 steps is the "
            "candidate") in \
        (run / "validation" / "validation.md").read_text().replace("\n", " ")


# --- recipe: one-line errors, exit 2 -------------------------------------------------------------

def octo(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "octo.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


@pytest.mark.parametrize("args, says", [
    ([QUICKSTART, "--reduced"], "no validation.reduced overrides"),
    ([VALIDATION, "--set", "validation.checkpoints=[stable, nosuch, pretrain]"], "'nosuch' is not a stage"),
    ([VALIDATION, "--set", "validation.checkpoints=[stable, decay-short, pretrain]"], "is not a validated checkpoint"),
    ([VALIDATION, "--set", "validation.full_steps=60", "--set", "validation.full_eval_steps=[50]"],
     "raise full_steps to at least 80"),
    ([VALIDATION, "--set", "validation.full_steps=60"], "'validation.full_eval_steps': steps must lie in 1..60"),
    ([VALIDATION, "--set", "validation.stair_vs_fixed.early_steps=31"], "must be <= the fixed-limit run's 30 steps"),
    ([VALIDATION, "--set", "validation.stair_vs_fixed.steps=20"], "must be <= the fixed-limit run's 20 steps"),
    ([VALIDATION, "--set", "validation.stair_vs_fixed.steps=200"], "must be <= full_steps=120"),
    ([VALIDATION, "--set", "validation.full_seeds=[1, 1]"], "names a seed twice"),
    ([VALIDATION, "--set", "validation.full_eval_steps=[90, 121]"],
     "steps must lie in 1..120, the run's steps (got 121)"),
    ([VALIDATION, "--set", "validation.full_eval_steps=[0]"], "steps must lie in 1..120"),
    ([VALIDATION, "--set", "validation.full_eval_steps=[90, 90]"], "names a step twice"),
    ([VALIDATION, "--set", "probe.eval_steps=[9]"], "'probe.eval_steps': steps must lie in 1..8"),
    ([VALIDATION, "--jobs", "0"], "--jobs must be 1 or more"),
    ([VALIDATION, "--set", "validation.findings.long="], "name both stages or neither"),
    ([VALIDATION, "--set", "validation.findings.long=", "--set", "validation.findings.short="],
     "'validation.findings.hybrid': is compared with 'long' and 'short'"),
    ([VALIDATION, "--set", "validation.findings.hybrid=nosuch"], "'nosuch' is not a validated checkpoint"),
    ([VALIDATION, "--set", "validation.world_targets.max_final_acc=2"], "must be <= 1"),
    ([VALIDATION, "--set", "validation.checkpoints=[stable, decay-long]", "--set", "validation.findings={}",
      "--set", "validation.stair_vs_fixed.checkpoint="], "needs at least 3 checkpoints"),
    ([REPO / "nosuch.yaml"], "does not exist"),
])
def test_bad_input_is_one_sentence_and_exit_2(args, says):
    res = octo("validate", *args, "--dry-run")
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert res.returncode == 2 and len(lines) == 1 and lines[0].startswith("octo: error:"), res.stderr
    assert says in lines[0]


def test_dry_run_reduced_applies_the_overrides_and_user_sets_win(tmp_path):
    res = octo("validate", VALIDATION, "--reduced", "--dry-run", "--set", "validation.full_steps=40",
               "--run-dir", tmp_path / "never")
    assert res.returncode == 0, res.stderr
    r = yaml.safe_load(res.stdout)
    assert r["name"] == "validation-reduced" and r["model"]["hidden_size"] == 64
    assert r["validation"]["seeds"] == [0] and r["validation"]["full_steps"] == 40
    assert not (tmp_path / "never").exists()


def test_only_the_stages_the_validated_checkpoints_need_are_ordered_for_training():
    r = load_recipe(VALIDATION)
    every = stage_order(r)
    assert set(every) == set(r.cpt.stages) and every.index("stable") < every.index("stable-more") < \
        every.index("decay-long-am-more")
    # a checkpoint brings the stages it starts from, in dependency order; nothing else
    assert stage_order(r, ["decay-long-am-more", "decay-short"]) == ["pretrain", "stable", "stable-more",
                                                                      "decay-long-am-more", "decay-short"]
    assert stage_order(r, ["pretrain-half"]) == ["pretrain-half"]


def test_validation_recipe_is_the_quickstart_plus_its_experiment():
    """The toy world's defaults were tuned in quickstart.yaml (docs/toyworld.md): the validation recipe must run
    the same world, model, data, stages and probe, adding only stages and the validation section. The probe is
    shorter (<= 10% of a full run the session's compute allows) with its length stair at the same fraction."""
    q = yaml.safe_load(QUICKSTART.read_text())
    v = yaml.safe_load(VALIDATION.read_text())
    assert v["data"] == q["data"]
    # v10's world (docs/toyworld.md): the quickstart's, on v10's draw, with two levels that only RL poses (7 and 8
    # digits, their numbers shown in math web): the headroom that keeps the best checkpoint under 0.90
    assert (v["seed"], v["world"]["seed"]) == (2, 2)
    assert {**v["world"], "seed": q["world"]["seed"]} == \
        {**q["world"], "rl_levels_beyond": 2, "mathweb_levels_beyond": True}
    # the one size that differs: issue 20 lets the validation world's model grow (the quickstart keeps its shipped
    # 3-layer base); a 3-layer model copies the question's numbers wrongly, so the Long branch never paid, and a
    # 4-layer one does not learn the 7-digit level
    assert {**v["model"], "num_layers": q["model"]["num_layers"]} == q["model"]
    assert v["model"]["num_layers"] == 5
    # micro_batch_size is a compute knob, not a setting of the probe (docs/rollout.md); 400 held-out problems are
    # 50 per level of the validation world's 8
    cadence = ("steps", "eval_every", "save_every", "max_len", "start_max_len", "micro_batch_size", "eval_problems")
    assert v["probe"]["eval_problems"] == 400
    assert {k: x for k, x in v["probe"].items() if k not in cadence} == \
        {k: x for k, x in q["probe"].items() if k not in cadence}
    qs_, vs_ = q["probe"]["max_len"]["stairs"], v["probe"]["max_len"]["stairs"]
    assert list(vs_.values()) == list(qs_.values())
    assert [k / v["probe"]["steps"] for k in vs_] == [k / q["probe"]["steps"] for k in qs_]
    assert v["probe"]["steps"] <= v["validation"]["max_probe_ratio"] * v["validation"]["full_steps"]
    # the step-0 sampling pass sees each checkpoint at the full runs' last limit (issue 21)
    assert v["probe"]["start_max_len"] == max(v["validation"]["full_max_len"]["stairs"].values())
    vs, qs = v["cpt"].pop("stages"), q["cpt"].pop("stages")
    assert v["cpt"] == q["cpt"]
    assert {k: vs[k] for k in qs} == qs
    added = set(vs) - set(qs)
    assert added == {"stable-more", "decay-long-noif", "pretrain-half", "decay-noqa", "decay-long-half",
                     "decay-long-am", "decay-direct", "decay-long-brief", "decay-long-am-more", "decay-long-seed1",
                     "decay-short-seed1", "decay-long-am-noif", "decay-short-more"}
    # v10's two (docs/toyworld.md): decay-long-am without IF (its share to mathweb), decay-short from stable-more
    am, noif = vs["decay-long-am"]["mixture"], vs["decay-long-am-noif"]["mixture"]
    assert "if" not in noif and noif["mathweb"] == am["mathweb"] + am["if"] and \
        {k: x for k, x in noif.items() if k != "mathweb"} == {k: x for k, x in am.items() if k not in ("if", "mathweb")}
    assert {k: x for k, x in vs["decay-long-am-noif"].items() if k != "mixture"} == \
        {k: x for k, x in vs["decay-long-am"].items() if k != "mixture"}
    assert {**vs["decay-short-more"], "init": "stable"} == qs["decay-short"] and \
        vs["decay-short-more"]["init"] == "stable-more"
    # v10's 13 checkpoints are the shipped ones
    assert v["validation"]["checkpoints"] == [
        "pretrain", "stable", "stable-more", "decay-long", "decay-short", "decay-hybrid", "decay-long-noif",
        "pretrain-half", "decay-long-am", "decay-direct", "decay-long-am-more", "decay-long-am-noif", "decay-short-more"]
    # the reduced pipeline check keeps its own draw and the plain world
    from octo.validate import validation_recipe
    red = validation_recipe(str(VALIDATION), [], reduced=True)
    assert (red.seed, red.world.seed, red.world.rl_levels_beyond, red.world.mathweb_levels_beyond) == (0, 0, 0, False)
    # second draws of Long and Short: the same stages under another seed
    for name in ("decay-long", "decay-short"):
        assert vs[f"{name}-seed1"] == {**qs[name], "seed": 1} and qs[name].get("seed", v["seed"]) != 1
    assert vs["stable-more"]["mixture"] == qs["stable"]["mixture"]
    # decay-long-am-more: decay-long-am's decay from the stable stage continued (stable-more)
    assert {k: x for k, x in vs["decay-long-am-more"].items() if k != "init"} == \
        {k: x for k, x in vs["decay-long-am"].items() if k != "init"}
    assert (vs["decay-long-am"]["init"], vs["decay-long-am-more"]["init"]) == ("stable", "stable-more")
    # pretrain-half: the base on half the tokens; decay-noqa: a decay with no CoT QA; decay-long-half: half of Long's
    # long-CoT share, the rest to mathweb
    assert {k: x for k, x in vs["pretrain-half"].items() if k != "tokens"} == \
        {k: x for k, x in qs["pretrain"].items() if k != "tokens"}
    assert vs["pretrain-half"]["tokens"] * 2 == qs["pretrain"]["tokens"]
    assert not any(k.startswith(("qa-", "long-")) for k in vs["decay-noqa"]["mixture"])
    half = vs["decay-long-half"]["mixture"]
    assert half["long-openr1"] * 2 == qs["decay-long"]["mixture"]["long-openr1"] and sum(half.values()) == \
        pytest.approx(1.0)
    long = dict(qs["decay-long"]["mixture"])
    assert vs["decay-long-noif"]["mixture"] == {**{k: x for k, x in long.items() if k != "if"},
                                                "mathweb": long["mathweb"] + long["if"]}
    # decay-long-am: the Long mixture with AM-style answers only; decay-direct: answers at once only; decay-long-brief:
    # the Long decay at a quarter of its tokens
    long_cot = {k: x for k, x in long.items() if k.startswith("long-")}
    assert vs["decay-long-am"]["mixture"] == {**{k: x for k, x in long.items() if k not in long_cot},
                                              "long-am": sum(long_cot.values())}
    assert not any(k.startswith("long-") or k in ("qa-megamath", "qa-omi2") for k in vs["decay-direct"]["mixture"])
    assert vs["decay-long-brief"]["mixture"] == long and vs["decay-long-brief"]["tokens"] * 4 == \
        qs["decay-long"]["tokens"]
    assert set(v["validation"]["checkpoints"]) >= {"pretrain", "stable", "decay-long", "decay-short", "decay-hybrid"}
    # issue 20: at least 12 checkpoints; two full-run seed groups (issue 21's noise ceiling)
    assert len(v["validation"]["checkpoints"]) >= 12 and v["validation"]["seeds"] == [0, 1, 2]
    assert len(v["validation"]["full_seeds"]) >= 2


# --- the reduced pipeline, end to end --------------------------------------------------------------

def _env():
    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"})
    return env


@pytest.mark.slow
@pytest.mark.multiproc
def test_reduced_pipeline_end_to_end_killed_and_resumed(tmp_path):
    run, doc = tmp_path / "run", tmp_path / "docs" / "validation.md"
    # --jobs 2: two GRPO runs at once, in worker processes
    cmd = [sys.executable, "-m", "octo.cli", "validate", "recipes/toy/validation.yaml", "--reduced",
           "--run-dir", str(run), "--doc", str(doc), "--jobs", "2"]
    # kill -9 the command once a full RL run has a complete checkpoint (octo's manifest.json is written last): its
    # workers die with it (no orphan goes on writing); rerunning the same command resumes that run from the
    # checkpoint and skips what was finished
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(), cwd=REPO)
    full = run / "validation" / "full"
    deadline = time.monotonic() + 400
    while (time.monotonic() < deadline and proc.poll() is None
           and not any(full.glob("*/checkpoints/checkpoint-*/manifest.json"))):
        time.sleep(0.05)
    assert proc.poll() is None, "the command ended before the full runs"
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    assert len(children) >= 2, children   # the two workers (and multiprocessing's resource tracker)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(Path(f"/proc/{c}").exists() for c in children):
        time.sleep(0.1)
    assert not any(Path(f"/proc/{c}").exists() for c in children), "workers outlived the killed command"
    res = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=REPO, timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    assert "resuming from checkpoint-" in res.stderr and "already complete, skipping" in res.stderr
    # a number, or (world v2: the reduced run's models end full RL at 0 accuracy) the reason there is none
    assert re.search(r"Kendall tau \(readiness vs full RL\): ([+-]\d\.\d{3}|n/a \(undefined: every checkpoint "
                     r"(ends full RL at the same accuracy|has the same readiness)\)), 95% CI", res.stdout), res.stdout

    result = json.loads((run / "validation" / "validation.json").read_text())
    plan = json.loads((run / "validation" / "plan.json").read_text())
    stages = result["stages"]
    assert len(stages) >= 6 and result["reduced"] is True
    assert plan["full"]["mask_truncated"] is True   # the recipe's full runs leave cut completions out of their loss
    # the stages no validated checkpoint needs were not trained
    assert {p.name for p in (run / "cpt").iterdir()} == set(stage_order(load_recipe(VALIDATION), stages))
    assert not (run / "cpt" / "decay-noqa").exists()
    text = doc.read_text()
    assert "**This is the reduced run**" in text and "not evidence" in text
    # the killed invocation kept its time to its last finished run: every run was executed by one of the two, so
    # the experiment's cost is read from the directory
    calls = plan["invocations"]
    assert [c["complete"] for c in calls] == [False, True] and sum(c["runs"] for c in calls) == calls[-1]["of"]
    # the first trained every CPT stage, the second none (killed in the full runs, after the stages)
    assert calls[0]["stages_trained"] == calls[0]["stages_needed"] == stage_order(load_recipe(VALIDATION), stages)
    assert calls[1]["stages_trained"] == [] and calls[1]["stages_needed"] == calls[0]["stages_needed"]
    assert calls[0]["probes"] == sum(len(c["probes"]) for c in plan["checkpoints"]) and calls[1]["probes"] == 0
    assert 0 < calls[0]["wall_s"] and ", interrupted (its time to its last finished run)" in text
    assert all(c["machine"]["cpus"] == os.cpu_count() for c in calls) and "GFLOP/s on one thread), " in text
    world = {p["key"]: p for p in result["world_properties"]}
    assert world["cost"]["holds"] is True and "1 of them interrupted" in world["cost"]["figure"]
    assert "hybrid" not in world and world["late_bloomers"]["holds"] is False   # 6 checkpoints: fewer than 12
    assert "`octo validate recipes/toy/validation.yaml --jobs 2 --doc " in text    # the full command, no --reduced
    assert "evaluated at steps 0, 15 and 20 (and decay-long's at 10, where stair and fixed limit are compared)" \
        in text.replace("\n", " ")
    # every number of the checkpoint table is traceable to the run's files
    gates = {}
    for s in stages:
        rows = [json.loads(x) for x in (run / "cpt" / s / "gates.jsonl").read_text().splitlines()]
        step = json.loads((run / "cpt" / s / "DONE.json").read_text())["step"]
        gates[s] = [r for r in rows if r["step"] == step][-1]
    scored = subprocess.run([sys.executable, "-m", "octo.cli", "score", str(run)], capture_output=True, text=True,
                            env=_env(), cwd=REPO, timeout=300)
    assert scored.returncode == 0, scored.stderr[-2000:]
    scores = json.loads((run / "scores.json").read_text())
    for c in plan["checkpoints"]:
        s, row = c["stage"], result["checkpoints"][c["stage"]]
        acc = np.mean([_last_combined(run / d) for d in c["full"]])
        ptok = np.mean([json.loads((run / d / "probe.json").read_text())["rollout_tokens"] for d in c["probes"]])
        ftok = np.mean([json.loads((run / d / "probe.json").read_text())["rollout_tokens"] for d in c["full"]])
        assert row["full_final_acc"] == pytest.approx(acc)
        assert row["readiness"] == pytest.approx(scores["checkpoints"][c["checkpoint_id"]]["score"])  # = octo score
        assert (row["probe_tokens"], row["full_tokens"]) == (ptok, ftok)
        line = next(x for x in text.splitlines() if x.startswith(f"| {s} | {row['readiness']:+.3f} |"))
        for piece in (f"{acc:.3f}", f"{gates[s]['ppl/general']:.3f}", f"{gates[s]['ppl/mathweb']:.3f}",
                      f"{ptok:,.0f} / {ftok:,.0f}"):
            assert f"| {piece} |" in line, (piece, line)
        # evaluated where the analysis reads them (validation.full_eval_steps): the ends and step 15 (the one
        # before the last), and the stair_vs_fixed checkpoint's runs also at its early step 10
        sv = s == plan["stair_vs_fixed"]["checkpoint"]
        for d in c["full"]:
            assert [r["step"] for r in read_jsonl(run / d / "evals.jsonl")] == ([0, 10, 15, 20] if sv else [0, 15, 20])
        if sv:
            assert all((run / d / "DONE.json").exists() for d in c["fixed"]) and c["fixed"]
            assert all([r["step"] for r in read_jsonl(run / d / "evals.jsonl")] == [0, 10] for d in c["fixed"])
    # tau table: recomputed by pair counting from the numbers above
    readiness = [result["checkpoints"][s]["readiness"] for s in stages]
    truth = [result["checkpoints"][s]["full_final_acc"] for s in stages]
    tau = brute_tau_b(readiness, truth)
    # the reduced probes make a step-0 sampling pass, so the default readiness is the combined predictor
    assert result["readiness_is"]["combined"] and result["readiness_is"]["rank_by"] == "combined"
    label = "probe readiness score (octo score: the combined predictor, analysis.combination)"
    assert "**Which readiness is judged:** the combined predictor (`analysis.rank_by: combined`), 0.022 + " \
           "0.852 × start/pass@k." in text
    if np.isnan(tau):
        # undefined (world v2's reduced models can all end full RL at the same accuracy): recorded as such, not NaN
        assert result["taus"]["readiness"]["tau"] is None
        assert f"| {label} | n/a |" in text
    else:
        assert result["taus"]["readiness"]["tau"] == pytest.approx(tau)
        for key in ("readiness", "start_acc", "probe_final_acc", "ppl/general", "ppl/mathweb"):
            assert result["taus"][key]["ci"] is not None
        assert f"| {label} | {tau:+.3f} |" in text
    # findings: all five, each yes or no, in the page
    assert [f["key"] for f in result["findings"]] == ["long_vs_short", "short_stable", "if_data", "stable_tokens",
                                                      "stair_vs_fixed"]
    for f in result["findings"]:
        assert isinstance(f["holds"], bool)
        assert re.search(re.escape(f["claim"]) + r" \| (yes|\*\*no\*\*) \|", text)
    for link in re.findall(r"!\[[^]]*\]\(([^)]+)\)", text):
        assert (doc.parent / link).is_file(), link
    # the compute budget in rollout tokens
    b = result["budget"]
    assert b["ratio"] == pytest.approx(sum(r["probe_tokens"] for r in result["checkpoints"].values())
                                       / sum(r["full_tokens"] for r in result["checkpoints"].values()))

    # another probe cadence in the same run directory: the finished probes are refused by name before anything
    # trains; without them (probes/ deleted) the probes run again and the stages and full runs are reused
    other = cmd + ["--set", "probe.eval_every=2"]
    refused = subprocess.run(other, capture_output=True, text=True, env=_env(), cwd=REPO, timeout=300)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr[-2000:]
    assert re.search(r"probes/\S+ was run with other settings \(eval_every 1 there, 2 here\)", refused.stderr)
    shutil.rmtree(run / "probes")
    res = subprocess.run(other, capture_output=True, text=True, env=_env(), cwd=REPO, timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    plan = json.loads((run / "validation" / "plan.json").read_text())
    n_probes = sum(len(c["probes"]) for c in plan["checkpoints"])
    last = plan["invocations"][-1]
    assert plan["probe"]["eval_every"] == 2 and last["runs"] == last["probes"] == n_probes
    assert f"executing {n_probes} of the {last['of']} GRPO runs ({n_probes} of them probes of 2 steps)." \
        in doc.read_text()
    assert all(json.loads((run / d / "probe.json").read_text())["eval_every"] == 2
               for c in plan["checkpoints"] for d in c["probes"])


def test_an_unfinished_run_is_refused_not_analysed(tmp_path):
    """A full run without DONE.json (killed, or still running) would count its last evaluation as the truth: the
    analysis refuses it in one sentence naming the directory."""
    from octo.errors import OctoError

    run = synthetic_validation(tmp_path / "run")
    (run / "validation" / "full" / "stable.step-40" / "DONE.json").unlink()
    with pytest.raises(OctoError, match=r"full/stable.step-40 has not finished \(no DONE.json\); rerun the octo "
                                        r"validate command"):
        write_validation(run)
    assert not (run / "validation" / "validation.json").exists()


def test_budget_is_per_run_when_probes_and_full_runs_have_different_seed_counts(tmp_path):
    """Three probe seeds against one full-run seed (validation.full_seeds): the budget compares one probe with one
    full run (mean rollout tokens per run), not the sum over seeds; fixed-limit runs shorter than the full runs
    are reported at their own last step."""
    run = synthetic_validation(tmp_path / "run")
    plan = json.loads((run / "validation" / "plan.json").read_text())
    row = next(c for c in plan["checkpoints"] if c["stage"] == "stable")
    src = run / row["probes"][0]
    tokens = json.loads((src / "probe.json").read_text())["rollout_tokens"]
    for seed, factor in ((1, 2.0), (2, 3.0)):
        dst = src.parent / f"{src.name}.seed-{seed}"
        shutil.copytree(src, dst)
        meta = json.loads((dst / "probe.json").read_text())
        meta.update(probe_id=dst.name, seed=seed, rollout_tokens=tokens * factor)
        (dst / "probe.json").write_text(json.dumps(meta))
        row["probes"].append(f"probes/{dst.name}")
    plan["seeds"] = [0, 1, 2]
    plan["full_seeds"] = [1000]
    plan["stair_vs_fixed"]["steps"] = 200
    (run / "validation" / "plan.json").write_text(json.dumps(plan))
    res = write_validation(run)
    full = json.loads((run / "validation/full/stable.step-40/probe.json").read_text())["rollout_tokens"]
    r = res["checkpoints"]["stable"]
    assert r["probe_tokens"] == pytest.approx(tokens * 2.0)   # mean of 1x, 2x, 3x
    assert r["token_ratio"] == pytest.approx(tokens * 2.0 / full)
    assert res["budget"]["probe_tokens"] == pytest.approx(np.mean([x["probe_tokens"] for x in res["checkpoints"].values()]))
    text = (run / "validation" / "validation.md").read_text()
    assert "its probes' seeds and its full runs' seeds each" in text
    fig = next(f for f in res["findings"] if f["key"] == "stair_vs_fixed")["figure"]
    assert "the fixed-limit runs stop at step 200" in fig and "after the full run" not in fig


def test_noise_ceiling_from_two_full_run_seed_groups(tmp_path):
    """Protocol v2: with two full-run seeds, the noise ceiling is tau between the two seed groups' final accuracy
    (here the second group is the first with pretrain ending on top), and the verdict compares readiness with 0.9 x
    that ceiling."""
    run = synthetic_validation(tmp_path / "run")
    one_seed = write_validation(run)
    plan = json.loads((run / "validation" / "plan.json").read_text())
    for row in plan["checkpoints"]:
        src = run / row["full"][0]
        dst = src.parent / f"{src.name}.seed-1"
        shutil.copytree(src, dst)
        meta = json.loads((dst / "probe.json").read_text())
        meta.update(probe_id=dst.name, seed=meta["seed"] + 1)
        (dst / "probe.json").write_text(json.dumps(meta))
        if row["stage"] == "pretrain":
            evals = [json.loads(x) for x in (dst / "evals.jsonl").read_text().splitlines()]
            n = evals[-1]["n"]
            evals[-1].update({"acc": 1.0, "acc/sampled": 1.0, "per_problem/greedy": [1] * n,
                              "per_problem/sampled": [1.0] * n})
            (dst / "evals.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evals))
        row["full"].append(str(dst.relative_to(run)))
    plan["full_seeds"] = [0, 1]
    (run / "validation" / "plan.json").write_text(json.dumps(plan))
    res = write_validation(run)
    stages = res["stages"]
    g0 = [_last_combined(run / "validation" / "full" / f"{s}.step-40") for s in stages]
    g1 = [_last_combined(run / "validation" / "full" / f"{s}.step-40.seed-1") for s in stages]
    ceiling = res["noise_ceiling"]["final"]
    assert ceiling["groups"] == 2 and ceiling["tau"] == pytest.approx(brute_tau_b(g0, g1)) and ceiling["tau"] < 1
    assert ceiling["ci"][0] <= ceiling["ci"][1]
    v = res["verdict"]["final"]
    assert v["ceiling"] == ceiling["tau"]
    assert v["reaches_ceiling_share"] == (res["taus"]["readiness"]["tau"] >= 0.9 * ceiling["tau"])
    assert res["noise_ceiling"]["gain"]["groups"] == 2 and res["noise_ceiling"]["gain"]["tau"] is not None
    assert f"Final accuracy: {ceiling['tau']:+.3f} [" in (run / "validation" / "validation.md").read_text()
    # the pairs each seed group separates alone: the first group is the one-seed run, which separated its own
    # (the same held-out draws); the separation row names both counts, a one-seed run's none
    per_seed = res["separated_per_seed"]
    assert len(per_seed) == 2 and per_seed[0] == len(one_seed["separated_pairs"]) == one_seed["separated_per_seed"][0]
    row = {p["key"]: p for p in res["world_properties"]}["separation"]["figure"]
    assert row.endswith(f"separates {per_seed[0]} and {per_seed[1]}")
    assert "alone" not in {p["key"]: p for p in one_seed["world_properties"]}["separation"]["figure"]


def test_editing_the_reduced_overrides_does_not_refuse_the_full_run_directory(tmp_path):
    """validation.reduced lists the overrides of the --reduced run, which has its own directory: editing it must not
    make the full experiment's run directory 'made by a different recipe'; editing what the run uses still does."""
    from octo.errors import OctoError
    from octo.reuse import check_run_dir
    from octo.validate import validation_recipe

    over = [f"run_dir={tmp_path / 'run'}"]
    check_run_dir(validation_recipe(str(VALIDATION), over))
    edited = validation_recipe(str(VALIDATION), over)
    edited.validation.reduced = edited.validation.reduced + ["probe.steps=3"]
    check_run_dir(edited)
    changed = validation_recipe(str(VALIDATION), over + ["validation.full_steps=200"])
    with pytest.raises(OctoError, match=r"different recipe \(differs in: validation.full_steps\)"):
        check_run_dir(changed)


def test_seed_lists_grow_in_the_same_run_directory(tmp_path):
    """Every seed is a run of its own directory: adding seeds at the end of a seed list (the recipe's
    `--set validation.full_seeds=[0,1,2]`) reuses the run directory and records the new list; changing a seed
    already run (the first seed's runs have no .seed-N suffix) is another recipe."""
    import yaml

    from octo.errors import OctoError
    from octo.reuse import check_run_dir
    from octo.validate import validation_recipe

    over = [f"run_dir={tmp_path / 'run'}"]
    check_run_dir(validation_recipe(str(VALIDATION), over + ["validation.full_seeds=[0]"]))
    check_run_dir(validation_recipe(str(VALIDATION), over + ["validation.full_seeds=[0,1,2]",
                                                             "validation.seeds=[0,1,2,3]"]))
    saved = yaml.safe_load((tmp_path / "run" / "recipe.resolved.yaml").read_text())
    assert saved["validation"]["full_seeds"] == [0, 1, 2] and saved["validation"]["seeds"] == [0, 1, 2, 3]
    check_run_dir(validation_recipe(str(VALIDATION), over + ["validation.full_seeds=[0]"]))
    assert yaml.safe_load((tmp_path / "run" / "recipe.resolved.yaml").read_text())["validation"]["full_seeds"] == [0]
    # a checkpoint added at the end of validation.checkpoints is its own runs too; reordering them is another recipe
    listed = yaml.safe_load(VALIDATION.read_text())["validation"]["checkpoints"]
    fewer = "validation.checkpoints=[" + ", ".join(listed[:-1]) + "]"
    check_run_dir(validation_recipe(str(VALIDATION), over + [fewer]))
    check_run_dir(validation_recipe(str(VALIDATION), over))
    assert yaml.safe_load((tmp_path / "run" / "recipe.resolved.yaml").read_text())["validation"]["checkpoints"] == listed
    for changed, key in ((["validation.full_seeds=[1,2]"], "validation.full_seeds"),
                         (["validation.seeds=[2,1,0]"], "validation.seeds"),
                         (["validation.checkpoints=[" + ", ".join(listed[::-1]) + "]"], "validation.checkpoints"),
                         (["probe.seeds=[5]"], "probe.seeds")):
        with pytest.raises(OctoError, match=rf"different recipe \(differs in: {key}\)"):
            check_run_dir(validation_recipe(str(VALIDATION), over + changed))


def test_probe_length_and_cadence_may_change_in_the_run_directory(tmp_path):
    """A probe's length and cadence (octo.reuse.PER_RUN_KEYS) are checked per run, not per run directory: a shorter
    probe reuses the stages and the full runs (which set those keys themselves) and the record says what the latest
    command ran; how a run trains (its learning rate) is still the directory's."""
    import yaml

    from octo.errors import OctoError
    from octo.reuse import check_run_dir
    from octo.validate import validation_recipe

    over = [f"run_dir={tmp_path / 'run'}"]
    check_run_dir(validation_recipe(str(VALIDATION), over))
    shorter = ["probe.steps=4", "probe.eval_every=2", "probe.save_every=2", "probe.max_len.stairs={0: 128, 2: 256}"]
    check_run_dir(validation_recipe(str(VALIDATION), over + shorter))
    probe = yaml.safe_load((tmp_path / "run" / "recipe.resolved.yaml").read_text())["probe"]
    assert (probe["steps"], probe["eval_every"], probe["save_every"]) == (4, 2, 2)
    assert probe["max_len"]["stairs"] == {0: 128, 2: 256}
    # so is when the full runs are evaluated (each full run's probe.json records it)
    check_run_dir(validation_recipe(str(VALIDATION), over + ["validation.full_eval_every=30",
                                                            "validation.full_eval_steps=[]"]))
    v = yaml.safe_load((tmp_path / "run" / "recipe.resolved.yaml").read_text())["validation"]
    assert (v["full_eval_every"], v["full_eval_steps"]) == (30, [])
    with pytest.raises(OctoError, match=r"different recipe \(differs in: probe.lr\)"):
        check_run_dir(validation_recipe(str(VALIDATION), over + ["probe.lr=3.0e-4"]))


def test_a_started_run_with_other_settings_is_refused_by_name(tmp_path):
    """check_probe_dir: a finished run, or one with a checkpoint to resume, must have been started with the same
    settings (probe.json); where its checkpoint lies and the rollout backend are not settings; a run that never
    reached a checkpoint starts over with the new ones."""
    from octo.errors import OctoError
    from octo.probe.grpo import probe_meta
    from octo.reuse import check_probe_dir
    from octo.validate import validation_recipe

    recipe = validation_recipe(str(VALIDATION), [])
    spec = SimpleNamespace(probe_id="stable.step-200", checkpoint_id="stable.step-200", stage="stable", cpt_step=200,
                           cpt_tokens=819200, seed=0, control=None, checkpoint=Path("runs/x/cpt/stable/step-200"))
    meta = probe_meta(recipe.probe, spec)
    run = tmp_path / "probes" / "stable.step-200"
    run.mkdir(parents=True)
    (run / "probe.json").write_text(json.dumps({**meta, "steps": 16, "rollout_tokens": 123}))
    check_probe_dir(run, meta)                     # no DONE.json and no checkpoint: it starts over
    ckpt = run / "checkpoints" / "checkpoint-4"
    ckpt.mkdir(parents=True)
    check_probe_dir(run, meta)                     # a half-written checkpoint: nothing to resume, it starts over
    for name in ("model.safetensors", "config.json", "optimizer.pt", "scheduler.pt", "manifest.json"):
        (ckpt / name).write_text("x")
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": 4}))
    with pytest.raises(OctoError, match=r"steps 16 there, 8 here"):   # a complete checkpoint to resume
        check_probe_dir(run, meta)
    shutil.rmtree(run / "checkpoints")
    (run / "DONE.json").write_text("{}")
    with pytest.raises(OctoError, match=re.escape(f"{run} was run with other settings (steps 16 there, 8 here); "
                                                  "delete that directory to run it again with these, or pass another "
                                                  "--run-dir")):
        check_probe_dir(run, meta)
    moved = {**meta, "checkpoint": "elsewhere/step-200", "backend": "vllm", "rollout_tokens": 123}
    (run / "probe.json").write_text(json.dumps(moved))
    check_probe_dir(run, meta)
    stair = dict(meta, max_len={"kind": "stair", "max_len": 64, "stairs": {"0": 128, "8": 256}})
    (run / "probe.json").write_text(json.dumps(stair))
    with pytest.raises(OctoError, match=r"max_len stair 0:128/8:256 there, stair 0:64 here"):
        check_probe_dir(run, meta)


def test_long_runs_are_scheduled_longest_first_from_their_probes_tokens(tmp_path):
    """--jobs: the full and fixed runs go longest first, their expected rollout tokens read from the finished probes
    of their checkpoint (steps x tokens per probe step); a checkpoint with no finished probe counts 0."""
    import dataclasses

    from octo.validate import Job, _expected_cost, longest_first, validation_recipe

    recipe = validation_recipe(str(VALIDATION), [])
    rows = {}
    for stage, per_step in (("short", 10.0), ("long", 60.0), ("unknown", None)):
        rel = f"probes/{stage}"
        (tmp_path / rel).mkdir(parents=True)
        if per_step is not None:
            (tmp_path / rel / "probe.json").write_text(json.dumps({"rollout_tokens": per_step * 16, "steps": 16}))
            (tmp_path / rel / "DONE.json").write_text("{}")
        rows[stage] = {"probes": [rel]}

    class Spec:
        def __init__(self, stage):
            self.stage = stage

    full = dataclasses.replace(recipe, probe=dataclasses.replace(recipe.probe, steps=160))
    fixed = dataclasses.replace(recipe, probe=dataclasses.replace(recipe.probe, steps=40))
    jobs = [Job(full, Spec("short"), "a", "full RL run"), Job(fixed, Spec("long"), "b", "fixed run"),
            Job(full, Spec("unknown"), "c", "full RL run"), Job(full, Spec("long"), "d", "full RL run")]
    assert [_expected_cost(tmp_path, rows, j) for j in jobs] == [1600.0, 2400.0, 0.0, 9600.0]
    assert [j.rel for j in longest_first(tmp_path, rows, jobs)] == ["d", "b", "a", "c"]


def test_seed_disagreement_names_the_checkpoints_whose_full_runs_split_and_the_pairs_they_leave_unordered():
    """A checkpoint whose full-RL seeds end further apart than the median interval width is named with its per-seed
    accuracies, and the page counts how many of the pairs full RL does not separate involve such a checkpoint."""
    from octo.analysis.validation_page import _seed_disagreement

    def row(seeds, lo, hi):
        return {"full_final_acc_per_seed": seeds, "full_final_acc_ci": [lo, hi]}

    r = {"stages": ["a", "b", "c", "d"], "ci_level": 0.95,
         "checkpoints": {"a": row([0.80, 0.82], 0.75, 0.85), "b": row([0.90, 0.15], 0.10, 0.92),
                         "c": row([0.40, 0.41], 0.35, 0.45), "d": row([0.42, 0.39], 0.36, 0.46)},
         "separated_pairs": [{"pair": ["a", "c"]}, {"pair": ["d", "a"]}]}
    text = _seed_disagreement(r)
    assert "disagree for 1 of the 4 checkpoints" in text and "b 0.900, 0.150" in text
    assert "a 0.8" not in text and "median 95% interval, 0.100" in text
    # unseparated pairs: a-b, b-c, b-d, c-d; three involve b
    assert "3 of the 4 pairs full RL does not separate" in text
    r["checkpoints"]["b"] = row([0.50, 0.52], 0.45, 0.55)
    assert "seeds agree: every checkpoint's seeds end within 0.100" in _seed_disagreement(r)
    one = {**r, "checkpoints": {s: {**x, "full_final_acc_per_seed": x["full_final_acc_per_seed"][:1]}
                                for s, x in r["checkpoints"].items()}}
    assert _seed_disagreement(one) is None


def test_full_rl_accuracy_per_level_is_read_from_the_per_problem_vectors_and_shown_in_rank_order(tmp_path):
    """Issue 20 asks for accuracy per difficulty level: each checkpoint's full runs' held-out accuracy per level
    (mean of greedy and sampled per problem) at their first and last evaluation, recomputed here from evals.jsonl;
    the page shows it in full-RL rank order. Without levels in the evaluations there is no table."""
    run = synthetic_validation(tmp_path / "run")
    res = write_validation(run)
    stages = res["stages"]
    for s in stages:
        rows = [json.loads(x) for x in (run / "validation" / "full" / f"{s}.step-40" / "evals.jsonl").read_text()
                .splitlines()]
        lv = np.array(rows[0]["per_problem/level"])
        want = {}
        for i, key in ((0, "first"), (-1, "last")):
            per = (np.array(rows[i]["per_problem/greedy"]) + np.array(rows[i]["per_problem/sampled"])) / 2
            want[key] = [per[lv == x].mean() for x in sorted(set(lv.tolist()))]
        got = res["checkpoints"][s]["full_per_level"]
        assert got["levels"] == sorted(set(lv.tolist())) and got["first_step"] == rows[0]["step"]
        assert got["first"] == pytest.approx(want["first"]) and got["last"] == pytest.approx(want["last"])
    page = (run / "validation" / "validation.md").read_text()
    assert "**Full-RL held-out accuracy per difficulty level**" in page
    table = page.split("**Full-RL held-out accuracy per difficulty level**")[1].split("\n\n")[1].splitlines()
    assert table[0] == "| checkpoint | level 1 | level 2 | level 3 | level 4 |"
    order = [line.split(" | ")[0].lstrip("| ") for line in table[2:]]
    assert order == sorted(stages, key=lambda s: res["checkpoints"][s]["rank_full"])
    top = res["checkpoints"][order[0]]["full_per_level"]
    assert table[2].endswith(f"{top['first'][-1]:.2f} → {top['last'][-1]:.2f} |")
    assert res["world_levels"] is None and "RL only" not in page   # no toy world in this run directory
    # a toy world that poses level 4 only to RL (world.rl_levels_beyond): its column says so, and the note says
    # whether math web shows that length
    (run / "world").mkdir()
    for shows in (False, True):
        (run / "world" / "world.json").write_text(json.dumps({
            "config": {"mathweb_levels_beyond": shows}, "levels": {"mid-training": [1, 2, 3], "beyond": [4]}}))
        res = write_validation(run)
        assert res["world_levels"] == {"mid-training": [1, 2, 3], "beyond": [4], "mathweb_shows_beyond": shows}
        page = (run / "validation" / "validation.md").read_text()
        head = page.split("**Full-RL held-out accuracy per difficulty level**")[1].split("\n\n")[1].splitlines()[0]
        assert head == "| checkpoint | level 1 | level 2 | level 3 | level 4 (RL only) |"
        assert "Level 4 (*RL only*): no mid-training question or solution is at that length" in page
        assert ("Math web's items" in page) is shows
    # a damaged config beside good levels: the levels stand, math web is not claimed; damaged JSON: plain columns
    damaged = {"config": [1], "levels": {"mid-training": [1], "beyond": [4]}}
    (run / "world" / "world.json").write_text(json.dumps(damaged))
    assert write_validation(run)["world_levels"] == {"mid-training": [1], "beyond": [4], "mathweb_shows_beyond": False}
    (run / "world" / "world.json").write_text("{not json")
    assert write_validation(run)["world_levels"] is None
    # a world.json from before the world recorded its levels: plain columns
    (run / "world" / "world.json").write_text(json.dumps({"config": {}}))
    res = write_validation(run)
    assert res["world_levels"] is None and "RL only" not in (run / "validation" / "validation.md").read_text()
    # without levels: no table, and the row says so with None
    for f in (run / "validation" / "full").glob("*/evals.jsonl"):
        f.write_text("".join(json.dumps({k: v for k, v in json.loads(x).items() if k != "per_problem/level"}) + "\n"
                             for x in f.read_text().splitlines()))
    res = write_validation(run)
    assert all(res["checkpoints"][s]["full_per_level"] is None for s in stages)
    assert "per difficulty level" not in (run / "validation" / "validation.md").read_text()


def _world_run(root: Path, **plan_changes) -> tuple[Path, dict]:
    run = synthetic_validation(root)
    plan_path = run / "validation" / "plan.json"
    plan = json.loads(plan_path.read_text())
    plan.update(plan_changes)
    plan_path.write_text(json.dumps(plan))
    return run, write_validation(run)


def test_world_properties_are_yes_or_no_with_the_figure_they_are_read_from(tmp_path):
    """Issue 20's properties, read off the run: each verdict recomputed here from the result's own numbers and
    the recorded targets; Hybrid is judged against the lower of Short and Long beyond noise; the cost is not
    measured where the recorded invocations did not execute every run; the page shows the table."""
    targets = {"max_final_acc": 0.7, "min_separated_share": 0.5, "min_late_bloomers": 1, "min_checkpoints": 6,
               "max_hours": 1.0}
    findings = {"long": "decay-long", "short": "decay-short", "hybrid": "stable-more"}
    run, res = _world_run(tmp_path / "a", world_targets=targets, findings=findings)
    props = {p["key"]: p for p in res["world_properties"]}
    assert list(props) == ["long_starts_below", "long_lengths_grow", "long_ends_above", "hybrid", "no_ceiling",
                           "separation", "late_bloomers", "cost"]
    rows = res["checkpoints"]
    assert props["long_starts_below"]["holds"] is (rows["decay-long"]["start_acc"] < rows["decay-short"]["start_acc"])
    grow = rows["decay-long"]["length"]["growth"]
    assert props["long_lengths_grow"]["holds"] is (grow > 1 and grow > rows["decay-short"]["length"]["growth"])
    assert f"x{grow:.2f}" in props["long_lengths_grow"]["figure"]
    # the synthetic Long branch collapses (0.05) below Short (0.75): not above; stable-more (0.65) is above Long
    assert props["long_ends_above"]["holds"] is False and props["hybrid"]["holds"] is True
    d = rows["stable-more"]["full_final_acc"] - rows["decay-long"]["full_final_acc"]
    assert f"Hybrid - Long {d:+.3f} [" in props["hybrid"]["figure"]
    top = max(res["stages"], key=lambda s: rows[s]["full_final_acc"])
    assert props["no_ceiling"]["holds"] is (rows[top]["full_final_acc"] <= 0.7) is False
    assert f"highest {rows[top]['full_final_acc']:.3f} ({top})" == props["no_ceiling"]["figure"]
    k = len(res["separated_pairs"])
    assert props["separation"]["holds"] is (k >= 0.5 * 15) and props["separation"]["figure"].startswith(f"{k} of 15")
    late = len(res["late_bloomers"]["checkpoints"])
    assert props["late_bloomers"]["holds"] is (late >= 1) and props["late_bloomers"]["figure"].startswith(f"{late} of 6")
    assert props["cost"]["holds"] is True and props["cost"]["figure"].startswith("0 min over 1 invocation")
    text = (run / "validation" / "validation.md").read_text()
    assert "## Can this world judge a readiness score?" in text
    for p in props.values():
        assert f"| {p['property']} | {'yes' if p['holds'] else '**no**'} | {p['figure']} |" in text
    # the recipe's defaults where the plan records none (an older run directory); no hybrid named: no row for it;
    # an invocation that executed only part of the runs leaves the cost not measured
    _, res = _world_run(tmp_path / "b", invocations=[{"wall_s": 99.0, "runs": 5, "of": 13}])
    props = {p["key"]: p for p in res["world_properties"]}
    assert "hybrid" not in props and props["no_ceiling"]["holds"] is True
    assert props["late_bloomers"]["holds"] is False   # 6 checkpoints, fewer than the default 12
    assert props["cost"]["holds"] is None and "executed 5 of the 13 GRPO runs" in props["cost"]["figure"]
    # every GRPO run executed, but a CPT stage trained outside the recorded invocations (copied in): not measured;
    # once an invocation has trained it, measured
    need = ["pretrain", "stable", "decay-long"]
    calls = [{"wall_s": 60.0, "runs": 0, "of": 13, "stages_trained": ["decay-long"], "stages_needed": need},
             {"wall_s": 600.0, "runs": 13, "of": 13, "stages_trained": [], "stages_needed": need}]
    _, res = _world_run(tmp_path / "c", invocations=calls)
    cost = {p["key"]: p for p in res["world_properties"]}["cost"]
    assert cost["holds"] is None and "the CPT of 2 of the 3 stages (pretrain, stable) was not trained" in cost["figure"]
    calls[0]["stages_trained"] = need
    _, res = _world_run(tmp_path / "d", invocations=calls)
    cost = {p["key"]: p for p in res["world_properties"]}["cost"]
    assert cost["holds"] is True and cost["figure"].startswith("11 min over 2 invocation(s)")
    assert " on " not in cost["figure"]   # invocations recorded before octo recorded machines name none
    # the machines the invocations ran on are named, each once, so a wall time can be read against another's
    slow = {"cpus": 2, "cpu": "AMD EPYC", "gpu": None, "gflops_1thread": 41.5}
    calls[0]["machine"], calls[1]["machine"] = slow, {**slow, "gflops_1thread": 80.0, "gpu": "NVIDIA H200"}
    _, res = _world_run(tmp_path / "e", invocations=calls)
    cost = {p["key"]: p for p in res["world_properties"]}["cost"]
    assert cost["figure"].endswith("; on 2 CPU cores (AMD EPYC; 41.5 GFLOP/s on one thread), no GPU and 2 CPU cores "
                                   "(AMD EPYC; 80 GFLOP/s on one thread), GPU NVIDIA H200")
    calls[1]["machine"] = slow
    _, res = _world_run(tmp_path / "f", invocations=calls)
    cost = {p["key"]: p for p in res["world_properties"]}["cost"]
    assert cost["figure"].endswith("; on 2 CPU cores (AMD EPYC; 41.5 GFLOP/s on one thread), no GPU")


def test_an_invocation_records_the_machine_it_ran_on():
    import torch

    from octo.validate import machine

    threads = torch.get_num_threads()
    m = machine()
    assert m["cpus"] == os.cpu_count() and m["cpu"] and m["gflops_1thread"] > 0
    assert m["gpu"] is None or isinstance(m["gpu"], str)
    assert torch.get_num_threads() == threads   # measured on one thread, the caller's count restored


def test_full_runs_can_leave_cut_completions_out_of_the_loss_while_the_probes_keep_theirs(tmp_path):
    """validation.full_mask_truncated_completions: null takes the probe's setting, true/false set the full and
    fixed-limit runs' own (DAPO's overlong filtering), the probe is untouched, TRL's GRPOConfig receives it, and
    the page says so."""
    from octo.probe.grpo import ProbeSpec, _grpo_config
    from octo.rl_config import LengthScheduleConfig
    from octo.validate import full_run_recipe, validation_recipe

    over = [f"run_dir={tmp_path / 'run'}"]
    assert validation_recipe(str(VALIDATION), over).validation.full_mask_truncated_completions is True  # shipped (v6)
    over.append("validation.full_mask_truncated_completions=null")
    base = validation_recipe(str(VALIDATION), over)
    assert base.validation.full_mask_truncated_completions is None
    assert full_run_recipe(base).probe.mask_truncated_completions is base.probe.mask_truncated_completions is False
    probe_masks = validation_recipe(str(VALIDATION), over + ["probe.mask_truncated_completions=true"])
    assert full_run_recipe(probe_masks).probe.mask_truncated_completions is True
    for full_mask in (True, False):
        r = validation_recipe(str(VALIDATION), over + ["probe.mask_truncated_completions=" + str(not full_mask).lower(),
                                                       f"validation.full_mask_truncated_completions={full_mask}"])
        assert r.probe.mask_truncated_completions is (not full_mask)
        fixed = full_run_recipe(r, LengthScheduleConfig(kind="constant", max_len=256), steps=30)
        for rec in (full_run_recipe(r), fixed):
            assert rec.probe.mask_truncated_completions is full_mask
            spec = ProbeSpec(checkpoint=tmp_path, checkpoint_id="stable.step-1", seed=0, control=None)
            assert _grpo_config(rec.probe, spec, tmp_path / "p").mask_truncated_completions is full_mask
    run = synthetic_validation(tmp_path / "synth")
    phrase = "completions cut at the limit left out of the loss"
    write_validation(run)
    assert phrase not in (run / "validation" / "validation.md").read_text()
    plan_path = run / "validation" / "plan.json"
    plan = json.loads(plan_path.read_text())
    plan["full"]["mask_truncated"] = True
    plan_path.write_text(json.dumps(plan))
    write_validation(run)
    assert f"max length fixed 1024, {phrase}, evaluated every 25 steps" in (run / "validation" / "validation.md").read_text()
