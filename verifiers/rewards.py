"""Rewards for GRPO probes: weighted components and TRL-compatible reward callables.

``total = Σ weight[c] · raw[c]`` over the components (``RewardConfig``):

- ``correctness``: ``reward.correct`` when the verifier says ``ok``, else ``reward.wrong`` (OctoThinker: +1 / -1);
- ``format``: ``format_one`` / ``format_none`` / ``format_multi`` for one, no or several top-level
  ``\\boxed{}`` (several: the Finemath failure mode of seed 004);
- ``repetition``: -1 when the completion repeats itself (OctoThinker's ``(.{5,}?)\\1{4,}`` and/or a
  token n-gram occurring ``ngram_min_count`` times), else 0;
- ``overlong``: DAPO's soft overlong punishment (Yu et al. 2025, eq. 13), ``L_cache = overlong_buffer ·
  max_len``: 0 up to ``max_len - L_cache``, then linear down to -1 at ``max_len``.

:class:`MathReward` and :class:`ControlReward` are picklable objects with the interface TRL calls:
``f(prompts=..., completions=..., completion_ids=..., **dataset_columns)`` and a ``__name__``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from octo.errors import OctoError
from octo.verifiers.check import VerifyResult
from octo.verifiers.config import REWARD_COMPONENTS, RewardConfig, VerifierConfig
from octo.verifiers.extract import count_boxed
from octo.verifiers.repetition import has_ngram_repetition, has_repetition


@dataclass(frozen=True)
class RewardBreakdown:
    """One completion's reward: ``total`` = sum of the weighted ``components``."""

    total: float
    components: dict[str, float]
    result: VerifyResult
    repeated: bool
    multi_boxed: bool


def overlong_penalty(length: int, max_len: int, buffer: float) -> float:
    """DAPO soft overlong punishment in [-1, 0] for a completion of ``length`` tokens."""
    cache = buffer * max_len
    safe = max_len - cache
    if length <= safe:
        return 0.0
    if length <= max_len:
        return (safe - length) / cache
    return -1.0


def is_repeated(text: str, reward: RewardConfig, token_ids: Sequence | None = None) -> bool:
    """The configured repetition detector (``reward.repetition``) on one completion."""
    regex = reward.repetition in ("regex", "either") and has_repetition(text, reward.repetition_max_chars)
    if regex:
        return True
    if reward.repetition in ("ngram", "either"):
        tokens = token_ids if token_ids is not None else text.split()
        return has_ngram_repetition(tokens, reward.ngram_n, reward.ngram_min_count)
    return False


def score_completions(completions: list[str], golds: list[str], *, reward: RewardConfig,
                      verifier: VerifierConfig, lengths: list[int] | None = None,
                      max_len: int | None = None, pool=None,
                      token_ids: list[Sequence[int]] | None = None,
                      tasks: list[str | None] | None = None) -> list[RewardBreakdown]:
    """Verify and score completions; ``lengths`` and ``max_len`` feed the overlong component, ``token_ids``
    the n-gram repetition detector (words without them)."""
    n = len(completions)
    if len(golds) != n:
        raise ValueError(f"score_completions: {n} completions but {len(golds)} golds")
    for name, seq in (("lengths", lengths), ("token_ids", token_ids), ("tasks", tasks)):
        if seq is not None and len(seq) != n:
            raise ValueError(f"score_completions: {n} completions but {len(seq)} {name}")
    w = {c: reward.weight(c) for c in REWARD_COMPONENTS}
    if w["overlong"] != 0.0 and (lengths is None or max_len is None):
        raise ValueError("score_completions: the 'overlong' reward weight is set, so pass lengths= and max_len=")
    if pool is None:
        from octo.verifiers.pool import shared_pool

        pool = shared_pool(verifier)
    results = pool.verify_batch(golds=list(golds), completions=list(completions), tasks=tasks)
    out = []
    for i, (text, res) in enumerate(zip(completions, results)):
        raw_format = (reward.format_one if res.n_boxed == 1
                      else reward.format_none if res.n_boxed == 0 else reward.format_multi)
        repeated = is_repeated(text, reward, token_ids[i] if token_ids is not None else None)
        overlong = (overlong_penalty(lengths[i], max_len, reward.overlong_buffer)
                    if lengths is not None and max_len is not None else 0.0)
        raw = {
            "correctness": reward.correct if res.correct else reward.wrong,
            "format": raw_format,
            "repetition": -1.0 if repeated else 0.0,
            "overlong": overlong,
        }
        components = {c: w[c] * raw[c] for c in REWARD_COMPONENTS}
        out.append(RewardBreakdown(total=sum(components.values()), components=components, result=res,
                                   repeated=repeated, multi_boxed=res.n_boxed > 1))
    return out


