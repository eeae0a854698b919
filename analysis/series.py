"""Small numeric helpers over logged series: columns with gaps, smoothing, persistence, slopes, areas.

Missing values are NaN throughout; every helper ignores them rather than failing, because probe
logs are short (10-40 steps, 3-5 evaluations) and may have null entries (``kl`` when beta = 0).
"""

from __future__ import annotations

import numpy as np

from octo.analysis.load import num


def column(rows: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of ``key``; a row without a finite value gives NaN."""
    steps = np.array([num(r.get("step")) for r in rows], dtype=float)
    vals = np.array([num(r.get(key)) for r in rows], dtype=float)      # None -> NaN
    return steps, vals


def has(rows: list[dict], key: str) -> bool:
    return any(num(r.get(key)) is not None for r in rows)


def rolling_median(values: np.ndarray, window: int) -> np.ndarray:
    """Centred rolling median ignoring NaN (one outlier in a window of three leaves no trace)."""
    import warnings

    values = np.asarray(values, dtype=float)
    if window <= 1 or len(values) == 0:
        return values.copy()
    half = window // 2
    padded = np.concatenate([np.full(half, np.nan), values, np.full(window - 1 - half, np.nan)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, window)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)    # an all-NaN window gives NaN, as it should
        return np.nanmedian(windows, axis=1)


def baseline(values: np.ndarray, n: int) -> float:
    """Median of the first ``n`` finite values (NaN if none)."""
    finite = values[~np.isnan(values)][:n]
    return float(np.median(finite)) if len(finite) else float("nan")


def first_run(cond: np.ndarray, length: int, *, tail_ok: np.ndarray | None = None) -> int | None:
    """Index where the first run of ``length`` True values starts (or a shorter one at the end, ``tail_ok``)."""
    cond = np.asarray(cond, dtype=bool)
    n = len(cond)
    i = 0
    while i < n:
        if not cond[i]:
            i += 1
            continue
        j = i
        while j < n and cond[j]:
            j += 1
        if j - i >= length:
            return i
        if j == n and tail_ok is not None and bool(np.all(tail_ok[i:j])):
            return i
        i = j
    return None


def trapezoid(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Trapezoid area under y(x) along the last axis (y may carry leading batch axes)."""
    y = np.asarray(y, dtype=float)
    dx = np.diff(np.asarray(x, dtype=float))
    return ((y[..., 1:] + y[..., :-1]) * 0.5 * dx).sum(axis=-1)


def slope(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Least-squares slope of y against x along the last axis (0 when x has no spread)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    xc = x - x.mean()
    denom = float((xc ** 2).sum())
    if denom == 0:
        return np.zeros(y.shape[:-1])
    return ((y - y.mean(axis=-1, keepdims=True)) * xc).sum(axis=-1) / denom


def nanmean(values, default: float = float("nan")) -> float:
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    arr = arr[~np.isnan(arr)]
    return float(arr.mean()) if len(arr) else default
