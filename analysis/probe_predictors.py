"""The predictors of octo.analysis.predictors as a scored run uses them: what one probe's files give
(start.jsonl, per_group/correct, entropy), its held-out curve against rollout tokens, the joint
sigmoid fit over every probe, the combined readiness of ``analysis.combination`` and the per-checkpoint
predictor table of scores.json (docs/analysis.md, "Predictors").
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

import numpy as np

from octo.analysis.combine import signed
from octo.analysis.config import AnalysisConfig
from octo.analysis.heldout import HeldOut
from octo.analysis.load import Probe, num
from octo.analysis.predictors import (PREDICTORS, Curve, compute_through, entropy_at_evals, entropy_law, fit_sigmoid,
                                      group_learnable_mass, learnable_mass_trend, start_predictors)
from octo.analysis.series import column

if TYPE_CHECKING:
    from octo.analysis.score import CheckpointScore, ProbeScore, Resampler


def crc(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


def predictor_terms(probe: Probe, ho: HeldOut, cfg: AnalysisConfig, resampler: Resampler, g: np.ndarray,
                     s: np.ndarray | None, point: dict, draws: dict) -> None:
    """The predictors of octo.analysis.predictors that one probe's files give, into ``point`` and ``draws``."""
    p, d = start_predictors(probe.start, resampler.problem_weights)
    point.update(p)
    draws.update(d)
    group = num(probe.meta.get("num_generations"))
    steps, values = group_learnable_mass(probe.metrics, int(group) if group else None)
    rng = np.random.default_rng([cfg.seed, 3, crc(probe.probe_id)])
    trend = learnable_mass_trend(steps, values, cfg.bootstrap, rng)
    if trend is not None:
        point.update(trend[0])
        draws.update(trend[1])
    h = entropy_at_evals(probe.metrics, ho.steps, cfg.smooth_window)
    law = entropy_law(h, ho.combined)
    if law is not None:
        combined = g if s is None else (g + s) / 2
        law_draws = entropy_law(h, combined)
        point.update({"entropy_law/ceiling": law["ceiling"], "entropy_law/a": law["a"], "entropy_law/b": law["b"],
                      "entropy_law/r2": law["r2"]})
        draws["entropy_law/ceiling"] = law_draws["ceiling"]


def probe_curve(probe: Probe, ho: HeldOut, point: dict, cfg: AnalysisConfig) -> Curve | None:
    """Held-out accuracy (mean of greedy and sampled) against rollout tokens; None without lengths in metrics."""
    if ho.steps[0] != 0 or len(ho.steps) < 2:
        return None
    compute = compute_through(probe.metrics, probe.meta, ho.steps)
    if not compute[-1] > 0 or np.any(compute[1:] <= 0):
        return None
    _, lengths = column(probe.metrics, "len/mean")
    probe_steps = float(np.nanmax(column(probe.metrics, "step")[0])) if len(lengths) else 0.0
    full_steps = cfg.extrapolate_steps or 10 * probe_steps
    n = ho.n or (int(ho.n_per_eval.min()) if ho.n_per_eval is not None else 0)
    if not probe_steps > 0 or not n:
        return None
    cap = point.get("start/pass@k")
    return Curve(label=probe.probe_id, compute=compute, acc=ho.combined.astype(float), n=int(n),
                 cap=1.0 if cap is None else float(cap), c_full=float(compute[-1] * full_steps / probe_steps))


def fit_sigmoids(probes: list[ProbeScore], cfg: AnalysisConfig) -> None:
    """One joint sigmoid fit over every probe with a compute axis (B is shared), into each probe's metrics."""
    with_curve = [p for p in probes if p.curve is not None]
    if not with_curve:
        return
    curves = [Curve(label=str(i), compute=p.curve.compute, acc=p.curve.acc, n=p.curve.n, cap=p.curve.cap,
                    c_full=p.curve.c_full) for i, p in enumerate(with_curve)]
    fits, draws = fit_sigmoid(curves, draws=cfg.bootstrap, seed=cfg.seed, shared_mid=cfg.sigmoid_shared_mid,
                              level=cfg.ci_level)
    for i, p in enumerate(with_curve):
        fit = fits[str(i)]
        p.sigmoid = fit
        p.point.update({"sigmoid/predicted": fit["predicted"], "sigmoid/A": fit["A"], "sigmoid/C_mid": fit["C_mid"],
                        "sigmoid/C_full": fit["c_full"], "sigmoid/B": fit["B"]})
        p.draws["sigmoid/predicted"] = draws[str(i)]


def combined_readiness(r: CheckpointScore, point: dict, draws: dict, cfg: AnalysisConfig) -> str | None:
    """The combined readiness (analysis.combination) into the checkpoint's metrics, with paired draws; returns the
    name of a predictor of the combination the checkpoint lacks (then it has no combined readiness)."""
    if not cfg.combination:
        return None
    value, total = cfg.combination_intercept, np.full(cfg.bootstrap, cfg.combination_intercept)
    for name, coef in cfg.combination.items():
        sign, key = signed(name)
        if point.get(key) is None or key not in draws:
            return key
        value += coef * sign * point[key]
        total = total + coef * sign * draws[key]
    r.metrics["combined"] = float(value)
    draws["combined"] = total
    return None


def lacking_note(lacking: dict[str, str], rank_by: str) -> str:
    """One note for the checkpoints without a combined readiness ({checkpoint: the predictor it lacks})."""
    keys = sorted(set(lacking.values()))
    start = any(k.startswith("start/") for k in keys)
    return (f"no combined readiness for {', '.join(sorted(lacking))}: no {', '.join(keys)}"
            + (" (the step-0 sampling pass measures it: probe.start_samples > 0)" if start else "")
            + ("; so the components' readiness ranks every checkpoint (analysis.rank_by)" if rank_by == "combined"
               else ""))


def predictor_table(r: CheckpointScore, cfg: AnalysisConfig) -> dict[str, dict]:
    """Every predictor a checkpoint has: {name: {"value", "ci"}} (docs/analysis.md, "Predictors")."""
    table = {}
    for name in PREDICTORS:
        if name == "readiness":
            table[name] = {"value": r.score, "ci": list(r.ci)}
            continue
        value = r.metrics.get(name)
        if value is None:
            continue
        table[name] = {"value": value, "ci": r.metric_cis.get(name)}
    return table
