"""Validation protocol v2 (issue 21): every predictor against two targets, the noise ceiling, a combination
chosen without peeking, and the verdict on the target.

- **Predictors** beside the readiness score: the step-0 sampling pass's pass@1, pass@k, headroom and learnable
  mass, the probe's own learnable mass, ScaleRL's sigmoid read at the full run's compute and the
  entropy-law ceiling (octo.analysis.predictors), each with the bootstrap draws of octo.analysis.score.
- **Two targets**: the full runs' final held-out accuracy, and their gain (final minus their own step 0).
- **Noise ceiling**: Kendall tau between the full-RL outcomes of two independent seed groups (full-run seeds),
  mean over pairs of groups: what a perfect predictor of one group's ranking reaches on the other's. A
  predictor is judged against the mean of all groups, which is less noisy than one group, so the ceiling is a
  conservative bound (a predictor may exceed it).
- **Combination** (octo.analysis.combine.select): a predictor set chosen by leave-one-checkpoint-out tau and
  judged by nested LOCO, the only honest tau of a fitted combination.
- **Verdict**: readiness tau >= the target and >= 0.9 x the noise ceiling, and its paired CI against every
  baseline excludes 0.
"""

from __future__ import annotations

import itertools

import numpy as np

from octo.analysis.combine import CANDIDATES, select
from octo.analysis.stats import defined_tau, kendall_tau_rows, percentile_ci, ranking, ranks

#: Predictors of the probe beside readiness, step-0 accuracy and the probe's final accuracy (validation.py's).
BASELINES = {
    "start/pass@1": "step-0 pass@1 (sampling pass, start.jsonl)",
    "start/pass@k": "step-0 pass@k (sampling pass, start.jsonl)",
    "start/headroom": "step-0 headroom pass@k - pass@1",
    "start/learnable_mass": "step-0 learnable mass of the RL prompts",
    "probe/learnable_mass": "the probe's learnable mass (its training groups)",
    "sigmoid/predicted": "ScaleRL sigmoid at the full run's compute",
    "entropy_law/ceiling": "entropy-law ceiling b - a",
}
#: validation.py's predictor keys under the names octo.analysis.combine uses
COMBINE_NAMES = {"start_acc": "start/acc", "probe_final_acc": "final/acc"}
CEILING_SHARE = 0.9


def probe_baselines(stages: list[str], probe_scores: dict) -> dict[str, dict]:
    """``BASELINES`` as validation.py's predictor entries (label, sign, values, draws), or with ``missing``."""
    out = {}
    for key, label in BASELINES.items():
        vals = [probe_scores[s].metrics.get(key) for s in stages]
        draws = [probe_scores[s].draws.get(key) for s in stages]
        lacking = [s for s, v, d in zip(stages, vals, draws) if v is None or not np.isfinite(v) or d is None]
        if lacking:
            out[key] = {"label": label, "sign": 1, "values": vals,
                        "missing": f"no {key} for {', '.join(lacking)}"}
        else:
            out[key] = {"label": label, "sign": 1, "values": vals, "draws": draws}
    return out


