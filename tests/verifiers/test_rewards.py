"""Rewards: exact component values, repetition detectors, DAPO overlong, TRL reward callables."""

from __future__ import annotations

import pickle
import random
import re

import pytest

from octo.errors import OctoError
from octo.verifiers import (
    ControlReward,
    MathReward,
    RewardConfig,
    VerifierConfig,
    has_ngram_repetition,
    has_repetition,
    overlong_penalty,
    score_completions,
)
from octo.verifiers.repetition import REPEAT_RE

OCTO_RE = re.compile(r"(.{5,}?)\1{4,}")  # OctoThinker's check, spelled out here independently

WEIGHTS = {"correctness": 1.0, "format": 0.5, "repetition": 0.25, "overlong": 2.0}
REWARD = RewardConfig(correct=1.0, wrong=-1.0, weights=WEIGHTS)


def test_components_exact(pool):
    loop = "I think so. " * 6
    completions = [
        "3 + 4 = 7, so \\boxed{7}",                 # correct, one box
        "\\boxed{6} or maybe \\boxed{8}",           # wrong (last box 8), two boxes
        "The answer is 7.",                         # correct, no box
        loop + "\\boxed{5}",                        # wrong, one box, repeated
        "no idea",                                  # no answer, no box
    ]
    golds = ["7", "7", "7", "7", "7"]
    lengths = [10, 80, 90, 100, 120]
    parts = score_completions(completions, golds, reward=REWARD, verifier=VerifierConfig(),
                              lengths=lengths, max_len=100, pool=pool)
    want = [
        {"correctness": 1.0, "format": 0.0, "repetition": 0.0, "overlong": 0.0},
        {"correctness": -1.0, "format": -0.5, "repetition": 0.0, "overlong": 0.0},
        {"correctness": 1.0, "format": -0.5, "repetition": 0.0, "overlong": -1.0},   # (80-90)/20 = -0.5, x2
        {"correctness": -1.0, "format": 0.0, "repetition": -0.25, "overlong": -2.0},
        {"correctness": -1.0, "format": -0.5, "repetition": 0.0, "overlong": -2.0},
    ]
    assert [p.components for p in parts] == want
    assert [p.total for p in parts] == [1.0, -1.5, -0.5, -3.25, -3.5]
    assert [p.repeated for p in parts] == [False, False, False, True, False]
    assert [p.multi_boxed for p in parts] == [False, True, False, False, False]
    assert [p.result.status for p in parts] == ["ok", "wrong", "ok", "wrong", "no_answer"]


def test_default_reward_is_correctness_only(pool):
    parts = score_completions(["\\boxed{7}", "\\boxed{7}\\boxed{8}"], ["7", "7"], reward=RewardConfig(),
                              verifier=VerifierConfig(), pool=pool)
    assert [p.total for p in parts] == [1.0, 0.0]
    assert parts[1].components == {"correctness": 0.0, "format": 0.0, "repetition": 0.0, "overlong": 0.0}


def test_format_values_are_configurable(pool):
    rc = RewardConfig(weights={"format": 1.0}, format_one=1.0, format_none=-2.0, format_multi=-3.0)
    parts = score_completions(["\\boxed{1}", "1", "\\boxed{1}\\fbox{1}"], ["1"] * 3, reward=rc,
                              verifier=VerifierConfig(), pool=pool)
    assert [p.components["format"] for p in parts] == [1.0, -2.0, -3.0]
    assert [p.total for p in parts] == [1.0, -2.0, -3.0]


def test_overlong_needs_lengths(pool):
    with pytest.raises(ValueError, match="overlong"):
        score_completions(["x"], ["1"], reward=REWARD, verifier=VerifierConfig(), pool=pool)
    with pytest.raises(ValueError, match="golds"):
        score_completions(["x"], ["1", "2"], reward=RewardConfig(), verifier=VerifierConfig(), pool=pool)


