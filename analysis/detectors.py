"""Dynamics detectors over one probe's logs: each says whether and at which step a failure began.

Each detector reports at most one event, at the *onset* step: the first step of the first run of
steps where its condition held long enough (a rolling median over ``smooth_window`` steps, held for
``persistence`` steps; held-out conditions for ``eval_persistence`` evaluations). The failures are
those OctoThinker (seed 004) reports for RL from poorly mid-trained bases: length_explosion (Fig. 5,
8, 10), collapse (Fig. 6, 8), truncation, repetition, multi_boxed (FineMath, Fig. 5),
entropy_collapse (arXiv 2505.22617), kl_blowup and reward_hacking. Conditions and defaults:
docs/analysis.md, "Detectors".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from octo.analysis.config import AnalysisConfig
from octo.analysis.heldout import HeldOut, heldout
from octo.analysis.load import Probe
from octo.analysis.series import baseline, column, first_run, rolling_median


@dataclass
class Event:
    detector: str
    step: int
    probe_id: str
    detail: str

    def to_dict(self) -> dict:
        return asdict(self)


def _step(x: float) -> int:
    return int(round(float(x)))


def _series(probe: Probe, key: str, cfg: AnalysisConfig):
    steps, raw = column(probe.metrics, key)
    return steps, raw, rolling_median(raw, cfg.smooth_window), baseline(raw, cfg.baseline_steps)


def _enough(raw: np.ndarray, cfg: AnalysisConfig) -> bool:
    return int(np.sum(~np.isnan(raw))) >= cfg.baseline_steps + cfg.persistence


def length_explosion(probe: Probe, cfg: AnalysisConfig) -> Event | None:
    steps, len_raw, length, len0 = _series(probe, "len/mean", cfg)
    _, clip_raw, clip, clip0 = _series(probe, "clip_ratio", cfg)
    if not (_enough(len_raw, cfg) and _enough(clip_raw, cfg)) or not len0 > 0:
        return None
    with np.errstate(invalid="ignore"):
        cond = ((length >= (1 + cfg.length_growth) * len0) & (clip >= cfg.clip_threshold)
                & (clip >= clip0 + cfg.clip_rise))
    i = first_run(cond, cfg.persistence)
    if i is None:
        return None
    return Event("length_explosion", _step(steps[i]), probe.probe_id,
                 f"len/mean {len0:.0f} -> {length[i]:.0f} (x{length[i] / len0:.1f}) with clip_ratio "
                 f"{clip0:.2f} -> {clip[i]:.2f}")


def _onset(probe: Probe, key: str, cfg: AnalysisConfig, cond) -> tuple[int, float, float] | None:
    """(step, smoothed value, baseline) where ``cond(smoothed, baseline)`` first holds for ``persistence`` steps;
    None when it does not or the series is too short."""
    steps, raw, smooth, base = _series(probe, key, cfg)
    if not _enough(raw, cfg):
        return None
    with np.errstate(invalid="ignore"):
        i = first_run(cond(smooth, base), cfg.persistence)
    return None if i is None else (_step(steps[i]), float(smooth[i]), float(base))


def truncation(probe: Probe, cfg: AnalysisConfig) -> Event | None:
    hit = _onset(probe, "clip_ratio", cfg, lambda s, b: s >= cfg.truncation_threshold)
    if hit is None:
        return None
    step, value, base = hit
    return Event("truncation", step, probe.probe_id,
                 f"clip_ratio {value:.2f} >= {cfg.truncation_threshold:.2f} (baseline {base:.2f}): "
                 "completions cut at max_len lose their reward")


def _surge(probe: Probe, cfg: AnalysisConfig, name: str, key: str, threshold: float, rise: float) -> Event | None:
    hit = _onset(probe, key, cfg, lambda s, b: (s >= threshold) & (s >= b + rise))
    if hit is None:
        return None
    step, value, base = hit
    return Event(name, step, probe.probe_id,
                 f"{key} {base:.2f} -> {value:.2f} (threshold {threshold:.2f}, rise {rise:.2f})")


def repetition(probe: Probe, cfg: AnalysisConfig) -> Event | None:
    return _surge(probe, cfg, "repetition", "repeat_rate", cfg.repeat_threshold, cfg.repeat_rise)


def multi_boxed(probe: Probe, cfg: AnalysisConfig) -> Event | None:
    return _surge(probe, cfg, "multi_boxed", "multi_boxed_rate", cfg.multi_boxed_threshold, cfg.multi_boxed_rise)


def entropy_collapse(probe: Probe, cfg: AnalysisConfig) -> Event | None:
    hit = _onset(probe, "entropy", cfg, lambda s, b: (s <= cfg.entropy_ratio * b) & (b > 0))
    if hit is None:
        return None
    step, value, base = hit
    return Event("entropy_collapse", step, probe.probe_id,
                 f"entropy {base:.3f} -> {value:.3f} (x{value / base:.2f} <= x{cfg.entropy_ratio:.2f})")


def kl_blowup(probe: Probe, cfg: AnalysisConfig) -> Event | None:
    hit = _onset(probe, "kl", cfg, lambda s, b: s >= cfg.kl_max)
    if hit is None:
        return None
    step, value, base = hit
    return Event("kl_blowup", step, probe.probe_id, f"kl {base:.3g} -> {value:.3g} (>= {cfg.kl_max:g})")


def _too_few_problems(ho: HeldOut | None, cfg: AnalysisConfig) -> bool:
    return ho is None or len(ho.steps) < 2 or (ho.n is not None and ho.n < cfg.min_problems)


def collapse(probe: Probe, cfg: AnalysisConfig, ho: HeldOut | None = None) -> Event | None:
    ho = ho if ho is not None else heldout(probe)
    if _too_few_problems(ho, cfg):
        return None
    acc = ho.combined
    E = len(acc)
    # a peak is held at two consecutive evaluations, so one lucky evaluation sets none
    held = np.minimum(acc[:-1], acc[1:])
    cond = np.zeros(E, dtype=bool)
    z_known = np.zeros(E, dtype=bool)
    info = {}
    # step 0 is the checkpoint's own level: a probe that falls from its first steps collapses too
    start = bool(ho.steps[0] == 0)
    for e in range(1, E):
        top = int(np.argmax(held[:e]))         # best pair (top, top + 1) with top + 1 <= e
        j = top if acc[top] <= acc[top + 1] else top + 1
        if start and acc[0] >= acc[j]:
            top = j = 0
        dd = float(acc[j] - acc[e])
        se = ho.drop_se(j, e)
        z = (dd / se if se > 0 else (np.inf if dd > 0 else 0.0)) if se is not None else None
        z_known[e] = z is not None
        cond[e] = dd >= cfg.collapse_drawdown - 1e-12 and (z is None or z >= cfg.collapse_z)
        info[e] = (top, j, dd, z)
    i = first_run(cond, cfg.eval_persistence, tail_ok=z_known)
    if i is None:
        return None
    top, j, dd, z = info[i]
    ztxt = f", z = {z:.1f}" if z is not None and np.isfinite(z) else ""
    peak = ("the start" if j == 0 and start else
            f"peak held at steps {_step(ho.steps[top])}-{_step(ho.steps[top + 1])}")
    return Event("collapse", _step(ho.steps[i]), probe.probe_id,
                 f"held-out accuracy fell from {acc[j]:.3f} ({peak}) to {acc[i]:.3f} at step "
                 f"{_step(ho.steps[i])}: drawdown {dd:.3f} >= {cfg.collapse_drawdown:g}{ztxt}")


def reward_hacking(probe: Probe, cfg: AnalysisConfig, ho: HeldOut | None = None) -> Event | None:
    ho = ho if ho is not None else heldout(probe)
    steps, raw = column(probe.metrics, "reward/mean")
    if _too_few_problems(ho, cfg) or not _enough(raw, cfg):
        return None
    r0 = baseline(raw, cfg.baseline_steps)
    acc = ho.combined
    E = len(acc)
    cond = np.zeros(E, dtype=bool)
    info = {}
    for e in range(1, E):
        window = raw[(steps <= ho.steps[e]) & ~np.isnan(raw)][-cfg.persistence:]
        if ho.steps[e] <= 0 or not len(window):
            continue
        d_reward = float(np.median(window) - r0)
        d_acc = float(acc[e] - acc[0])
        cond[e] = d_reward >= cfg.hack_reward_rise and d_acc <= cfg.hack_acc_flat
        info[e] = (d_reward, d_acc)
    i = first_run(cond, cfg.eval_persistence)
    if i is None:
        return None
    d_reward, d_acc = info[i]
    return Event("reward_hacking", _step(ho.steps[i]), probe.probe_id,
                 f"train reward/mean +{d_reward:.2f} since the start while held-out accuracy changed "
                 f"{d_acc:+.3f} (<= {cfg.hack_acc_flat:+.3f})")


def detect(probe: Probe, cfg: AnalysisConfig | None = None) -> list[Event]:
    """Every detector on one probe, in the order of config.DETECTORS."""
    cfg = cfg or AnalysisConfig()
    ho = heldout(probe)
    explosion = length_explosion(probe, cfg)
    # a length explosion runs into the limit by definition: truncation is its own event only without one
    found = [explosion, collapse(probe, cfg, ho), None if explosion else truncation(probe, cfg),
             repetition(probe, cfg), multi_boxed(probe, cfg), entropy_collapse(probe, cfg), kl_blowup(probe, cfg),
             reward_hacking(probe, cfg, ho)]
    return [e for e in found if e is not None]
