"""RL-readiness score per checkpoint, with bootstrap confidence intervals over problems and seeds.

    scores = score_run("runs/quickstart")          # writes runs/quickstart/scores.json
    print(scores["recommended"], scores["reason"])

OctoThinker (seed 004) tells RL-ready bases by their RL dynamics: steady gains (Fig. 5, 7, 11), or
fast gains then collapse with lengths at the limit (Fig. 6, 8, 10). Components (accuracy-like units;
derivations in docs/analysis.md):

- ``start``     = (1 - f) * acc(0) + f * format_rate(0), acc = mean of greedy and sampled accuracy;
- ``learning``  = 1/2 * AUC gain + 1/2 * slope gain, averaged over the greedy and sampled curves;
- ``stability`` = -(peak - final accuracy) - ``event_penalty`` of each detector that fired;
- ``length``    = -(mean clip_ratio over the second half + ``length_gap_weight`` *
  clip(ln(len/incorrect growth) - ln(len/correct growth), 0, 1));
- ``control``   = learning - learning of the negative-control probe(s), when every checkpoint has one.

score = sum of ``weights[c] * c``; seeds are averaged. The predictors of octo.analysis.predictors are
listed beside it. Intervals are percentile bootstraps: problems resampled jointly across a probe's
evaluations, paired across checkpoints on the same held-out set, seeds resampled too; without
per-problem vectors, binomial. Two checkpoints *tie* when their intervals overlap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from octo.analysis.combine import signed
from octo.analysis.config import COMPONENTS, AnalysisConfig, load_analysis_config
from octo.analysis.detectors import Event, detect
from octo.analysis.gates import cpt_choice, gate_table, relation_text
from octo.analysis.heldout import HeldOut, heldout
from octo.analysis.load import Probe, Run, load_run, num
from octo.analysis.predictors import PREDICTORS, Curve
from octo.analysis.probe_predictors import (combined_readiness, crc, fit_sigmoids, lacking_note, predictor_table,
                                            predictor_terms, probe_curve)
from octo.analysis.series import column, nanmean, slope, trapezoid
from octo.analysis.stats import percentile_ci
from octo.runio import SCORES_FILE, write_json_atomic
from octo.schema import to_dict

VERSION = 1


def curve_metrics(greedy: np.ndarray, sampled: np.ndarray | None, steps: np.ndarray, format0: float | None,
                  cfg: AnalysisConfig) -> dict[str, np.ndarray]:
    """Eval-derived metrics of one probe for a batch of curves ``(B, E)`` (B = 1 for the point estimate)."""
    curves = {"greedy": greedy} if sampled is None else {"greedy": greedy, "sampled": sampled}
    T = float(steps[-1] - steps[0])
    out: dict[str, np.ndarray] = {}
    learn, auc, slp, dd = [], [], [], []
    for name, c in curves.items():
        gain = c - c[:, :1]
        a = trapezoid(gain, steps) / T
        s = slope(c, steps)
        learn.append(0.5 * a + 0.5 * s * T)
        auc.append(a)
        slp.append(s)
        dd.append(c.max(axis=1) - c[:, -1])
        out[f"start/acc_{name}"] = c[:, 0]
        out[f"final/acc_{name}"] = c[:, -1]
        out[f"learning/{name}"] = learn[-1]
    acc0 = np.mean([c[:, 0] for c in curves.values()], axis=0)
    f = cfg.start_format_weight if format0 is not None else 0.0
    out["start/acc"] = acc0
    out["start"] = (1 - f) * acc0 + f * (format0 if format0 is not None else 0.0)
    out["final/acc"] = np.mean([c[:, -1] for c in curves.values()], axis=0)
    out["learning"] = np.mean(learn, axis=0)
    out["learning/auc_gain"] = np.mean(auc, axis=0)
    out["learning/slope"] = np.mean(slp, axis=0)
    out["stability/drawdown"] = np.mean(dd, axis=0)
    return out


class Resampler:
    """Bootstrap weights shared by every probe evaluated on the same held-out set (paired draws)."""

    def __init__(self, cfg: AnalysisConfig):
        self.cfg = cfg
        self._weights: dict[tuple, np.ndarray] = {}

    def problem_weights(self, n: int, levels: tuple | None) -> np.ndarray:
        """Multinomial bootstrap weights ``(B, n)`` of a problem set; ``levels`` (or any hashable key naming
        the set) with ``n`` identifies it, so every probe answering the same set gets the same weights."""
        key = (n, levels)
        if key not in self._weights:
            rng = np.random.default_rng([self.cfg.seed, 0, n, crc(repr(levels))])
            self._weights[key] = rng.multinomial(n, np.full(n, 1.0 / n), size=self.cfg.bootstrap) / n
        return self._weights[key]

    def curves(self, ho: HeldOut, probe_id: str) -> tuple[np.ndarray, np.ndarray | None]:
        """Bootstrap draws ``(B, E)`` of the greedy and sampled curves."""
        B = self.cfg.bootstrap
        if ho.per_greedy is not None:
            W = self.problem_weights(ho.per_greedy.shape[1], ho.levels)
            # einsum, not W @ per.T: a multi-threaded BLAS is ~20x slower on a busy 2-core machine
            g = np.einsum("bn,en->be", W, ho.per_greedy)
            s = np.einsum("bn,en->be", W, ho.per_sampled) if ho.per_sampled is not None else None
            if ho.sampled is not None and s is None:
                # sampled accuracy without its per-problem vector: shift by the greedy resample's deviation
                s = np.clip(ho.sampled[None, :] + (g - ho.greedy[None, :]), 0, 1)
            return g, s
        if ho.n_per_eval is not None:
            n = ho.n_per_eval.astype(int)
            rng = np.random.default_rng([self.cfg.seed, 2, crc(probe_id)])
            g = rng.binomial(n, np.clip(ho.greedy, 0, 1), size=(B, len(n))) / n
            s = None
            if ho.sampled is not None:
                s = rng.binomial(n, np.clip(ho.sampled, 0, 1), size=(B, len(n))) / n
            return g, s
        # neither per-problem vectors nor n: no problem-level noise is known (score_probe notes it)
        g = np.repeat(ho.greedy[None, :], B, axis=0)
        s = np.repeat(ho.sampled[None, :], B, axis=0) if ho.sampled is not None else None
        return g, s


@dataclass
class ProbeScore:
    probe: Probe
    ho: HeldOut
    events: list[Event]
    point: dict[str, float]            # every metric, point estimate
    draws: dict[str, np.ndarray]       # bootstrap draws (B,) of the eval-derived metrics and components
    note: str | None = None            # a caveat about this probe's intervals
    curve: Curve | None = None         # held-out accuracy against rollout tokens, for the sigmoid fit
    sigmoid: dict | None = None        # the sigmoid fit of this probe (predictors.fit_sigmoid)


def _length_terms(probe: Probe, ho: HeldOut, cfg: AnalysisConfig) -> tuple[float | None, float | None]:
    steps, clip = column(probe.metrics, "clip_ratio")
    finite = clip[~np.isnan(clip)]
    if len(finite):
        clip_late = float(finite[len(finite) // 2:].mean())
    else:
        late = ho.clip[1:] if len(ho.clip) > 1 else ho.clip
        clip_late = nanmean(late, default=float("nan"))
        clip_late = None if np.isnan(clip_late) else clip_late
    gap = None
    _, cor = column(probe.metrics, "len/correct")
    _, inc = column(probe.metrics, "len/incorrect")
    k = max(cfg.baseline_steps, len(cor) // 3)
    if len(cor) >= 2 * k and k > 0:
        ce, cl = nanmean(cor[:k]), nanmean(cor[-k:])
        ie, il = nanmean(inc[:k]), nanmean(inc[-k:])
        if min(ce, cl, ie, il) > 0:   # NaN compares False
            gap = float(np.log(il / ie) - np.log(cl / ce))
    return clip_late, gap


def score_probe(probe: Probe, cfg: AnalysisConfig, resampler: Resampler) -> ProbeScore | None:
    """Metrics, events and bootstrap draws of one probe; None when it has fewer than two evaluations."""
    ho = heldout(probe)
    if ho is None or len(ho.steps) < 2 or ho.steps[-1] <= ho.steps[0]:
        return None
    events = detect(probe, cfg)
    penalty = float(sum(cfg.event_penalty.get(e.detector, 0.0) for e in events))
    clip_late, gap = _length_terms(probe, ho, cfg)
    length = -((clip_late or 0.0) + cfg.length_gap_weight * min(1.0, max(0.0, gap or 0.0)))
    point = {k: float(v[0]) for k, v in curve_metrics(ho.greedy[None, :], None if ho.sampled is None else
                                                       ho.sampled[None, :], ho.steps, ho.format0, cfg).items()}
    g, s = resampler.curves(ho, probe.probe_id)
    draws = curve_metrics(g, s, ho.steps, ho.format0, cfg)
    extra = {"start/format_rate": ho.format0, "stability/penalty": penalty, "length/clip_late": clip_late,
             "length/gap_growth": gap, "length": length, "rollout_tokens": num(probe.meta.get("rollout_tokens"))}
    point.update(extra)
    point["stability"] = -point["stability/drawdown"] - penalty
    draws["stability"] = -draws["stability/drawdown"] - penalty
    draws["length"] = np.full(cfg.bootstrap, length)
    predictor_terms(probe, ho, cfg, resampler, g, s, point, draws)
    note = None
    if ho.per_greedy is None and ho.n_per_eval is None:
        note = (f"probe {probe.probe_id}: evals.jsonl has neither per-problem vectors nor n, so its intervals "
                "leave out the noise of the held-out problems")
    return ProbeScore(probe=probe, ho=ho, events=events, point=point, draws=draws, note=note,
                      curve=probe_curve(probe, ho, point, cfg))


@dataclass
class CheckpointScore:
    """The readiness of one checkpoint (or any labelled group of probes, for ``octo compare``)."""

    checkpoint_id: str
    stage: str | None
    probes: list[ProbeScore]
    controls: list[ProbeScore]
    score: float = float("nan")
    ci: tuple[float, float] = (float("nan"), float("nan"))
    components: dict[str, float | None] = field(default_factory=dict)
    component_cis: dict[str, list[float]] = field(default_factory=dict)
    metrics: dict[str, float | None] = field(default_factory=dict)
    metric_cis: dict[str, list[float]] = field(default_factory=dict)
    draws: dict[str, np.ndarray] = field(default_factory=dict)
    predictors: dict[str, dict] = field(default_factory=dict)

    @property
    def events(self) -> list[Event]:
        return [e for p in self.probes + self.controls for e in p.events]

    @property
    def complete(self) -> bool:
        return all(p.probe.complete for p in self.probes + self.controls)

    @property
    def heldout_key(self) -> tuple:
        return (self.probes[0].ho.n, self.probes[0].ho.levels)


def _aggregate(label: str, probes: list[ProbeScore], cfg: AnalysisConfig) -> tuple[dict, dict]:
    """Mean over seeds (point) and seed-resampled means (draws) of every metric."""
    keys = [k for k in probes[0].point]
    point = {k: (nanmean([p.point.get(k) for p in probes], default=float("nan"))) for k in keys}
    point = {k: (None if v is None or np.isnan(v) else v) for k, v in point.items()}
    draw_keys = [k for k in probes[0].draws if all(k in p.draws for p in probes)]
    m = len(probes)
    draws = {}
    if m == 1:
        draws = {k: probes[0].draws[k] for k in draw_keys}
    else:
        rng = np.random.default_rng([cfg.seed, 1, crc(label)])
        pick = rng.integers(0, m, size=(cfg.bootstrap, m))
        cols = np.arange(cfg.bootstrap)[:, None]
        for k in draw_keys:
            stack = np.stack([p.draws[k] for p in probes])        # (m, B)
            draws[k] = stack[pick, cols].mean(axis=1)
    return point, draws


def score_groups(groups: dict[str, list[Probe]], cfg: AnalysisConfig,
                 resampler: Resampler | None = None) -> tuple[list[CheckpointScore], list[dict], list[str]]:
    """Score labelled groups of probes (``control`` probes are negative controls): (ranked, excluded, notes)."""
    resampler = resampler or Resampler(cfg)
    excluded: list[dict] = []
    results: list[CheckpointScore] = []
    for label, probes in groups.items():
        real, ctrl = [], []
        for probe in probes:
            ps = score_probe(probe, cfg, resampler)
            if ps is None:
                excluded.append({"probe_id": probe.probe_id, "reason": "needs held-out evaluations at two or more "
                                                                       "steps (step 0 and a later one)"})
                continue
            (ctrl if probe.control else real).append(ps)
        if not real:
            for ps in ctrl:
                excluded.append({"probe_id": ps.probe.probe_id, "reason": "a control probe without a scored "
                                                                          "probe of its checkpoint"})
            continue
        stages = {p.probe.stage for p in real if p.probe.stage}
        results.append(CheckpointScore(checkpoint_id=label, stage=stages.pop() if len(stages) == 1 else None,
                                       probes=real, controls=ctrl))
    use_control = cfg.weights.get("control", 0) > 0 and bool(results) and all(r.controls for r in results)
    notes = [p.note for r in results for p in r.probes + r.controls if p.note]
    if cfg.weights.get("control", 0) > 0 and not use_control:
        notes.append("control component off: " + ("no negative-control probes" if not any(r.controls for r in results)
                                                  else "not every checkpoint has a negative-control probe"))
    fit_sigmoids([p for r in results for p in r.probes], cfg)
    lacking: dict[str, str] = {}
    for r in results:
        point, draws = _aggregate(r.checkpoint_id, r.probes, cfg)
        if use_control:
            cpoint, cdraws = _aggregate(r.checkpoint_id + "#control", r.controls, cfg)
            point["control/learning"] = cpoint["learning"]
            point["control"] = point["learning"] - cpoint["learning"]
            draws["control"] = draws["learning"] - cdraws["learning"]
        r.components = {c: point.get(c) if (c != "control" or use_control) else None for c in COMPONENTS}
        total = np.zeros(cfg.bootstrap)
        score = 0.0
        for c in COMPONENTS:
            w = cfg.weights.get(c, 0.0)
            if r.components[c] is None or w == 0:
                continue
            score += w * r.components[c]
            total = total + w * draws[c]
        r.score = float(score)
        draws["score"] = total
        r.draws = draws
        r.ci = tuple(percentile_ci(total, cfg.ci_level))
        r.component_cis = {c: percentile_ci(draws[c], cfg.ci_level) for c in COMPONENTS
                           if r.components[c] is not None and c in draws}
        r.metrics = {k: v for k, v in point.items() if k not in COMPONENTS}
        missing = combined_readiness(r, point, draws, cfg)
        if missing:
            lacking[r.checkpoint_id] = missing
        r.metric_cis = {k: percentile_ci(draws[k], cfg.ci_level) for k in r.metrics if k in draws}
        r.predictors = predictor_table(r, cfg)
    if lacking:
        notes.append(lacking_note(lacking, cfg.rank_by))
    elif cfg.rank_by == "combined":
        _rank_by_combined(results, cfg)
    results.sort(key=lambda r: (-r.score, r.checkpoint_id))
    return results, excluded, notes


def _rank_by_combined(results: list[CheckpointScore], cfg: AnalysisConfig) -> None:
    """analysis.rank_by: combined: the combined predictor becomes each checkpoint's score (with its interval and
    draws), the components' score kept as metrics["readiness/components"]; only when every checkpoint has it."""
    for r in results:
        r.metrics["readiness/components"] = r.score
        r.metric_cis["readiness/components"] = list(r.ci)
        r.draws["readiness/components"] = r.draws["score"]
        r.score = float(r.metrics["combined"])
        r.draws["score"] = r.draws["combined"]
        r.ci = tuple(percentile_ci(r.draws["combined"], cfg.ci_level))
        r.predictors = predictor_table(r, cfg)


