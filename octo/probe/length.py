"""Maximum-response-length schedulers (OctoThinker's stair: 2048 -> 4096 at step 200 -> 8192 at 320).

``limit(step, clip_history)`` is the generation limit for the rollouts of optimizer step
``step + 1`` (``step`` updates done so far). Every kind is a pure function of the step and
of the clip ratios already logged, so a resumed probe recomputes exactly the same limits.

- constant: ``max_len``;
- stair: the value of the largest stair step <= ``step`` (``max_len`` before the first);
- linear: ``max_len`` to ``end_len`` over ``ramp_steps``, rounded down;
- adaptive: start at ``max_len``; after ``patience`` consecutive steps with clip ratio
  above ``clip_threshold`` multiply by ``factor`` (capped at ``end_len``), then wait another
  ``patience`` steps; never lower.
"""

from __future__ import annotations

from collections.abc import Sequence

from octo.config import LengthScheduleConfig


class LengthSchedule:
    def __init__(self, cfg: LengthScheduleConfig):
        self.cfg = cfg

    @property
    def maximum(self) -> int:
        c = self.cfg
        if c.kind == "stair":
            return max([c.max_len, *c.stairs.values()]) if 0 not in c.stairs else max(c.stairs.values())
        if c.kind in ("linear", "adaptive"):
            return max(c.max_len, c.end_len)
        return c.max_len

    def limit(self, step: int, clip_history: Sequence[float] = ()) -> int:
        c = self.cfg
        if c.kind == "constant":
            return c.max_len
        if c.kind == "stair":
            value = c.max_len
            for at in sorted(c.stairs):
                if at <= step:
                    value = c.stairs[at]
            return value
        if c.kind == "linear":
            frac = min(1.0, step / c.ramp_steps)
            return int(c.max_len + (c.end_len - c.max_len) * frac)
        cap = max(c.max_len, c.end_len)
        value, run = c.max_len, 0
        for clip in list(clip_history)[:step]:
            run = run + 1 if clip is not None and clip > c.clip_threshold else 0
            if run >= c.patience and value < cap:
                value = min(cap, int(value * c.factor))
                run = 0
        return value
