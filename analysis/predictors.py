"""Predictors of a checkpoint's RL outcome, from its step-0 sampling pass and its probe (pure functions).

    from octo.analysis.predictors import pass_at_k, learnable_mass, fit_sigmoid, entropy_law
    pass_at_k([3, 0, 16], 16, 8)                 # per problem: 1 - C(n-c, k) / C(n, k)

Formulas and intervals: docs/analysis.md, "Predictors".

- **pass@k** (Chen et al. 2021, arXiv 2107.03374): RL mostly moves pass@1 toward pass@k (arXiv
  2504.13837), and pass@large-k predicts the post-RL score better than pass@1 (arXiv 2510.01624);
  **headroom** = pass@k - pass@1.
- **learnable mass**: mean p(1-p) over prompts; GRPO learns only from mixed outcomes (arXiv 2504.03380,
  2503.15477). At step 0 and as a trend over the probe's training groups.
- **curve extrapolation** (ScaleRL, arXiv 2510.13786): R(C) = R0 + (A - R0) / (1 + (C_mid / C)^B) on
  held-out accuracy against rollout tokens C; the prediction is R(C_full).
- **entropy law** (arXiv 2505.22617): R = -a exp(H) + b; its ceiling b - a cross-checks A.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from octo.analysis.load import num


#: The predictors scores.json lists per checkpoint (``predictors``): what each is and where it comes from.
PREDICTORS = {
    "readiness": "the readiness score (docs/analysis.md, Readiness score)",
    "start/acc": "step-0 held-out accuracy, mean of greedy and sampled (evals.jsonl, step 0)",
    "start/pass@1": "step-0 pass@1 on the start pass's held-out subset (start.jsonl)",
    "start/pass@k": "step-0 unbiased pass@k, k = the samples per problem (start.jsonl; Chen et al. 2021)",
    "start/headroom": "start/pass@k - start/pass@1 (arXiv 2504.13837, 2510.01624)",
    "start/learnable_mass": "step-0 mean p(1-p) on a subset of the RL prompts (start.jsonl; arXiv 2504.03380)",
    "probe/learnable_mass": "mean p(1-p) of the probe's training groups (metrics.jsonl per_group/correct)",
    "probe/learnable_mass_trend": "change of the training groups' p(1-p) over the probe (slope x span)",
    "final/acc": "the probe's final held-out accuracy, mean of greedy and sampled (evals.jsonl)",
    "sigmoid/predicted": "ScaleRL's sigmoid read at the full run's compute (arXiv 2510.13786)",
    "entropy_law/ceiling": "b - a of R = -a exp(H) + b fitted over the probe (arXiv 2505.22617)",
    "combined": "intercept + sum of coefficient x predictor (analysis.combination; octo.analysis.combine)",
}


# --- pass@k, headroom, learnable mass ---------------------------------------------------------------

def pass_at_k(counts, n: int, k: int) -> np.ndarray:
    """Per problem, the unbiased pass@k from ``n`` samples of which ``counts`` are correct (Chen et al. 2021):
    1 - C(n-c, k) / C(n, k) as the paper's product prod_{i=n-c+1}^{n} (1 - k/i), since the binomials overflow
    for large n and the product never does. 1 when n - c < k."""
    c = np.asarray(counts, dtype=int)
    if not 1 <= k <= n:
        raise ValueError(f"pass@k needs 1 <= k <= n (got k={k}, n={n})")
    if np.any((c < 0) | (c > n)):
        raise ValueError(f"success counts must lie in [0, {n}]")
    i = np.arange(1, n + 1)                                   # (n,)
    # factor (1 - k/i) for i in (n - c, n]; 1 elsewhere, so the product runs over the right range
    factors = np.where(i[None, :] > (n - c)[..., None], 1.0 - k / i[None, :], 1.0)
    out = 1.0 - np.prod(factors, axis=-1)
    return np.where(n - c < k, 1.0, out)


def learnable_mass(counts, n: int) -> np.ndarray:
    """Per prompt, the unbiased estimate c(n-c) / (n(n-1)) of p(1-p) from ``n`` >= 2 samples, ``counts`` correct.
    E[c(n-c)] = n(n-1) p(1-p) for c ~ Binomial(n, p), so the mean over prompts estimates the mean p(1-p) without the
    downward bias of the plug-in (c/n)(1 - c/n)."""
    if n < 2:
        raise ValueError(f"learnable mass needs n >= 2 samples per prompt (got {n})")
    c = np.asarray(counts, dtype=float)
    return c * (n - c) / (n * (n - 1))


def start_rows(rows: list[dict]) -> dict[str, dict]:
    """The usable rows of a probe's start.jsonl by set ("heldout", "prompts"); a row whose counts are
    missing, not integers in [0, samples] or of another length than ``n`` is left out."""
    out = {}
    for row in rows:
        name, samples = row.get("set"), num(row.get("samples"))
        counts = row.get("per_problem/correct")
        if not isinstance(name, str) or samples is None or samples < 1 or not isinstance(counts, list) or not counts:
            continue
        if not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= samples for c in counts):
            continue
        if num(row.get("n")) is not None and int(num(row["n"])) != len(counts):
            continue
        out[name] = row
    return out


def start_predictors(rows: list[dict], weights_for) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Step-0 predictors of one probe's start.jsonl rows, point estimates and draws under ``weights_for(n, key)``
    (the same problem weights for every probe of a problem set, so differences are paired)."""
    sets = start_rows(rows)
    point: dict[str, float] = {}
    draws: dict[str, np.ndarray] = {}
    held = sets.get("heldout")
    if held is not None:
        n = int(held["samples"])
        counts = np.asarray(held["per_problem/correct"])
        W = weights_for(len(counts), ("start", "heldout", held.get("problems_hash")))
        p1, pk = pass_at_k(counts, n, 1), pass_at_k(counts, n, n)
        for key, per in (("start/pass@1", p1), ("start/pass@k", pk), ("start/headroom", pk - p1)):
            point[key] = float(per.mean())
            draws[key] = np.einsum("bn,n->b", W, per)
        point["start/k"] = float(n)
    prompts = sets.get("prompts")
    if prompts is not None and int(prompts["samples"]) >= 2:
        n = int(prompts["samples"])
        counts = np.asarray(prompts["per_problem/correct"])
        W = weights_for(len(counts), ("start", "prompts", prompts.get("problems_hash")))
        lm = learnable_mass(counts, n)
        point["start/learnable_mass"] = float(lm.mean())
        draws["start/learnable_mass"] = np.einsum("bn,n->b", W, lm)
    return point, draws


