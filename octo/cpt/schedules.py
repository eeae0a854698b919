"""Learning-rate schedules of a stage, as a function of the optimizer step.

``lr(s)`` is the learning rate of update ``s`` (0-based) of a stage of ``total`` updates:

- warmup: ``peak * (s + 1) / warmup`` for ``s < warmup``;
- ``constant`` (the stable stage): ``peak`` afterwards;
- decays reach ``final`` exactly at the last update, with progress
  ``p = (s - warmup) / (total - warmup - 1)``:
  ``cosine``: ``final + (peak - final) * (1 + cos(pi p)) / 2`` (OctoThinker: 3e-5 -> 1.5e-5);
  ``linear``: ``peak + (final - peak) * p``;
  ``1-sqrt``: ``final + (peak - final) * (1 - sqrt(p))`` (the WSD cool-down shape).

A decay branch with ``lr: null`` starts from the final LR of the stage it branches from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from octo.errors import ConfigError

SCHEDULES = ("constant", "cosine", "linear", "1-sqrt")


@dataclass(frozen=True)
class LRSchedule:
    kind: str
    peak: float
    final: float
    total: int
    warmup: int = 0

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ConfigError("schedule.kind", f"must be one of {', '.join(SCHEDULES)} (got {self.kind!r})")
        if self.warmup >= self.total and self.total > 1:
            raise ConfigError("schedule.warmup_steps",
                              f"({self.warmup}) must be smaller than the stage's {self.total} steps")

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return self.peak * (step + 1) / self.warmup
        if self.kind == "constant":
            return self.peak
        span = self.total - self.warmup - 1
        p = 1.0 if span <= 0 else min(1.0, max(0.0, (step - self.warmup) / span))
        if self.kind == "cosine":
            return self.final + (self.peak - self.final) * 0.5 * (1.0 + math.cos(math.pi * p))
        if self.kind == "linear":
            return self.peak + (self.final - self.peak) * p
        return self.final + (self.peak - self.final) * (1.0 - math.sqrt(p))
