"""The held-out accuracy curves of one probe (evals.jsonl), with per-problem vectors for bootstraps.

Greedy ``acc`` always; ``acc/sampled`` when the probe drew k > 0 samples. The *combined* curve, their
mean, halves the noise of greedy 0/1 answers; the collapse and reward-hacking detectors read it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from octo.analysis.load import Probe, num


@dataclass
class HeldOut:
    steps: np.ndarray                      # (E,) eval steps, step 0 first when present
    greedy: np.ndarray                     # (E,) greedy accuracy
    sampled: np.ndarray | None             # (E,) mean share of k samples correct, or None
    per_greedy: np.ndarray | None          # (E, n) 0/1 per problem, or None
    per_sampled: np.ndarray | None         # (E, n) share correct per problem, or None
    n: int | None                          # problems per evaluation (None when evaluations differ)
    n_per_eval: np.ndarray | None          # (E,) problems of each evaluation, when every row says
    levels: tuple | None                   # difficulty level per problem (identifies the held-out set)
    format0: float | None                  # greedy format rate at the first evaluation
    clip: np.ndarray                       # (E,) greedy clip ratio (NaN where missing)

    @property
    def curves(self) -> list[np.ndarray]:
        return [self.greedy] + ([self.sampled] if self.sampled is not None else [])

    @property
    def combined(self) -> np.ndarray:
        return np.mean(self.curves, axis=0)

    @property
    def per_combined(self) -> np.ndarray | None:
        if self.per_greedy is None:
            return None
        if self.per_sampled is None:
            return self.per_greedy
        return (self.per_greedy + self.per_sampled) / 2

    def drop_se(self, i: int, j: int) -> float | None:
        """Standard error of combined(i) - combined(j): paired over problems when per-problem vectors exist,
        else from binomial variances with n problems; None when neither is known."""
        per = self.per_combined
        if per is not None and per.shape[1] > 1:
            d = per[i] - per[j]
            return float(np.std(d, ddof=1) / np.sqrt(len(d)))
        if self.n:
            p1, p2 = self.combined[i], self.combined[j]
            return float(np.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / self.n))
        return None


def _matrix(evals: list[dict], key: str, n: int | None) -> np.ndarray | None:
    vecs = []
    for e in evals:
        v = e.get(key)
        if not isinstance(v, list) or not v:
            return None
        arr = np.asarray(v)
        if arr.ndim != 1 or arr.dtype.kind not in "biuf":      # a null or a string inside the vector
            return None
        arr = arr.astype(float)
        if not np.all(np.isfinite(arr)):
            return None
        vecs.append(arr)
    width = {len(v) for v in vecs}
    if len(width) != 1 or (n is not None and width != {n}):
        return None
    return np.stack(vecs)


def heldout(probe: Probe) -> HeldOut | None:
    """The probe's held-out curves, or None when no evaluation has an accuracy."""
    evals = [e for e in probe.evals if num(e.get("acc")) is not None]
    if not evals:
        return None
    n_rows = [num(e.get("n")) for e in evals]
    n_per_eval = np.array(n_rows, dtype=float) if all(x is not None and x >= 1 for x in n_rows) else None
    ns = {int(x) for x in n_rows if x is not None}
    n = ns.pop() if len(ns) == 1 else None
    per_g = _matrix(evals, "per_problem/greedy", n)
    if per_g is not None:
        n = per_g.shape[1]
    has_sampled = all(num(e.get("acc/sampled")) is not None for e in evals)
    per_s = _matrix(evals, "per_problem/sampled", n) if has_sampled and per_g is not None else None
    levels = evals[0].get("per_problem/level")
    levels = tuple(levels) if isinstance(levels, list) and (n is None or len(levels) == n) else None
    fmt0 = num(evals[0].get("format_rate"))
    return HeldOut(
        steps=np.array([num(e["step"]) for e in evals], dtype=float),
        greedy=np.array([num(e["acc"]) for e in evals], dtype=float),
        sampled=np.array([num(e["acc/sampled"]) for e in evals], dtype=float) if has_sampled else None,
        per_greedy=per_g, per_sampled=per_s, n=n, n_per_eval=n_per_eval, levels=levels, format0=fmt0,
        clip=np.array([np.nan if num(e.get("clip_ratio")) is None else num(e.get("clip_ratio")) for e in evals]),
    )
