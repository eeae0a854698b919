"""Combining predictors into one readiness without peeking: every fitted number is judged on checkpoints
it was not fitted on (docs/analysis.md, "Combining predictors without peeking").

    from octo.analysis.combine import fit, loco, select
    model = fit(X, y, ("start/pass@k", "sigmoid/predicted"))      # X: {predictor: (n,) values}, y: (n,)
    model.predict(X)                                              # predicted final accuracy after full RL
    report = select(X, y, CANDIDATES)                             # leave-one-checkpoint-out choice, judged nested

A combination is sum_j w_j z_j, z_j the predictor standardised over the checkpoints, w on the simplex
(a name written ``-name`` enters negated), chosen to correlate best with the full-RL outcome. Not
non-negative least squares: a fold that zeroes every coefficient ranks its held-out checkpoint
backwards (tau -0.13 on noise, 0.000 with the simplex). Judged by ``loco`` (leave one checkpoint out),
``select`` (a choice among candidate sets, judged by nested LOCO) and ``transfer`` (another world seed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Candidate sets for ``select``: each baseline alone, then combinations the sources motivate (pass@k as RL's
#: ceiling, arXiv 2504.13837 / 2510.01624; learnable mass as its speed, arXiv 2504.03380; ScaleRL, 2510.13786).
CANDIDATES: tuple[tuple[str, ...], ...] = (
    ("start/pass@1",), ("start/pass@k",), ("start/learnable_mass",), ("final/acc",), ("sigmoid/predicted",),
    ("start/pass@1", "start/headroom"), ("start/pass@k", "start/learnable_mass"),
    ("start/pass@k", "final/acc"), ("sigmoid/predicted", "start/pass@k"),
    ("sigmoid/predicted", "start/learnable_mass"), ("start/pass@k", "start/learnable_mass", "final/acc"),
)


def kendall_tau(x, y) -> float:
    """Kendall's tau-b (scipy.stats.kendalltau); 0 when either side has no spread."""
    from scipy.stats import kendalltau

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return 0.0
    return float(kendalltau(x, y).statistic)


def signed(name: str) -> tuple[float, str]:
    """A combination's predictor name as (sign, scores.json key): ``-name`` enters negated."""
    return (-1.0, name[1:]) if name.startswith("-") else (1.0, name)


def _column(X: dict[str, np.ndarray], name: str) -> np.ndarray:
    sign, key = signed(name)
    if key not in X:
        raise KeyError(f"predictor {key!r} is not among {sorted(X)}")
    return sign * np.asarray(X[key], dtype=float)


def simplex(k: int, step: float = 0.05) -> np.ndarray:
    """Every weight vector of ``k`` entries that are multiples of ``step`` and sum to 1, ``(G, k)``."""
    import itertools

    m = int(round(1 / step))
    rows = [c for c in itertools.product(range(m + 1), repeat=k) if sum(c) == m]
    return np.asarray(rows, dtype=float) / m


@dataclass(frozen=True)
class Combination:
    """readiness = sum_j w_j z_j with z_j = (predictor_j - center_j) / scale_j and w on the simplex; as a
    predicted outcome, ``intercept + slope * readiness``. Only the k - 1 free weights rank."""

    features: tuple[str, ...]
    weights: tuple[float, ...]
    centers: tuple[float, ...]
    scales: tuple[float, ...]
    slope: float
    intercept: float

    def rank_score(self, X: dict[str, np.ndarray]) -> np.ndarray:
        """sum_j w_j z_j: what ranks checkpoints."""
        cols = np.stack([_column(X, f) for f in self.features], axis=1)
        z = (cols - np.asarray(self.centers)) / np.asarray(self.scales)
        return z @ np.asarray(self.weights)

    def score(self, X: dict[str, np.ndarray]) -> np.ndarray:
        """The predicted outcome (final accuracy after full RL) per checkpoint."""
        return self.intercept + self.slope * self.rank_score(X)

    @property
    def coefs(self) -> tuple[float, ...]:
        """The predicted outcome's coefficient per predictor in its own units (what a recipe ships)."""
        return tuple(float(self.slope * w / sc) for w, sc in zip(self.weights, self.scales))

    def to_dict(self) -> dict:
        return {"features": list(self.features), "weights": list(self.weights), "coefs": list(self.coefs),
                "intercept": float(self.intercept - np.dot(self.coefs, self.centers))}