def overlaps(a: tuple | list, b: tuple | list) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def tie_groups(ranked: list[CheckpointScore]) -> list[list[str]]:
    """Groups (of two or more) whose CIs overlap their leader's, leaders in ranking order; the first
    group, when the best has ties, is the best and those that tie with it."""
    groups, used = [], set()
    for leader in ranked:
        if leader.checkpoint_id in used:
            continue
        members = [leader] + [r for r in ranked if r is not leader and r.checkpoint_id not in used
                              and overlaps(r.ci, leader.ci)]
        used.update(m.checkpoint_id for m in members)
        if len(members) > 1:
            groups.append([m.checkpoint_id for m in members])
    return groups


def difference(a: CheckpointScore, b: CheckpointScore, key: str, cfg: AnalysisConfig) -> dict | None:
    """a - b for ``key`` (score, a component or a metric) with a CI; paired when both share a held-out set."""
    pa = a.score if key == "score" else (a.components.get(key) if key in a.components else a.metrics.get(key))
    pb = b.score if key == "score" else (b.components.get(key) if key in b.components else b.metrics.get(key))
    if pa is None or pb is None or key not in a.draws or key not in b.draws:
        return None
    return {"diff": float(pa - pb), "ci": percentile_ci(a.draws[key] - b.draws[key], cfg.ci_level),
            "paired": a.heldout_key == b.heldout_key and a.heldout_key[1] is not None}