@pytest.mark.parametrize("length, value", [(0, 0.0), (80, 0.0), (81, -0.05), (90, -0.5), (99, -0.95),
                                           (100, -1.0), (101, -1.0), (5000, -1.0)])
def test_overlong_penalty_dapo(length, value):
    # DAPO eq. 13 with L_max = 100, L_cache = 0.2 * 100 = 20
    assert overlong_penalty(length, 100, 0.2) == pytest.approx(value, abs=1e-12)


def test_overlong_follows_the_length_schedule():
    assert overlong_penalty(3000, 2048, 0.2) == -1.0
    assert overlong_penalty(3000, 4096, 0.2) == 0.0
    assert overlong_penalty(7782, 8192, 0.25) == pytest.approx((6144 - 7782) / 2048)


# ---------------------------------------------------------------- repetition

@pytest.mark.parametrize("text, repeated", [
    ("Solution: " * 5, True), ("Solution: " * 4, False), ("abcde" * 5, True), ("abcd" * 10, True),
    ("abc" * 20, True), ("ab" * 100, True), ("abcde" * 4 + "abcd", False), ("line\n" * 50, False),
    ("The answer is 42. " * 5, True), ("1, 2, 3, 4, 5, 6, 7, 8, 9, 10", False), ("", False),
    ("x" * 24, False), ("x" * 25, True),
])
def test_regex_detector_examples(text, repeated):
    assert has_repetition(text) is repeated
    assert bool(OCTO_RE.search(text)) is repeated


def _random_text(rng: random.Random, max_len: int) -> str:
    alpha = rng.choice(["ab", "abc", "ab\n", "abcdefgh", "abcdefghij \n"])
    t = "".join(rng.choice(alpha) for _ in range(rng.randint(0, max_len)))
    if rng.random() < 0.6:  # plant a near-threshold repeat
        L = rng.randint(5, 40)
        unit = "".join(rng.choice(alpha.replace("\n", "")) for _ in range(L))
        k = rng.choice([3, 4, 5, 6])
        pos = rng.randint(0, len(t))
        t = t[:pos] + unit * k + unit[: rng.randint(0, L - 1)] + t[pos:]
    return t


def test_regex_detector_equals_the_regex_on_random_text():
    rng = random.Random(1234)
    for _ in range(600):
        t = _random_text(rng, 300)
        assert has_repetition(t) is bool(REPEAT_RE.search(t)) is bool(OCTO_RE.search(t)), t


def test_regex_detector_is_fast_on_long_lines():
    import time

    line = " ".join(str(i) for i in range(10_000, 22_000))  # 72k characters, one line, no repeats
    loop = "Solution: " * 5
    t0 = time.perf_counter()
    assert has_repetition(line) is False
    assert has_repetition(line + loop) is True
    assert has_repetition(line[:30_000] + loop + line[30_000:]) is True
    assert has_repetition("z" * 1_000_000 + "q", max_chars=50_000) is True
    assert time.perf_counter() - t0 < 5.0
    # only the last max_chars characters are looked at
    assert has_repetition(loop + line, max_chars=50_000) is False
    assert has_repetition(loop + line[:1000], max_chars=50_000) is True


def test_ngram_detector():
    assert has_ngram_repetition([1, 2, 3] * 5, n=3, min_count=5) is True
    assert has_ngram_repetition([1, 2, 3] * 4, n=3, min_count=5) is False
    assert has_ngram_repetition(list(range(100)), n=2, min_count=2) is False
    assert has_ngram_repetition([], n=3, min_count=2) is False
    assert has_ngram_repetition("a b a b".split(), n=2, min_count=2) is True