def _stats(X: dict[str, np.ndarray], features: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Centre and scale of each predictor over *every* checkpoint: a user has the predictors of all the
    checkpoints before any RL, so no outcome enters (and a held-out checkpoint ranks by its raw value)."""
    cols = np.stack([_column(X, f) for f in features], axis=1)
    sd = cols.std(axis=0)
    return cols.mean(axis=0), np.where(sd > 0, sd, 1.0)


def fit(X: dict[str, np.ndarray], y, features: tuple[str, ...], rows=None, step: float = 0.05) -> Combination:
    """The simplex weights (a grid of ``step``) whose combination correlates best with ``y`` on ``rows`` (default all),
    and the least-squares slope and intercept that read it as an outcome. Ties keep the earlier grid point."""
    y = np.asarray(y, dtype=float)
    rows = np.arange(len(y)) if rows is None else np.asarray(rows)
    centers, scales = _stats(X, features)
    cols = np.stack([_column(X, f) for f in features], axis=1)
    z = ((cols - centers) / scales)[rows]
    t = y[rows] - y[rows].mean()
    W = simplex(len(features), step)
    S = z @ W.T                                                   # (rows, G)
    Sc = S - S.mean(axis=0)
    norm = np.sqrt((Sc ** 2).sum(axis=0)) * np.sqrt((t ** 2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.where(norm > 0, (Sc * t[:, None]).sum(axis=0) / norm, -np.inf)
    g = int(np.argmax(corr))
    var = float((Sc[:, g] ** 2).sum())
    slope = max(0.0, float((Sc[:, g] * t).sum()) / var) if var > 0 else 0.0
    intercept = float(y[rows].mean() - slope * S[:, g].mean())
    return Combination(tuple(features), tuple(float(w) for w in W[g]), tuple(float(c) for c in centers),
                       tuple(float(s) for s in scales), slope, intercept)


def _usable(X: dict[str, np.ndarray], features: tuple[str, ...], n: int) -> bool:
    try:
        return all(np.all(np.isfinite(_column(X, f))) and len(_column(X, f)) == n for f in features)
    except KeyError:
        return False


def _one(X: dict[str, np.ndarray], r: int) -> dict[str, np.ndarray]:
    return {k: np.asarray(v)[[r]] for k, v in X.items()}


def loco(X: dict[str, np.ndarray], y, features: tuple[str, ...], rows=None) -> np.ndarray:
    """Leave-one-checkpoint-out ranking scores over ``rows`` (default all): each checkpoint's
    sum_j w_j z_j with the weights fitted without it (a single predictor needs no fit: its own values)."""
    y = np.asarray(y, dtype=float)
    rows = np.arange(len(y)) if rows is None else np.asarray(rows)
    out = np.empty(len(rows))
    for i, r in enumerate(rows):
        out[i] = fit(X, y, features, rows[rows != r]).rank_score(_one(X, r))[0]
    return out


def _best(X, y, candidates, rows) -> tuple[tuple[str, ...], dict]:
    """The candidate with the highest LOCO tau on ``rows`` (ties: the earlier, i.e. simpler, candidate)."""
    taus = {c: kendall_tau(loco(X, y, c, rows), np.asarray(y, dtype=float)[rows]) for c in candidates}
    best = max(candidates, key=lambda c: (taus[c], -candidates.index(c)))
    return best, taus


def select(X: dict[str, np.ndarray], y, candidates=CANDIDATES) -> dict:
    """Choose a predictor set by leave-one-checkpoint-out tau, and judge the choice without peeking. ``nested_tau``
    remakes the whole choice without each checkpoint: the honest estimate, since the chosen set's own LOCO tau is
    optimistic by the selection."""
    y = np.asarray(y, dtype=float)
    n = len(y)
    if n < 4:
        raise ValueError(f"choosing a combination needs at least 4 checkpoints (got {n})")
    usable = tuple(c for c in candidates if _usable(X, c, n))
    if not usable:
        raise ValueError("no candidate predictor set has a finite value for every checkpoint")
    rows = np.arange(n)
    chosen, taus = _best(X, y, usable, rows)
    nested = np.empty(n)
    picks = []
    for r in rows:
        inner = rows[rows != r]
        pick, _ = _best(X, y, usable, inner)
        picks.append(pick)
        nested[r] = fit(X, y, pick, inner).rank_score(_one(X, r))[0]
    return {
        "candidates": [{"features": list(c), "loco_tau": taus[c], "fit": fit(X, y, c).to_dict()} for c in usable],
        "chosen": list(chosen), "chosen_loco_tau": taus[chosen], "fit": fit(X, y, chosen).to_dict(),
        "nested_tau": kendall_tau(nested, y), "nested_predictions": nested.tolist(),
        "nested_picks": [list(p) for p in picks],
    }


def transfer(X_fit: dict[str, np.ndarray], y_fit, X_judge: dict[str, np.ndarray], y_judge,
             features: tuple[str, ...]) -> dict:
    """Fit on one set of checkpoints (one world seed), judge on another: the tau there, and the fit."""
    model = fit(X_fit, y_fit, features)
    pred = model.score(X_judge)
    return {"features": list(features), "fit": model.to_dict(), "tau": kendall_tau(pred, y_judge),
            "predictions": pred.tolist()}


def predictor_matrix(checkpoints: dict[str, dict], ids: list[str]) -> dict[str, np.ndarray]:
    """{predictor: (n,) values} over ``ids`` from scores.json's ``checkpoints`` (NaN where one lacks it)."""
    names = sorted({k for cid in ids for k in checkpoints[cid].get("predictors", {})})

    def value(cid: str, name: str) -> float:
        v = (checkpoints[cid].get("predictors", {}).get(name) or {}).get("value")
        return np.nan if v is None else float(v)

    return {k: np.array([value(cid, k) for cid in ids]) for k in names}
