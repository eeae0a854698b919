"""LR schedules and max-length schedules at exact values."""

from __future__ import annotations

import math

import pytest

from octo.config import LengthScheduleConfig
from octo.cpt.schedules import LRSchedule
from octo.errors import ConfigError
from octo.probe.length import LengthSchedule


def test_constant_with_warmup():
    s = LRSchedule("constant", 1e-3, 0.0, total=100, warmup=4)
    assert [s(i) for i in range(6)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3])
    assert s(99) == 1e-3


def test_octothinker_cosine_decay_3e5_to_1p5e5():
    s = LRSchedule("cosine", 3e-5, 1.5e-5, total=11)
    assert s(0) == pytest.approx(3e-5)
    assert s(5) == pytest.approx(2.25e-5)           # halfway: mean of peak and floor
    assert s(10) == pytest.approx(1.5e-5)           # floor exactly at the last update
    assert s(2) == pytest.approx(1.5e-5 + 1.5e-5 * 0.5 * (1 + math.cos(math.pi * 0.2)))


def test_linear_and_one_minus_sqrt():
    lin = LRSchedule("linear", 1.0, 0.0, total=5)
    assert [lin(i) for i in range(5)] == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0])
    wsd = LRSchedule("1-sqrt", 1.0, 0.0, total=5, warmup=0)
    assert [wsd(i) for i in range(5)] == pytest.approx([1.0, 1 - math.sqrt(0.25), 1 - math.sqrt(0.5),
                                                        1 - math.sqrt(0.75), 0.0])


def test_warmup_longer_than_stage_is_an_error():
    with pytest.raises(ConfigError):
        LRSchedule("cosine", 1.0, 0.0, total=5, warmup=5)


def test_stair_is_octothinker():
    s = LengthSchedule(LengthScheduleConfig(kind="stair", stairs={0: 2048, 200: 4096, 320: 8192}))
    assert [s.limit(x) for x in (0, 199, 200, 319, 320, 1000)] == [2048, 2048, 4096, 4096, 8192, 8192]
    assert s.maximum == 8192


def test_stair_before_first_step_uses_max_len():
    s = LengthSchedule(LengthScheduleConfig(kind="stair", max_len=10, stairs={5: 20}))
    assert [s.limit(x) for x in (0, 4, 5)] == [10, 10, 20] and s.maximum == 20


def test_constant_and_linear_length():
    assert LengthSchedule(LengthScheduleConfig(kind="constant", max_len=77)).limit(500) == 77
    lin = LengthSchedule(LengthScheduleConfig(kind="linear", max_len=100, end_len=200, ramp_steps=4))
    assert [lin.limit(x) for x in range(6)] == [100, 125, 150, 175, 200, 200]


def test_adaptive_raises_after_patience_and_never_lowers():
    cfg = LengthScheduleConfig(kind="adaptive", max_len=100, end_len=400, clip_threshold=0.2, patience=3,
                               factor=2.0)
    s = LengthSchedule(cfg)
    clips = [0.5, 0.5, 0.1, 0.5, 0.5, 0.5, 0.0, 0.3, 0.3, 0.3, 0.9, 0.9, 0.9, 0.9]
    limits = [s.limit(step, clips) for step in range(len(clips) + 1)]
    # saturated runs complete at steps 6 (clips[3:6]) and 10 (clips[7:10]); the cap 400 is then held
    assert limits == [100] * 6 + [200] * 4 + [400] * 5
    assert all(b >= a for a, b in zip(limits, limits[1:]))