def test_ngram_mode_uses_token_ids(pool):
    rc = RewardConfig(weights={"repetition": 1.0}, repetition="ngram", ngram_n=3, ngram_min_count=3)
    ids = [[1, 2, 3, 1, 2, 3, 1, 2, 3], [1, 2, 3, 4, 5, 6, 7, 8, 9]]
    parts = score_completions(["x", "x"], ["1", "1"], reward=rc, verifier=VerifierConfig(), pool=pool,
                              token_ids=ids)
    assert [p.components["repetition"] for p in parts] == [-1.0, 0.0]
    words = score_completions(["go on " * 5, "go on"], ["1", "1"], reward=rc, verifier=VerifierConfig(), pool=pool)
    assert [p.repeated for p in words] == [True, False]  # without ids, words are the tokens
    either = RewardConfig(repetition="either", ngram_n=50)
    assert score_completions(["abcde" * 5], ["1"], reward=either, verifier=VerifierConfig(), pool=pool)[0].repeated


# ---------------------------------------------------------------- TRL reward callables

def test_math_reward_trl_call(pool):
    r = MathReward(REWARD, VerifierConfig(), max_len=100)
    assert r.__name__ == "math_reward"
    out = r(prompts=["p1", "p2"], completions=["\\boxed{7}", [{"role": "assistant", "content": "\\boxed{8}"}]],
            completion_ids=[[1] * 10, [2] * 90], answer=["7", 7], trainer_state=None, level=[1, 2])
    assert out == [1.0, -1.0 - 2.0 * 0.5]
    assert all(isinstance(v, float) for v in out)
    assert [p.result.status for p in r.last] == ["ok", "wrong"]


def test_math_reward_without_overlong_needs_no_ids():
    r = MathReward(RewardConfig(correct=1.0, wrong=-1.0))
    assert r(prompts=["p"], completions=["\\boxed{3}"], answer=["3"]) == [1.0]


def test_math_reward_missing_column_is_a_user_error():
    r = MathReward()
    with pytest.raises(OctoError, match="no 'answer' column"):
        r(prompts=["p"], completions=["x"], solution=["1"])
    assert MathReward(gold_key="solution")(prompts=["p"], completions=["\\boxed{1}"], solution=["1"]) == [1.0]


def test_reward_callables_pickle():
    r = MathReward(REWARD, VerifierConfig(timeout_s=2.0), max_len=64)
    r(prompts=["p"], completions=["\\boxed{7}"], completion_ids=[[1, 2]], answer=["7"])
    r2 = pickle.loads(pickle.dumps(r))
    assert r2.__name__ == "math_reward" and r2.max_len == 64 and r2.last == []
    assert r2.reward == r.reward and r2.verifier == r.verifier
    assert r2(prompts=["p"], completions=["\\boxed{7}"], completion_ids=[[1, 2]], answer=["7"]) == [1.0]
    c = ControlReward("random", seed=3)
    c(completions=["a"] * 4)
    c2 = pickle.loads(pickle.dumps(c))
    assert c2.__name__ == "control_random" and c2.calls == 1
    assert c2(completions=["a"] * 8) == c(completions=["a"] * 8)


def test_control_random_is_deterministic_and_balanced():
    a, b = ControlReward("random", seed=7), ControlReward("random", seed=7)
    first = [a(prompts=None, completions=["x"] * 64) for _ in range(3)]
    assert first == [b(completions=["x"] * 64) for _ in range(3)]
    assert first[0] != first[1]  # a new draw per call
    assert set(first[0]) == {-1.0, 1.0}
    assert ControlReward("random", seed=8)(completions=["x"] * 64) != first[0]
    big = ControlReward("random", seed=0)(completions=["x"] * 4000)
    assert abs(sum(big)) < 300  # ~N(0, 63)


def test_control_format():
    c = ControlReward("format", seed=0)
    assert c.__name__ == "control_format"
    assert c(completions=["\\boxed{1}", "1", "\\boxed{1}\\boxed{2}", "\\boxed{\\boxed{2}}"]) == [1.0, 0.0, 0.0, 1.0]
    with pytest.raises(ValueError):
        ControlReward("nonsense")
