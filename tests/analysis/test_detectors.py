"""Dynamics detectors: each fires exactly where the synthetic truth says, and nowhere else."""

from __future__ import annotations

import json

import numpy as np
import pytest

from octo.analysis.config import DETECTORS, AnalysisConfig
from octo.analysis.detectors import detect
from octo.analysis.load import load_probe
from tests.analysis.synth import EXPECTED, KINDS, RunBuilder, jump, ramp


def _events(pdir, cfg=None) -> dict[str, int]:
    events = detect(load_probe(pdir), cfg or AnalysisConfig())
    assert len({e.detector for e in events}) == len(events), "a detector reported twice"
    return {e.detector: e.step for e in events}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_detector_fires_exactly_where_expected(tmp_path, kind):
    """Three noise draws per labelled probe: the same events at the same onset steps every time."""
    for rep in range(3):
        pdir = RunBuilder(tmp_path / f"r{rep}").probe("s.step-1", kind, rng_seed=7919 * rep + len(kind))
        assert _events(pdir) == EXPECTED[kind], (kind, rep)


def test_every_detector_is_covered_by_a_labelled_kind():
    fired = {d for expected in EXPECTED.values() for d in expected}
    assert fired == set(DETECTORS)


def test_events_carry_probe_id_and_a_detail_with_numbers(tmp_path):
    pdir = RunBuilder(tmp_path).probe("decay-long.step-8", "long_cot", rng_seed=3)
    events = detect(load_probe(pdir))
    assert [e.detector for e in events] == ["length_explosion", "collapse"]
    for e in events:
        assert e.probe_id == "decay-long.step-8"
        assert set(e.to_dict()) == {"detector", "step", "probe_id", "detail"}
    assert "peak held at steps 125-150" in events[1].detail
    assert "clip_ratio" in events[0].detail


def test_single_noisy_points_do_not_fire(tmp_path):
    """One wild step in every watched metric of a clean learner: persistence keeps every detector quiet."""
    spikes = {"clip_ratio": (100, 0.95), "len/mean": (100, 3000.0), "repeat_rate": (50, 0.7),
              "multi_boxed_rate": (70, 0.7), "entropy": (120, 0.01), "kl": (130, 9.0), "reward/mean": (150, 0.95)}
    pdir = RunBuilder(tmp_path).probe("s.step-1", "clean", rng_seed=11, spikes=spikes)
    assert _events(pdir) == {}


def test_two_step_burst_is_still_noise_but_three_steps_fire(tmp_path):
    b = RunBuilder(tmp_path)
    two = b.probe("a.step-1", "clean", rng_seed=1, repeat=lambda t: 0.5 if t in (100, 101) else 0.01)
    three = b.probe("b.step-1", "clean", rng_seed=1, repeat=lambda t: 0.5 if 100 <= t <= 102 else 0.01)
    assert _events(two) == {}
    assert _events(three) == {"repetition": 100}


def test_one_bad_evaluation_that_recovers_is_not_a_collapse(tmp_path):
    base = ramp(0.3, 0.6)
    pdir = RunBuilder(tmp_path).probe("s.step-1", "clean", rng_seed=5,
                                      heldout=lambda t: 0.1 if t == 125 else base(t))
    assert _events(pdir) == {}


def _noisy_evals(pdir, accs: list[float], *, n: int, seed: int) -> None:
    """Greedy-only evaluations whose per-problem answers are drawn afresh each time (no coupling):
    every evaluation has exactly round(acc * n) correct problems at random positions."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, a in enumerate(accs):
        vec = np.zeros(n, dtype=int)
        vec[rng.choice(n, size=int(round(a * n)), replace=False)] = 1
        rows.append({"step": 25 * i, "n": n, "k": 0, "acc": float(vec.mean()), "format_rate": 0.9,
                     "per_problem/greedy": vec.tolist(), "per_problem/level": [1] * n})
    (pdir / "evals.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_collapse_at_the_last_evaluation_counts_only_when_significant(tmp_path):
    """A drop in the final evaluation has no later evaluation to persist into: it fires when it is many
    standard errors (paired over problems), not when it is within the noise of independent answers."""
    b = RunBuilder(tmp_path)
    real = b.probe("a.step-1", "clean", rng_seed=2, heldout=lambda t: 0.6 if t < 300 else 0.3, n=200)
    assert _events(real) == {"collapse": 300}
    assert _events(real, AnalysisConfig(min_problems=500)) == {}    # too few problems to judge: silent
    noise = b.probe("b.step-1", "flat", rng_seed=2)
    _noisy_evals(noise, [0.5] * 12 + [0.375], n=40, seed=0)           # drop 0.125, z about 1.1
    assert _events(noise) == {}


@pytest.mark.parametrize("seed", range(5))
def test_noisy_flat_evaluations_do_not_collapse(tmp_path, seed):
    """Thirteen evaluations of 40 problems at a true 0.5: the running maximum of noise is no peak."""
    rng = np.random.default_rng(seed)
    pdir = RunBuilder(tmp_path).probe("a.step-1", "flat", rng_seed=seed)
    _noisy_evals(pdir, list(rng.binomial(40, 0.5, size=13) / 40), n=40, seed=seed)
    assert "collapse" not in _events(pdir)


def test_toy_sized_probe(tmp_path):
    """The quickstart's shape: 12 steps, evaluations at 0, 6 and 12 on 90 problems."""
    b = RunBuilder(tmp_path)
    kw = dict(steps=12, eval_every=6, n=90, k=2)
    clean = b.probe("a.step-1", "clean", rng_seed=1, heldout=ramp(0.3, 0.5, 12), **kw)
    boom = b.probe("b.step-1", "clean", rng_seed=1, heldout=ramp(0.3, 0.5, 12), length=jump(5, 40, 120),
                   clip=jump(5, 0.0, 0.6), **kw)
    fall = b.probe("c.step-1", "clean", rng_seed=1, heldout=lambda t: 0.5 if t < 12 else 0.15, **kw)
    assert _events(clean) == {}
    assert _events(boom) == {"length_explosion": 5}
    assert _events(fall) == {"collapse": 12}