def group_learnable_mass(metrics: list[dict], group: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(steps, learnable mass per step): mean over the step's groups of c(G-c) / (G(G-1)) (``per_group/correct``)."""
    steps, values = [], []
    if group is None or group < 2:
        return np.zeros(0), np.zeros(0)
    for row in metrics:
        counts = row.get("per_group/correct")
        step = num(row.get("step"))
        if step is None or not isinstance(counts, list) or not counts:
            continue
        if not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= group for c in counts):
            continue
        steps.append(step)
        values.append(float(learnable_mass(counts, group).mean()))
    return np.asarray(steps, dtype=float), np.asarray(values, dtype=float)


def learnable_mass_trend(steps: np.ndarray, values: np.ndarray, draws: int, rng: np.random.Generator
                         ) -> tuple[dict[str, float], dict[str, np.ndarray]] | None:
    """``probe/learnable_mass`` (mean over steps) and ``probe/learnable_mass_trend`` (least-squares slope x
    span); draws resample the steps. None with fewer than 3 steps."""
    if len(steps) < 3 or steps[-1] <= steps[0]:
        return None
    from octo.analysis.series import slope

    span = float(steps[-1] - steps[0])
    point = {"probe/learnable_mass": float(values.mean()),
             "probe/learnable_mass_trend": float(slope(values, steps) * span)}
    idx = rng.integers(0, len(steps), size=(draws, len(steps)))
    xs, ys = steps[idx], values[idx]
    xc = xs - xs.mean(axis=1, keepdims=True)
    denom = (xc ** 2).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        b = np.where(denom > 0, (xc * (ys - ys.mean(axis=1, keepdims=True))).sum(axis=1) / denom, 0.0)
    return point, {"probe/learnable_mass": ys.mean(axis=1), "probe/learnable_mass_trend": b * span}


# --- RL compute ---------------------------------------------------------------------------------------

def compute_through(metrics: list[dict], meta: dict, steps) -> np.ndarray:
    """Rollout tokens up to each of ``steps``: sum of ``len/mean`` x prompts_per_step x num_generations (without
    those sizes, tokens per completion: a constant factor the fit's shape does not depend on)."""
    per_step = (num(meta.get("prompts_per_step")) or 1.0) * (num(meta.get("num_generations")) or 1.0)
    rows = [(num(r.get("step")), num(r.get("len/mean"))) for r in metrics]
    rows = [(s, length) for s, length in rows if s is not None and length is not None]
    s_arr = np.array([s for s, _ in rows], dtype=float)
    l_arr = np.array([length for _, length in rows], dtype=float)
    return np.array([float(l_arr[s_arr <= t].sum() * per_step) for t in np.asarray(steps, dtype=float)])


# --- ScaleRL curve extrapolation -------------------------------------------------------------------

