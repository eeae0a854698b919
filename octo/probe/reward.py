"""The probe's reward: the verifier's :class:`~octo.verifiers.MathReward`, or a negative control in its place.

TRL calls a reward function with the batch's prompts, completions, completion ids and dataset columns
(``answer``), plus what the rollout returned beside the tokens (``finish_reason``, ``max_len``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from octo.verifiers import ControlReward, MathReward, RewardBreakdown


@dataclass
class ScoredBatch:
    """One step's completions as the reward saw them: what the metrics callback logs."""

    prompts: list[str]
    completions: list[str]
    golds: list[str]
    rewards: list[float]              # what GRPO was given
    parts: list[RewardBreakdown]      # the math reward's breakdown, also under a control
    lengths: list[int]
    finish_reasons: list[str]
    seconds: float


class ProbeReward:
    """A picklable TRL reward function: ``MathReward`` (its breakdowns are logged even when a ``ControlReward``
    replaces its totals) and keeps the latest :class:`ScoredBatch` in ``batch``."""

    def __init__(self, math: MathReward, control: ControlReward | None = None):
        self.math = math
        self.control = control
        self.__name__ = control.__name__ if control is not None else math.__name__
        self.batch: ScoredBatch | None = None

    def __call__(self, prompts, completions, completion_ids, answer, finish_reason, max_len, **columns) -> list[float]:
        t0 = time.perf_counter()
        self.math.max_len = max_len[0]
        totals = self.math(prompts=prompts, completions=completions, completion_ids=completion_ids, answer=answer)
        if self.control is not None:
            totals = self.control(prompts=prompts, completions=completions, completion_ids=completion_ids)
        self.batch = ScoredBatch(list(prompts), list(completions), list(answer), list(totals), self.math.last,
                                 [len(c) for c in completion_ids], list(finish_reason), time.perf_counter() - t0)
        return totals

    def __getstate__(self) -> dict:
        return {**self.__dict__, "batch": None}
