"""Shared statistics of octo.analysis: one percentile interval, one Kendall tau-b, rankings.

- :func:`percentile_ci`: the percentile interval of bootstrap draws (Efron & Tibshirani 1993, ch. 13).
- :func:`kendall_tau_rows`: tau_b = (C - D) / sqrt((n0 - n_x)(n0 - n_y)) (Kendall 1945) of every row
  of two ``(B, n)`` arrays at once: ``scipy.stats.kendalltau`` takes one pair per call, and the
  validation bootstraps thousands of draws (tests/analysis/test_stats.py checks it against scipy).
"""

from __future__ import annotations

import numpy as np


def percentile_ci(draws, level: float) -> list[float]:
    """The percentile interval of bootstrap ``draws`` at confidence ``level``."""
    lo, hi = np.quantile(draws, [(1 - level) / 2, 1 - (1 - level) / 2])
    return [float(lo), float(hi)]


def mean_ci(values, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> list[float]:
    """Percentile bootstrap interval of the mean of ``values`` (NaNs for an empty sample)."""
    if len(values) == 0:
        return [float("nan"), float("nan")]
    arr = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = arr[rng.integers(0, len(arr), size=(n_boot, len(arr)))].mean(axis=1)
    return percentile_ci(means, level)


def kendall_tau_rows(x, y) -> np.ndarray:
    """Kendall's tau-b of every row pair of ``x`` and ``y`` (shape ``(B, n)`` or ``(n,)``); NaN where a row
    is constant (tau is undefined when every pair is tied in x or in y)."""
    x, y = np.atleast_2d(np.asarray(x, dtype=float)), np.atleast_2d(np.asarray(y, dtype=float))
    if x.shape != y.shape:
        raise ValueError(f"x and y differ in shape: {x.shape} vs {y.shape}")
    i, j = np.triu_indices(x.shape[1], k=1)
    sx, sy = np.sign(x[:, i] - x[:, j]), np.sign(y[:, i] - y[:, j])
    concordance = (sx * sy).sum(axis=1)                              # C - D
    denom = np.sqrt((sx != 0).sum(axis=1) * (sy != 0).sum(axis=1))   # sqrt((n0 - n_x)(n0 - n_y))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, concordance / np.where(denom > 0, denom, 1), np.nan)


def kendall_tau(x, y) -> float:
    """Kendall's tau-b of two sequences (NaN when either is constant)."""
    return float(kendall_tau_rows(x, y)[0])


def defined_tau(x, y) -> float | None:
    """Kendall's tau-b, or None where it is undefined (either sequence constant): what results and pages record."""
    tau = kendall_tau(x, y)
    return None if np.isnan(tau) else tau


def tau_ci(draws_x: np.ndarray, draws_y: np.ndarray, level: float) -> tuple[list[float] | None, int]:
    """Percentile CI of tau over paired bootstrap draws ``(B, n)``; (None, finite) when fewer than half the
    draws define tau."""
    taus = kendall_tau_rows(draws_x, draws_y)
    finite = taus[np.isfinite(taus)]
    if len(finite) < len(taus) / 2:
        return None, len(finite)
    return percentile_ci(finite, level), len(finite)


def tau_gain_ci(draws_a: np.ndarray, draws_b: np.ndarray, truth_draws: np.ndarray,
                level: float) -> tuple[list[float] | None, float | None]:
    """Paired CI of tau(a) - tau(b) over the same draws ``(B, n)`` and the share of draws a wins (ties half);
    (None, None) when fewer than half the draws define both."""
    ta, tb = kendall_tau_rows(draws_a, truth_draws), kendall_tau_rows(draws_b, truth_draws)
    ok = np.isfinite(ta) & np.isfinite(tb)
    if ok.sum() < len(ta) / 2:
        return None, None
    d = ta[ok] - tb[ok]
    return percentile_ci(d, level), float(np.mean(d > 0) + 0.5 * np.mean(d == 0))


def ranking(names: list[str], values) -> list[list[str]]:
    """``names`` best first (highest value), equal values grouped: [[a], [b, c], [d]] is a > b = c > d."""
    vals = np.asarray(values, dtype=float)
    order = np.argsort(-vals, kind="stable")
    groups: list[list[str]] = []
    prev = -1
    for i in order:
        if groups and vals[i] == vals[prev]:
            groups[-1].append(names[i])
        else:
            groups.append([names[i]])
        prev = i
    return groups


def ranks(groups: list[list[str]]) -> dict[str, int]:
    """Competition ranks of a grouped ranking (1, 2, 2, 4)."""
    out, n = {}, 0
    for g in groups:
        for name in g:
            out[name] = n + 1
        n += len(g)
    return out


def ranking_text(groups: list[list[str]]) -> str:
    return " > ".join(" = ".join(g) for g in groups)