def final_target(full_scores: dict, stages: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The full runs' final held-out accuracy: point ``(n,)`` and draws ``(B, n)``."""
    return (np.array([full_scores[s].metrics["final/acc"] for s in stages]),
            np.stack([full_scores[s].draws["final/acc"] for s in stages], axis=1))


def gain_target(full_scores: dict, stages: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The full runs' gain, final minus step-0 held-out accuracy: point ``(n,)`` and draws ``(B, n)``."""
    point = np.array([full_scores[s].metrics["final/acc"] - full_scores[s].metrics["start/acc"] for s in stages])
    draws = np.stack([full_scores[s].draws["final/acc"] - full_scores[s].draws["start/acc"] for s in stages], axis=1)
    return point, draws


def seed_groups(full: dict[str, list], stages: list[str]) -> list[dict[str, list]]:
    """The full runs split by seed: one ``{stage: [run]}`` per seed that every stage has."""
    seeds = [sorted({p.meta.get("seed") for p in full[s]}, key=str) for s in stages]
    common = sorted(set(seeds[0]).intersection(*map(set, seeds[1:])), key=str) if seeds else []
    return [{s: [p for p in full[s] if p.meta.get("seed") == seed] for s in stages} for seed in common]


def noise_ceiling(outcomes: list[tuple[np.ndarray, np.ndarray]], level: float) -> dict:
    """Tau between the outcomes of independent seed groups (``(point (n,), draws (B, n))`` each), the mean over
    pairs of groups, with a percentile CI over the shared draws; ``tau`` None with fewer than two groups."""
    if len(outcomes) < 2:
        return {"tau": None, "ci": None, "groups": len(outcomes),
                "note": "one full-run seed, so no second group to compare; validation.full_seeds needs two or more"}
    pairs = list(itertools.combinations(range(len(outcomes)), 2))
    points = [defined_tau(outcomes[a][0], outcomes[b][0]) for a, b in pairs]
    if any(p is None for p in points):
        return {"tau": None, "ci": None, "groups": len(outcomes),
                "note": "undefined: a seed group's full runs all end at the same value"}
    draws = np.mean([kendall_tau_rows(outcomes[a][1], outcomes[b][1]) for a, b in pairs], axis=0)
    finite = draws[np.isfinite(draws)]
    return {"tau": float(np.mean(points)), "ci": percentile_ci(finite, level) if len(finite) else None,
            "groups": len(outcomes), "per_pair": points}


def predictor_matrix(predictors: dict[str, dict]) -> dict[str, np.ndarray]:
    """{name: (n,) values, higher predicts better} of every predictor with values (combine's names)."""
    out = {}
    for key, p in predictors.items():
        if "missing" in p or key == "readiness":
            continue
        out[COMBINE_NAMES.get(key, key)] = p["sign"] * np.asarray(p["values"], dtype=float)
    return out


def choose(predictors: dict[str, dict], y: np.ndarray) -> dict:
    """octo.analysis.combine.select over CANDIDATES (plus each available predictor alone): the chosen set, its
    fit on every checkpoint, its LOCO tau and the nested LOCO tau; ``error`` when it cannot run."""
    X = predictor_matrix(predictors)
    singles = tuple((k,) for k in X if (k,) not in CANDIDATES)
    try:
        return select(X, y, CANDIDATES + singles)
    except ValueError as e:
        return {"error": str(e)}


def verdict(taus: dict, ceiling: dict, target_tau: float) -> dict:
    """Issue 21's target: readiness tau >= ``target_tau`` and >= 0.9 x the noise ceiling, and beating every
    baseline with a paired CI that excludes 0. Each part is yes, no or None (not measurable here)."""
    t = taus["readiness"]["tau"]
    c = ceiling.get("tau")
    beats = {k: (None if (v.get("readiness_gain") or {}).get("ci") is None else v["readiness_gain"]["ci"][0] > 0)
             for k, v in taus.items() if k != "readiness" and v.get("tau") is not None}
    return {
        "tau": t, "target_tau": target_tau, "reaches_target": None if t is None else t >= target_tau,
        "ceiling": c, "ceiling_share": CEILING_SHARE,
        "reaches_ceiling_share": None if t is None or c is None else t >= CEILING_SHARE * c,
        "beats": beats, "beats_all": bool(beats) and all(beats.values()),
        "not_beaten": [k for k, b in beats.items() if not b],
    }


def late_bloomers(stages: list[str], start: list[float], final: list[float], places: int = 3) -> dict:
    """Checkpoints whose full-RL rank is at least ``places`` above their step-0 accuracy rank (competition ranks,
    1 = best; issue 20's late bloomers): ``{"places", "checkpoints": [{stage, rank_start, rank_full, shift}]}``,
    largest shift first."""
    r0, r1 = ranks(ranking(stages, start)), ranks(ranking(stages, final))
    found = [{"stage": s, "rank_start": r0[s], "rank_full": r1[s], "shift": r0[s] - r1[s]} for s in stages
             if r0[s] - r1[s] >= places]
    return {"places": places, "checkpoints": sorted(found, key=lambda x: (-x["shift"], x["stage"]))}