def test_very_short_and_partial_logs_do_not_crash(tmp_path):
    """Two GRPO steps (the e2e tiny recipe), null KL/entropy (beta = 0), a truncated last line."""
    b = RunBuilder(tmp_path)
    pdir = b.probe("a.step-1", "clean", rng_seed=1, steps=2, eval_every=1, n=6, k=2)
    rows = [json.loads(x) for x in (pdir / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        r["kl"] = None
        r["entropy"] = None
    (pdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 3, "acc"')
    assert _events(pdir) == {}


def test_missing_metrics_skip_their_detectors(tmp_path):
    pdir = RunBuilder(tmp_path).probe("a.step-1", "kl_blowup", rng_seed=1)
    rows = [json.loads(x) for x in (pdir / "metrics.jsonl").read_text().splitlines()]
    (pdir / "metrics.jsonl").write_text("".join(json.dumps({k: v for k, v in r.items() if k != "kl"}) + "\n"
                                                for r in rows))
    assert _events(pdir) == {}


@pytest.mark.parametrize("kind,setting,value,after", [
    ("collapse", "collapse_drawdown", 0.6, {}),          # the drop (0.45) is now below D
    # x4.5 growth is not enough: what is left is a clip ratio of 0.5, i.e. truncation
    ("length_explosion", "length_growth", 5.0, {"truncation": 120}),
    ("truncation", "truncation_threshold", 0.6, {}),
    ("repetition", "repeat_threshold", 0.5, {}),
    ("multi_boxed", "multi_boxed_threshold", 0.5, {}),
    ("entropy_collapse", "entropy_ratio", 0.05, {}),
    ("kl_blowup", "kl_max", 2.0, {}),
    ("reward_hacking", "hack_reward_rise", 1.0, {}),
])
def test_thresholds_come_from_the_config(tmp_path, kind, setting, value, after):
    kind = "reward_hacker" if kind == "reward_hacking" else kind
    pdir = RunBuilder(tmp_path).probe("a.step-1", kind, rng_seed=4)
    assert _events(pdir) == EXPECTED[kind]
    assert _events(pdir, AnalysisConfig(**{setting: value})) == after


def test_persistence_setting_changes_what_counts_as_noise(tmp_path):
    pdir = RunBuilder(tmp_path).probe("a.step-1", "clean", rng_seed=1,
                                      repeat=lambda t: 0.5 if 100 <= t <= 102 else 0.01)
    assert _events(pdir, AnalysisConfig(persistence=3)) == {"repetition": 100}
    assert _events(pdir, AnalysisConfig(persistence=4)) == {}


def test_a_fall_from_the_first_steps_is_a_collapse(tmp_path):
    """A too-high learning rate breaks the model before the first evaluation after step 0: there is no later
    peak held at two evaluations, and the step-0 accuracy (the checkpoint's own) is the level it fell from."""
    b = RunBuilder(tmp_path)
    kw = dict(steps=60, eval_every=10, n=450, k=2)
    fall = b.probe("a.step-1", "clean", rng_seed=1, heldout=lambda t: 0.6 if t == 0 else 0.08, **kw)
    events = detect(load_probe(fall))
    assert {e.detector: e.step for e in events} == {"collapse": 10}
    assert "(the start)" in events[0].detail
    steady = b.probe("b.step-1", "clean", rng_seed=1, heldout=lambda t: 0.6 if t == 0 else 0.55, **kw)
    assert "collapse" not in _events(steady)