#: B grid of the sigmoid fit: ScaleRL's fitted exponents lie in about 0.5-3 (arXiv 2510.13786).
B_GRID = np.round(np.linspace(0.5, 3.0, 11), 3)
#: C_mid grid, as multiples of the last compute the probe observed (0.1x to 1000x, log-spaced).
MID_GRID = np.geomspace(0.1, 1000.0, 41)


@dataclass
class Curve:
    """One checkpoint's held-out accuracy against RL compute, for the sigmoid fit."""

    label: str
    compute: np.ndarray       # (E,) cumulative rollout tokens at each evaluation; 0 at step 0
    acc: np.ndarray           # (E,) held-out accuracy; acc[0] is R0
    n: int                    # problems per evaluation (the parametric bootstrap's binomial)
    cap: float                # upper bound of A: step-0 pass@k (1 when unknown)
    c_full: float             # compute of the full RL run, where the prediction is read


def _sigmoid_frac(compute: np.ndarray, mid: np.ndarray, b: np.ndarray) -> np.ndarray:
    """s(C) = 1 / (1 + (C_mid / C)^B) broadcast over trailing grid axes; 0 at C = 0."""
    c = compute[..., None, None]
    with np.errstate(divide="ignore", over="ignore"):
        ratio = np.where(c > 0, (mid[None, None, :] / np.where(c > 0, c, 1.0)) ** b[None, :, None], np.inf)
    return 1.0 / (1.0 + ratio)


def _fit_one(curve: Curve, ys: np.ndarray, r0: np.ndarray, mids: np.ndarray):
    """Closed-form A on the (B, C_mid) grid for draws ``ys`` (D, E) with step-0 levels ``r0`` (D,).

    For fixed (B, C_mid) the curve is linear in A: y - R0 = (A - R0) s(C), so least squares gives
    A - R0 = sum s (y - R0) / sum s^2, and the bounds [0, cap] (a convex quadratic in A) clip it. The
    squared error follows without the fitted curves: sum r^2 - 2 d sum s r + d^2 sum s^2, d = A - R0.
    Returns (sse (D, nB, nM), A (D, nB, nM)).
    """
    s = _sigmoid_frac(curve.compute[1:], mids, B_GRID)                 # (E-1, nB, nM)
    resid = ys[:, 1:] - r0[:, None]                                     # (D, E-1)
    ss = (s ** 2).sum(axis=0)                                           # (nB, nM)
    sr = np.einsum("de,ebm->dbm", resid, s)                             # (D, nB, nM)
    with np.errstate(invalid="ignore", divide="ignore"):
        delta = sr / np.where(ss > 0, ss, np.inf)
    a = np.clip(r0[:, None, None] + delta, 0.0, np.maximum(max(curve.cap, 0.0), r0)[:, None, None])
    d = a - r0[:, None, None]
    sse = (resid ** 2).sum(axis=1)[:, None, None] - 2 * d * sr + d ** 2 * ss
    return sse, a