def _fmt(x: float | None, nd: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{nd}f}"


def recommend(ranked: list[CheckpointScore], gates_by_id: dict[str, dict], cfg: AnalysisConfig) -> tuple[str, str]:
    """The recommended checkpoint and one or two sentences saying why."""
    best = ranked[0]
    pct = int(round(cfg.ci_level * 100))

    def desc(r: CheckpointScore) -> str:
        return f"{r.score:.3f} ({pct}% CI {r.ci[0]:.3f} to {r.ci[1]:.3f})"

    def penalised(r: CheckpointScore) -> list[Event]:
        # events kept as information (penalty 0, e.g. entropy_collapse) do not break ties
        return [e for e in r.events if cfg.event_penalty.get(e.detector, 0.0) > 0]

    tied = [r for r in ranked if overlaps(r.ci, best.ci)]
    if len(ranked) == 1:
        chosen, why = best, f"it is the only scored checkpoint; readiness {desc(best)}"
    elif len(tied) == 1:
        chosen = best
        why = (f"highest RL-readiness {desc(best)}, clear of the runner-up {ranked[1].checkpoint_id} "
               f"at {desc(ranked[1])}: the intervals do not overlap")
    else:
        def criteria(r: CheckpointScore) -> list[tuple]:
            g = gates_by_id.get(r.checkpoint_id, {})
            verdict = g.get("verdict")
            j = num(g.get("J"))
            return [(not str(verdict or "").startswith("stop"), "passes the gate stop rule"),
                    (bool(g.get("pareto")), "is on the gate Pareto set"),
                    (-len(penalised(r)), "has fewer penalised detector events"),
                    (j if j is not None else -np.inf, f"has the higher gate score J ({_fmt(j)})"),
                    (r.score, "has the highest point estimate")]
        chosen = max(tied, key=lambda r: [c[0] for c in criteria(r)])
        reason = "has the highest point estimate"
        for i, (value, text) in enumerate(criteria(chosen)):
            if any(criteria(o)[i][0] != value for o in tied if o is not chosen):
                reason = text
                break
        others = ", ".join(o.checkpoint_id for o in tied if o is not chosen)
        why = (f"readiness {desc(chosen)} ties with {others} ({pct}% CIs overlap); among the tied it {reason}")
    other = next((r for r in ranked if r is not chosen), None)
    if other is not None and "readiness/components" in chosen.metrics:
        # ranked by the combined predictor (analysis.rank_by): say what it is made of, beside the best other one
        keys = [signed(k)[1] for k in cfg.combination]
        why += ("; readiness is the combined predictor (" + ", ".join(
            f"{k} {_fmt(chosen.metrics.get(k))} vs {_fmt(other.metrics.get(k))}" for k in keys)
            + f" for {other.checkpoint_id})")
    elif other is not None:
        # the weighted component that sets it furthest ahead of the best other checkpoint
        lead = {c: cfg.weights.get(c, 0.0) * (v - (other.components.get(c) or 0.0))
                for c, v in chosen.components.items() if v is not None}
        top = max(lead, key=lead.get) if lead else None
        if top is not None and lead[top] > 0:
            why += (f"; its largest lead over {other.checkpoint_id} is in {top} "
                    f"({chosen.components[top]:.3f} vs {other.components.get(top) or 0.0:.3f})")
    events = chosen.events
    if events:
        why += "; detector events: " + ", ".join(
            f"{e.detector} at step {e.step} ({e.probe_id}"
            + (")" if cfg.event_penalty.get(e.detector, 0.0) > 0 else "; information, no penalty)") for e in events)
    else:
        why += "; no detector events"
    return chosen.checkpoint_id, why + "."


