"""The probe's parts on their own: the reward TRL calls (picklable, the verifier's classes inside) and the
metrics row it feeds."""

from __future__ import annotations

import pickle

import pytest

from octo.probe.callback import metrics_row, sample_rows
from octo.probe.reward import ProbeReward
from octo.verifiers import ControlReward, MathReward, RewardConfig, VerifierConfig

COMPLETIONS = ["so \\boxed{4}", "\\boxed{5}", "no answer here", "\\boxed{7} and \\boxed{7}"]
GOLDS = ["4", "4", "7", "7"]


def _call(reward, step_max_len=16):
    return reward(prompts=["p1", "p1", "p2", "p2"], completions=COMPLETIONS,
                  completion_ids=[[1] * 3, [1] * 16, [1] * 5, [1] * 8], answer=GOLDS,
                  finish_reason=["stop", "length", "stop", "stop"], max_len=[step_max_len] * 4)


def test_probe_reward_is_the_math_reward_and_keeps_its_batch():
    cfg = RewardConfig(wrong=-1.0, weights={"correctness": 1.0, "format": 0.5, "repetition": 0.0, "overlong": 1.0})
    reward = ProbeReward(MathReward(cfg, VerifierConfig()))
    totals = _call(reward)
    # correct +1 / wrong -1 (OctoThinker; the last of several boxes is the answer), format 0 / -1 / -1 for one /
    # none / several boxes (x 0.5), and the 16-token completion at max_len 16 gets DAPO's full overlong penalty -1
    assert totals == [1.0, pytest.approx(-2.0), -1.5, 0.5]
    assert reward.__name__ == "math_reward" and reward.math.max_len == 16
    batch = reward.batch
    assert batch.rewards == totals and batch.lengths == [3, 16, 5, 8] and batch.golds == GOLDS
    assert [p.result.status for p in batch.parts] == ["ok", "wrong", "no_answer", "ok"]
    clone = pickle.loads(pickle.dumps(reward))   # TRL may pickle reward functions (dataloader workers)
    assert clone.batch is None and clone.math.last == [] and _call(clone) == totals


def test_a_control_replaces_the_totals_and_the_math_breakdown_is_still_logged():
    reward = ProbeReward(MathReward(RewardConfig(), VerifierConfig()), ControlReward("format", seed=3))
    assert reward.__name__ == "control_format"
    assert _call(reward) == [1.0, 1.0, 0.0, 0.0]
    assert [p.result.correct for p in reward.batch.parts] == [True, False, False, True]
    # a resumed probe sets the random control's call count to its step: the draws of an unbroken run
    unbroken = ProbeReward(MathReward(), ControlReward("random", seed=3))
    draws = [_call(unbroken) for _ in range(3)]
    resumed = ProbeReward(MathReward(), ControlReward("random", seed=3))
    resumed.control.calls = 2
    assert _call(resumed) == draws[2]


def test_metrics_row_means_over_completions():
    reward = ProbeReward(MathReward(RewardConfig(), VerifierConfig()))
    _call(reward)
    row = metrics_row(7, reward.batch, group=2, logs={"loss": 0.5, "learning_rate": 1e-5, "grad_norm": 2.0})
    assert row["step"] == 7 and row["acc"] == 0.5 and row["reward/mean"] == 0.5 and row["reward/std"] == 0.5
    assert row["frac_zero_std"] == 0.0          # each group of 2 has one right, one wrong
    assert row["len/mean"] == 8.0 and row["len/correct"] == 5.5 and row["len/incorrect"] == 10.5
    assert row["clip_ratio"] == 0.25 and row["multi_boxed_rate"] == 0.25 and row["no_answer_rate"] == 0.25
    assert row["lr"] == 1e-5 and row["loss"] == 0.5 and row["kl"] is None
    samples = sample_rows(7, reward.batch, 3)
    assert [s["status"] for s in samples] == ["ok", "wrong", "no_answer"] and samples[1]["finish_reason"] == "length"


@pytest.mark.parametrize("n", [0, 10])
def test_sample_rows_take_at_most_the_batch(n):
    reward = ProbeReward(MathReward())
    _call(reward)
    assert len(sample_rows(1, reward.batch, n)) == min(n, 4)