def fit_sigmoid(curves: list[Curve], *, draws: int = 0, seed: int = 0, shared_mid: bool = False,
                level: float = 0.95) -> tuple[dict[str, dict], dict[str, np.ndarray]]:
    """ScaleRL's sigmoid R(C) = R0 + (A - R0) / (1 + (C_mid / C)^B) fitted to every curve at once.

    R0 is the step-0 accuracy; A is capped by ``cap`` (pass@k, arXiv 2504.13837) and solved in closed form
    on a grid of (B, C_mid); B is shared by every curve. The prediction is R(C_full). A probe of 5-10% of
    a run rarely identifies A (ScaleRL fits after ~1.5k GPU-hours), so ``extrapolated`` says when C_full
    lies beyond C_mid and ``mid_observed`` whether C_mid lies within the probe. ``draws`` > 0 redraws every
    evaluation as Binomial(n, fitted) / n and refits (parametric bootstrap). Returns (results, draws).
    """
    if not curves:
        return {}, {}
    rng = np.random.default_rng([seed, 5])
    mids_of = [MID_GRID * max(float(c.compute[-1]), 1.0) for c in curves]

    def joint(ys_list, r0_list):
        fits = [_fit_one(c, ys, r0, mids) for c, ys, r0, mids in zip(curves, ys_list, r0_list, mids_of)]
        if shared_mid:
            total = sum(sse for sse, _ in fits)                        # (D, nB, nM)
            flat = total.reshape(total.shape[0], -1).argmin(axis=1)
            bi, mi = np.unravel_index(flat, total.shape[1:])
            return [(bi, mi) for _ in fits], fits
        best = [sse.min(axis=2) for sse, _ in fits]                    # (D, nB) per curve
        bi = sum(best).argmin(axis=1)                                  # shared B per draw
        picks = []
        for sse, _ in fits:
            mi = sse[np.arange(sse.shape[0]), bi].argmin(axis=1)
            picks.append((bi, mi))
        return picks, fits

    # point fit
    ys0 = [c.acc[None, :].astype(float) for c in curves]
    r00 = [c.acc[:1].astype(float) for c in curves]
    picks, fits = joint(ys0, r00)
    results: dict[str, dict] = {}
    point_pred = {}
    for c, (bi, mi), (_, a), mids in zip(curves, picks, fits, mids_of):
        b, mid, amp = float(B_GRID[bi[0]]), float(mids[mi[0]]), float(a[0, bi[0], mi[0]])
        r0 = float(c.acc[0])
        pred = r0 + (amp - r0) / (1 + (mid / c.c_full) ** b) if c.c_full > 0 else r0
        point_pred[c.label] = (r0, amp, b, mid)
        results[c.label] = {"predicted": float(pred), "A": amp, "B": b, "C_mid": mid, "R0": r0,
                            "c_full": float(c.c_full), "c_probe": float(c.compute[-1]),
                            "extrapolated": bool(c.c_full > mid), "mid_observed": bool(mid <= c.compute[-1]),
                            "capped": bool(amp >= max(c.cap, r0) - 1e-12)}
    out_draws: dict[str, np.ndarray] = {}
    if draws > 0:
        ys_list, r0_list = [], []
        for c in curves:
            r0, amp, b, mid = point_pred[c.label]
            fitted = np.array([r0] + [r0 + (amp - r0) / (1 + (mid / x) ** b) for x in c.compute[1:]])
            n = max(int(c.n), 1)
            ys = rng.binomial(n, np.clip(fitted, 0, 1), size=(draws, len(fitted))) / n
            ys_list.append(ys)
            r0_list.append(ys[:, 0])
        picks, fits = joint(ys_list, r0_list)
        lo, hi = (1 - level) / 2, 1 - (1 - level) / 2
        for c, (bi, mi), (_, a), mids, ys in zip(curves, picks, fits, mids_of, ys_list):
            rows = np.arange(draws)
            amp = a[rows, bi, mi]
            b, mid, r0 = B_GRID[bi], mids[mi], ys[:, 0]
            pred = r0 + (amp - r0) / (1 + (mid / c.c_full) ** b) if c.c_full > 0 else r0
            out_draws[c.label] = pred
            results[c.label]["ci"] = [float(np.quantile(pred, lo)), float(np.quantile(pred, hi))]
    return results, out_draws


# --- entropy-performance law ------------------------------------------------------------------------

def entropy_at_evals(metrics: list[dict], eval_steps: np.ndarray, window: int = 3) -> np.ndarray:
    """Entropy of the policy each evaluation saw: TRL's step t + 1 ``entropy`` (rolling median over ``window``)."""
    from octo.analysis.series import column, rolling_median

    steps, raw = column(metrics, "entropy")
    keep = ~np.isnan(raw) & ~np.isnan(steps)
    steps, smooth = steps[keep], rolling_median(raw[keep], window)
    out = np.full(len(eval_steps), np.nan)
    for i, t in enumerate(np.asarray(eval_steps, dtype=float)):
        after = np.flatnonzero(steps == t + 1)
        before = np.flatnonzero(steps <= t)
        if len(after):
            out[i] = smooth[after[0]]
        elif len(before):
            out[i] = smooth[before[-1]]
    return out


def entropy_law(entropy: np.ndarray, acc: np.ndarray) -> dict | None:
    """R = -a exp(H) + b by least squares (arXiv 2505.22617): a, b, R^2 and the ceiling R(H = 0) = b - a
    (arrays when ``acc`` is draws ``(D, E)``). None with fewer than 3 finite pairs or no entropy spread."""
    h = np.asarray(entropy, dtype=float)
    y = np.atleast_2d(np.asarray(acc, dtype=float))
    ok = ~np.isnan(h) & ~np.isnan(y).any(axis=0)
    if ok.sum() < 3:
        return None
    x, y = np.exp(h[ok]), y[:, ok]
    xc = x - x.mean()
    sxx = float((xc ** 2).sum())
    if sxx <= 1e-12 * max(1.0, float((x ** 2).sum())):
        return None
    slope = ((y - y.mean(axis=1, keepdims=True)) * xc).sum(axis=1) / sxx
    a = -slope
    b = y.mean(axis=1) + a * x.mean()
    fitted = b[:, None] - a[:, None] * x[None, :]
    ss_res = ((y - fitted) ** 2).sum(axis=1)
    ss_tot = ((y - y.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = np.where(ss_tot > 0, 1 - ss_res / ss_tot, np.nan)
    squeeze = np.asarray(acc).ndim == 1
    pick = (lambda v: float(v[0])) if squeeze else (lambda v: v)
    return {"a": pick(a), "b": pick(b), "ceiling": pick(np.clip(b - a, 0.0, 1.0)), "r2": pick(r2),
            "points": int(ok.sum())}