def _checkpoint_dict(r: CheckpointScore, rank: int, gates: dict | None, cfg: AnalysisConfig) -> dict:
    return {
        "stage": r.stage, "score": r.score, "ci": list(r.ci), "components": r.components,
        "component_cis": r.component_cis, "metrics": r.metrics, "metric_cis": r.metric_cis,
        "predictors": r.predictors, "seeds": len(r.probes),
        "intervals": ("problems and probe seeds" if len(r.probes) > 1 else
                      "problems only: one probe seed, so seed-to-seed variance is not in the intervals"),
        "sigmoid": {p.probe.probe_id: p.sigmoid for p in r.probes if p.sigmoid is not None},
        "events": [{**e.to_dict(), "penalty": cfg.event_penalty.get(e.detector, 0.0)} for e in r.events],
        "probes": [p.probe.probe_id for p in r.probes + r.controls],
        "control_probes": [p.probe.probe_id for p in r.controls],
        "per_probe": {p.probe.probe_id: {k: v for k, v in p.point.items()} for p in r.probes + r.controls},
        "gates": gates or {}, "complete": r.complete, "rank": rank,
    }


def build_scores(run: Run, cfg: AnalysisConfig) -> tuple[dict, list[CheckpointScore]]:
    """scores.json content (docs/run-directory.md) for a loaded run, and the ranked scores."""
    groups: dict[str, list[Probe]] = {}
    for probe in run.probes:
        groups.setdefault(probe.checkpoint_id, []).append(probe)
    ranked, excluded, notes = score_groups(groups, cfg)
    excluded = list(run.skipped) + excluded
    if not ranked:
        from octo.errors import OctoError

        raise OctoError(f"no probe in {run.path} has held-out evaluations at two or more steps; let the probes "
                        "run past their first eval_every steps, then rerun octo score")
    table = gate_table(run, cfg)
    gates_by_id = {row["checkpoint_id"]: row for row in table["rows"]}
    rank_of = {r.checkpoint_id: i + 1 for i, r in enumerate(ranked)}
    for row in table["rows"]:
        r = next((x for x in ranked if x.checkpoint_id == row["checkpoint_id"]), None)
        row["readiness"] = r.score if r else None
        row["readiness_ci"] = list(r.ci) if r else None
        row["rank"] = rank_of.get(row["checkpoint_id"])
    table["rows"].sort(key=lambda row: (row["rank"] is None, row["rank"] or 0,
                                        -(num(row.get("J")) if num(row.get("J")) is not None else -np.inf)))
    recommended, reason = recommend(ranked, gates_by_id, cfg)
    cpt_best, cpt_reason = cpt_choice(table, run.path)
    cpt_id = cpt_best["checkpoint_id"] if cpt_best else None
    rec = next(r for r in ranked if r.checkpoint_id == recommended)
    differences = {r.checkpoint_id: difference(r, rec, "score", cfg) for r in ranked if r is not rec}
    scores = {
        "version": VERSION,
        "run": run.name,
        "checkpoints": {r.checkpoint_id: _checkpoint_dict(r, rank_of[r.checkpoint_id],
                                                          gates_by_id.get(r.checkpoint_id), cfg) for r in ranked},
        "ranking": [r.checkpoint_id for r in ranked],
        "ties": tie_groups(ranked),
        "recommended": recommended,
        "reason": reason,
        "cpt_choice": {"checkpoint_id": cpt_id, "reason": cpt_reason,
                       "relation": relation_text(cpt_id, recommended, [r.checkpoint_id for r in ranked])},
        "differences": {k: {"vs": recommended, **v} for k, v in differences.items() if v is not None},
        "gates": table,
        "excluded": excluded,
        "notes": notes,
        "accuracy": ("held-out accuracy (start/acc, final/acc, the curves the sigmoid and the detectors read) is the "
                     "mean of greedy and sampled accuracy; keys ending _greedy or _sampled are each alone; "
                     "pass@1 and pass@k come from the step-0 sampling pass"),
        "predictor_definitions": dict(PREDICTORS),
        "config": to_dict(cfg),
    }
    return scores, ranked


def score_run(run_dir: str | Path, config: AnalysisConfig | None = None, *, write: bool = True) -> dict:
    """Readiness scores of every probed checkpoint of a run; writes ``scores.json`` (unless ``write=False``)."""
    run = load_run(run_dir)
    cfg = config if config is not None else load_analysis_config(run.path)
    scores, _ = build_scores(run, cfg)
    if write:
        write_json_atomic(run.path / SCORES_FILE, scores)
    return scores