def completion_text(completion) -> str:
    """A TRL completion as text: a string, or the content of a conversational completion."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):  # [{"role": "assistant", "content": ...}, ...]
        return "".join(m.get("content", "") if isinstance(m, dict) else str(m) for m in completion)
    if isinstance(completion, dict):
        return str(completion.get("content", ""))
    raise TypeError(f"a completion must be a str or a list of messages (got {type(completion).__name__})")


class MathReward:
    """The combined reward as a TRL reward function (gold: the ``answer`` column); ``last``: the latest breakdowns."""

    def __init__(self, reward: RewardConfig = RewardConfig(), verifier: VerifierConfig = VerifierConfig(),
                 *, gold_key: str = "answer", max_len: int | None = None, name: str = "math_reward"):
        self.reward = reward
        self.verifier = verifier
        self.gold_key = gold_key
        self.max_len = max_len
        self.__name__ = name
        self.last: list[RewardBreakdown] = []

    def __call__(self, prompts=None, completions=None, completion_ids=None, **columns) -> list[float]:
        if completions is None:
            raise TypeError("MathReward needs completions=")
        golds = columns.get(self.gold_key)
        if golds is None:
            have = ", ".join(sorted(columns)) or "none"
            raise OctoError(f"the training dataset has no '{self.gold_key}' column with gold answers "
                            f"(columns passed: {have}); add it or set the reward's gold_key")
        texts = [completion_text(c) for c in completions]
        golds = [g if isinstance(g, str) else str(g) for g in golds]
        lengths = [len(ids) for ids in completion_ids] if completion_ids is not None else None
        parts = score_completions(
            texts, golds, reward=self.reward, verifier=self.verifier,
            lengths=lengths, max_len=self.max_len if lengths is not None else None,
            token_ids=completion_ids, tasks=columns.get("task"))
        self.last = parts
        return [p.total for p in parts]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["last"] = []
        return state


class ControlReward:
    """Negative-control reward (:func:`control_rewards`) as a TRL reward function."""

    def __init__(self, kind: str, seed: int = 0):
        if kind not in ("random", "format"):
            raise ValueError(f"ControlReward kind must be 'random' or 'format' (got {kind!r})")
        self.kind = kind
        self.seed = int(seed)
        self.calls = 0
        self.__name__ = f"control_{kind}"

    def __call__(self, prompts=None, completions=None, completion_ids=None, **columns) -> list[float]:
        if completions is None:
            raise TypeError("ControlReward needs completions=")
        values = control_rewards(self.kind, [completion_text(c) for c in completions],
                                 seed=self.seed, step=self.calls)
        self.calls += 1
        return values


def control_rewards(kind: str, texts: Sequence[str], *, seed: int, step: int) -> list[float]:
    """Negative-control rewards for one batch: ``random`` ±1 drawn from ``(seed, step)`` alone (a resumed run that
    replays a step draws the same values), or ``format`` (1 for exactly one top-level box, else 0)."""
    if kind == "random":
        rng = random.Random(seed * 1_000_003 + step)
        return [rng.choice((-1.0, 1.0)) for _ in texts]
    if kind == "format":
        return [1.0 if count_boxed(t) == 1 else 0.0 for t in texts]
    raise ValueError(f"control kind must be 'random' or 'format' (got {kind!r})")
