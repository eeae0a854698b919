"""Does the probe readiness ranking predict RL? Kendall tau with bootstrap CIs, findings, the validation page.

    result = write_validation("runs/validation", doc="docs/validation.md")   # after `octo validate` ran

Reads ``RUN/validation/plan.json`` (written by ``octo validate``) and the directories it names; never
imports the engine.

- **Rankings.** Truth: final held-out accuracy of the full RL runs, mean over seeds. Predictors: the
  readiness score, step-0 accuracy, the probe's final accuracy and each ``ppl_metrics`` perplexity.
- **Kendall tau-b** = (C - D) / sqrt((n0 - n_x)(n0 - n_y)) (Kendall 1945).
- **Bootstrap CI** of tau over score.py's draws (problems resampled with the same weights for every
  run, seeds as units). Checkpoints are not resampled: they are the fixed design, and resampling 6-7
  items mostly manufactures ties.
- **The value of the dynamics**: readiness tau minus each simpler predictor's tau, paired over the same
  draws, and the share of draws in which readiness ranks better.
- **Separated pairs**: pairs whose full-RL difference CI excludes 0, each predictor counted right,
  wrong or tied on them.
- **Findings** (seed 004): yes/no with the figure, from the full RL runs; see ``findings``.
- **The world's properties** (issue 20): can this world judge a readiness score at all? See
  octo.analysis.world_properties.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from octo.analysis.config import AnalysisConfig, load_analysis_config
from octo.analysis.load import Probe, load_probe, load_stages, num
from octo.analysis.score import CheckpointScore, Resampler, difference, score_groups
from octo.analysis.series import column
from octo.analysis.stats import (defined_tau, percentile_ci, ranking, ranks, tau_ci, tau_gain_ci)
from octo.analysis.targets import (choose, final_target, gain_target, late_bloomers, noise_ceiling, probe_baselines,
                                   seed_groups, verdict)
from octo.analysis.world_properties import world_properties
from octo.errors import OctoError
from octo.runio import read_json, write_json_atomic, write_text_atomic

VALIDATION_DIR = "validation"
PLAN_FILE = "plan.json"
RESULT_FILE = "validation.json"
FULL_DIR = f"{VALIDATION_DIR}/full"
FIXED_DIR = f"{VALIDATION_DIR}/fixed"


def separated_pairs(stages: list[str], truth: np.ndarray, truth_draws: np.ndarray, level: float) -> list[dict]:
    """The pairs of checkpoints whose full-RL difference CI excludes 0, the better one first."""
    out = []
    for i, j in itertools.combinations(range(len(stages)), 2):
        if truth[j] > truth[i]:
            i, j = j, i
        ci = percentile_ci(truth_draws[:, i] - truth_draws[:, j], level)
        if ci[0] > 0:
            out.append({"pair": [stages[i], stages[j]], "idx": [i, j], "diff": float(truth[i] - truth[j]), "ci": ci})
    return out


def separated_agreement(pairs: list[dict], x: np.ndarray, draws: np.ndarray, level: float) -> dict:
    """How a predictor (higher = better; ``x`` (n,), draws ``(B, n)``) orders the separated pairs: right, wrong,
    tied, the wrong pairs, and the CI of the share right (ties half)."""
    if not pairs:
        return {"right": 0, "wrong": 0, "tied": 0, "n": 0, "share": None, "ci": None, "wrong_pairs": []}
    hi, lo = (np.array([p["idx"][k] for p in pairs]) for k in (0, 1))
    sign = np.sign(x[hi] - x[lo])
    per_draw = np.sign(draws[:, hi] - draws[:, lo])
    shares = ((per_draw > 0).sum(axis=1) + 0.5 * (per_draw == 0).sum(axis=1)) / len(pairs)
    return {"right": int((sign > 0).sum()), "wrong": int((sign < 0).sum()), "tied": int((sign == 0).sum()),
            "n": len(pairs), "share": float(((sign > 0).sum() + 0.5 * (sign == 0).sum()) / len(pairs)),
            "ci": percentile_ci(shares, level), "wrong_pairs": [p["pair"] for p, sg in zip(pairs, sign) if sg < 0]}


def settle_swaps(stages: list[str], prev: np.ndarray, last: np.ndarray, last_draws: np.ndarray,
                 level: float) -> list[dict]:
    """The pairs whose order changed at the last evaluation, with their last difference and its CI (a swap whose
    CI includes 0 is noise, not a ranking still moving)."""
    out = []
    for i, j in itertools.combinations(range(len(stages)), 2):
        if np.sign(prev[i] - prev[j]) == np.sign(last[i] - last[j]):
            continue
        if last[j] > last[i]:
            i, j = j, i
        out.append({"pair": [stages[i], stages[j]], "before": float(prev[i] - prev[j]),
                    "diff": float(last[i] - last[j]),
                    "ci": percentile_ci(last_draws[:, i] - last_draws[:, j], level)})
    return out


# --- reading --------------------------------------------------------------------------------------

def read_plan(run_dir: Path) -> dict:
    path = Path(run_dir) / VALIDATION_DIR / PLAN_FILE
    if not path.exists():
        raise OctoError(f"{path} does not exist; run `octo validate RECIPE --run-dir {run_dir}` first")
    return read_json(path)


def _load(run_dir: Path, rels: list[str]) -> list[Probe]:
    """The runs of ``rels``; every one must have finished (a run cut off early would count as its own truth)."""
    runs = [load_probe(run_dir / rel) for rel in rels]
    for p in runs:
        if not p.complete:
            raise OctoError(f"{p.path} has not finished (no DONE.json); rerun the octo validate command that "
                            "made this run directory to finish it, then analyse")
    return runs


def _scores(groups: dict[str, list[Probe]], cfg: AnalysisConfig, resampler: Resampler,
            what: str) -> dict[str, CheckpointScore]:
    ranked, excluded, _ = score_groups(groups, cfg, resampler)
    if excluded:
        e = excluded[0]
        raise OctoError(f"{what} {e['probe_id']} cannot be scored ({e['reason']}); rerun octo validate to finish it")
    return {r.checkpoint_id: r for r in ranked}


def _final_gates(run_dir: Path) -> dict[str, dict]:
    """The gates row of each stage's final checkpoint (the row at the DONE step, else the last row)."""
    out = {}
    for name, st in load_stages(run_dir).items():
        step = (st.done or {}).get("step")
        rows = [r for r in st.gates if r.get("step") == step] or st.gates[-1:]
        if rows:
            out[name] = rows[-1]
    return out


def _tail_mean(values: np.ndarray, k: int, last: bool) -> float:
    v = values[~np.isnan(values)]
    if not len(v):
        return float("nan")
    return float(np.mean(v[-k:] if last else v[:k]))


def length_stats(probe: Probe) -> dict:
    """Length dynamics of one run: mean len/mean over its first and last tenth of steps, their ratio, and the
    standard deviation of step-to-step length changes (how jumpy lengths are)."""
    _, lens = column(probe.metrics, "len/mean")
    lens = lens[~np.isnan(lens)]
    k = max(1, len(lens) // 10)
    first, last = _tail_mean(lens, k, False), _tail_mean(lens, k, True)
    return {"len_first": first, "len_last": last, "growth": last / first if first > 0 else float("nan"),
            "len_step_std": float(np.std(np.diff(lens))) if len(lens) > 2 else float("nan"), "k": k}


def _mean_stat(probes: list[Probe], key: str) -> float:
    return float(np.nanmean([length_stats(p)[key] for p in probes]))


# --- analysis -------------------------------------------------------------------------------------

def analyse(run_dir: str | Path, cfg: AnalysisConfig | None = None) -> tuple[dict, dict]:
    """The validation result (validation.json) and the loaded groups the plots need."""
    run_dir = Path(run_dir)
    plan = read_plan(run_dir)
    cfg = cfg or load_analysis_config(run_dir)
    stages = [c["stage"] for c in plan["checkpoints"]]
    probes = {c["stage"]: _load(run_dir, c["probes"]) for c in plan["checkpoints"]}
    full = {c["stage"]: _load(run_dir, c["full"]) for c in plan["checkpoints"]}
    fixed = {c["stage"]: _load(run_dir, c["fixed"]) for c in plan["checkpoints"] if c.get("fixed")}
    # one resampler: every probe and full run evaluated on the same held-out problems gets the same weights
    resampler = Resampler(cfg)
    probe_scores = _scores(probes, cfg, resampler, "probe")
    full_scores = _scores(full, cfg, resampler, "full RL run")
    fixed_scores = _scores(fixed, cfg, resampler, "fixed-length run") if fixed else {}
    gates = _final_gates(run_dir)
    # truth: (point per stage, draws (B, n)); higher = better for every predictor
    truth, truth_draws = final_target(full_scores, stages)
    # the order this experiment knows: pairs full RL separates beyond noise
    separated = separated_pairs(stages, truth, truth_draws, cfg.ci_level)
    predictors = _predictors(plan, stages, probe_scores, gates, cfg.bootstrap)
    taus = _taus(predictors, stages, truth, truth_draws, separated, cfg.ci_level)
    protocol = _protocol_v2(plan, stages, full, predictors, full_scores, (truth, truth_draws), taus, cfg, resampler)
    truth_order = ranking(stages, truth)
    # do the full runs' rankings settle? tau between the last and the previous evaluation's ranking
    prev = np.array([np.mean([float(np.mean([c[-2] for c in _curves(p)])) for p in full[s]]) for s in stages])
    settled = all(len(p.evals) >= 2 for s in stages for p in full[s])
    rows = {s: _checkpoint_row(run_dir, plan, probes[s], full[s], probe_scores[s], full_scores[s], gates.get(s, {}))
            for s in stages}
    for s, k in ranks(truth_order).items():
        rows[s]["rank_full"] = k
    for s, k in ranks(taus["readiness"]["ranking"]).items():
        rows[s]["rank_readiness"] = k
    result = {
        "version": 1, "reduced": plan["reduced"], "command": plan["command"], "full_command": plan["full_command"],
        "run_dir": str(run_dir), "seeds": plan["seeds"], "full_seeds": plan.get("full_seeds", plan["seeds"]),
        "stages": stages, "descriptions": plan.get("descriptions", {}),
        "probe": plan["probe"], "full": plan["full"], "stair_vs_fixed": plan.get("stair_vs_fixed"),
        "target_tau": plan["target_tau"],
        "ci_level": cfg.ci_level, "bootstrap": cfg.bootstrap, "n_heldout": full_scores[stages[0]].probes[0].ho.n,
        "truth_ranking": truth_order, "settle_tau": defined_tau(prev, truth) if settled else None,
        "settle_swaps": settle_swaps(stages, prev, truth, truth_draws, cfg.ci_level) if settled else [],
        "taus": taus, **protocol, "separated_pairs": [{k: v for k, v in p.items() if k != "idx"} for p in separated],
        "checkpoints": rows, "budget": _budget(rows, plan), "world_levels": world_levels(run_dir),
        "probe_compute": probe_compute_curve(stages, probe_scores, {s: rows[s]["full_tokens"] for s in stages}, truth,
                                             truth_draws, resampler, cfg.ci_level),
        "findings": findings(plan, full_scores, fixed_scores, full, fixed, resampler, cfg),
        "invocations": plan.get("invocations", []),
        # what "readiness" is here: the recipe's analysis.rank_by and, when combined, its combination
        "readiness_is": {"rank_by": cfg.rank_by, "combination": dict(cfg.combination),
                         "intercept": cfg.combination_intercept, "combined": "readiness/components" in predictors},
    }
    result["world_properties"] = world_properties(result, plan, full_scores, cfg)
    groups = {"probes": probes, "full": full, "fixed": fixed, "full_scores": full_scores, "fixed_scores": fixed_scores}
    return result, groups


def _predictors(plan: dict, stages: list[str], probe_scores: dict[str, CheckpointScore], gates: dict,
                n_draws: int) -> dict[str, dict]:
    """Each predictor's label, point values per stage, bootstrap draws and sign (-1: lower predicts better)."""
    def probe_metric(label: str, key: str) -> dict:
        return {"label": label, "sign": 1, "values": [probe_scores[s].metrics[key] for s in stages],
                "draws": [probe_scores[s].draws[key] for s in stages]}

    combined = all("readiness/components" in probe_scores[s].draws for s in stages)
    out = {"readiness": {"label": "probe readiness score (octo score: " + (
                             "the combined predictor, analysis.combination)" if combined else "weighted components)"),
                         "sign": 1, "values": [probe_scores[s].score for s in stages],
                         "draws": [probe_scores[s].draws["score"] for s in stages]},
           "start_acc": probe_metric("step-0 held-out accuracy alone", "start/acc"),
           "probe_final_acc": probe_metric("probe's final held-out accuracy", "final/acc"),
           **probe_baselines(stages, probe_scores)}
    if combined:   # analysis.rank_by: combined; the components' score (start, learning, stability, length) beside it
        out["readiness/components"] = probe_metric("readiness components' score (analysis.weights)",
                                                   "readiness/components")
    for key in plan["ppl_metrics"]:
        vals = [num(gates.get(s, {}).get(key)) for s in stages]
        if any(v is None for v in vals):
            missing = [s for s, v in zip(stages, vals) if v is None]
            out[key] = {"label": f"CPT {key} alone (gates.jsonl)", "values": vals, "sign": -1,
                        "missing": f"no {key} in the final gates of {', '.join(missing)}"}
        else:   # perplexities have no resampling noise: the same value in every draw
            out[key] = {"label": f"CPT {key} alone (gates.jsonl; lower predicts better)", "values": vals,
                        "draws": [np.full(n_draws, v) for v in vals], "sign": -1}
    return out


def _taus(predictors: dict[str, dict], stages: list[str], truth: np.ndarray, truth_draws: np.ndarray,
          separated: list[dict], level: float) -> dict[str, dict]:
    """Each predictor's tau with the truth, its CI, ranking and separated-pair agreement, and (the value of the
    dynamics, measured) readiness tau minus its tau, paired over the draws."""
    taus, signed_draws = {}, {}
    for key, p in predictors.items():
        row = {"label": p["label"], "values": dict(zip(stages, p["values"]))}
        if "missing" in p:
            taus[key] = {**row, "tau": None, "ci": None, "note": p["missing"]}
            continue
        x = p["sign"] * np.array(p["values"], dtype=float)
        signed_draws[key] = p["sign"] * np.stack(p["draws"], axis=1)
        ci, finite = tau_ci(signed_draws[key], truth_draws, level)
        taus[key] = {**row, "tau": defined_tau(x, truth), "ci": ci, "finite_draws": finite,
                     "ranking": ranking(stages, x),
                     "separated": separated_agreement(separated, x, signed_draws[key], level)}
    for key, t in taus.items():
        if key != "readiness" and key in signed_draws:
            ci, share = tau_gain_ci(signed_draws["readiness"], signed_draws[key], truth_draws, level)
            both = taus["readiness"]["tau"] is not None and t["tau"] is not None
            t["readiness_gain"] = {"diff": taus["readiness"]["tau"] - t["tau"] if both else None, "ci": ci,
                                   "share": share}
    return taus


def _protocol_v2(plan: dict, stages: list[str], full: dict[str, list[Probe]], predictors: dict[str, dict],
                 full_scores: dict[str, CheckpointScore], final: tuple[np.ndarray, np.ndarray], taus: dict,
                 cfg: AnalysisConfig, resampler: Resampler) -> dict:
    """octo.analysis.targets: the gain target's taus, the noise ceiling of both targets from the full-run seed
    groups (and the pairs each group separates alone), the combination chosen without peeking for each target, and
    the verdict on the target tau."""
    gain, gain_draws = gain_target(full_scores, stages)
    taus_gain = _taus(predictors, stages, gain, gain_draws, separated_pairs(stages, gain, gain_draws, cfg.ci_level),
                      cfg.ci_level)
    groups = [_scores(g, cfg, resampler, "full RL run") for g in seed_groups(full, stages)]
    per_group = {"final": [final_target(g, stages) for g in groups], "gain": [gain_target(g, stages) for g in groups]}
    ceiling = {k: noise_ceiling(v, cfg.ci_level) for k, v in per_group.items()}
    return {
        "taus_gain": taus_gain, "noise_ceiling": ceiling,
        # the pairs one seed group's full runs separate (its problems resampled; no seed to resample)
        "separated_per_seed": [len(separated_pairs(stages, p, d, cfg.ci_level)) for p, d in per_group["final"]],
        "late_bloomers": late_bloomers(stages, predictors["start_acc"]["values"], list(final[0])),
        "combination": {"final": choose(predictors, final[0]), "gain": choose(predictors, gain)},
        "verdict": {"final": verdict(taus, ceiling["final"], plan["target_tau"]),
                    "gain": verdict(taus_gain, ceiling["gain"], plan["target_tau"])},
    }


def _checkpoint_row(run_dir: Path, plan: dict, probes: list[Probe], full: list[Probe], probe_score: CheckpointScore,
                    full_score: CheckpointScore, gates: dict) -> dict:
    """One checkpoint's figures: its predictors, its full-RL outcome, its rollout tokens, its length dynamics."""
    from octo.analysis.heldout import heldout

    held = [heldout(p) for p in full]   # each full run's evals.jsonl, read once for both figures below
    pt = [num(p.meta.get("rollout_tokens")) or 0.0 for p in probes if not p.control]
    ft = [num(p.meta.get("rollout_tokens")) or 0.0 for p in full]
    pm, fm = (float(np.mean(x)) if x else 0.0 for x in (pt, ft))
    return {
        "checkpoint_id": full[0].checkpoint_id,
        "probe_dirs": [str(p.path.relative_to(run_dir)) for p in probes],
        "full_dirs": [str(p.path.relative_to(run_dir)) for p in full],
        "readiness": probe_score.score, "readiness_ci": list(probe_score.ci), "components": probe_score.components,
        "start_acc": probe_score.metrics["start/acc"], "probe_final_acc": probe_score.metrics["final/acc"],
        "full_final_acc": full_score.metrics["final/acc"], "full_final_acc_ci": full_score.metric_cis.get("final/acc"),
        "full_final_acc_per_seed": [float(np.mean([c[-1] for c in h.curves])) for h in held],
        "full_per_level": full_per_level(held),
        "full_start_acc": full_score.metrics["start/acc"], "full_stability": full_score.components["stability"],
        "full_events": sorted({e.detector for e in full_score.events}),
        "probe_events": sorted({e.detector for e in probe_score.events}),
        **{k: num(gates.get(k)) for k in plan["ppl_metrics"]},
        # per run: a probe against a full run, whatever the number of seeds of each
        "probe_tokens": pm, "full_tokens": fm, "token_ratio": pm / fm if pt and fm > 0 else None,
        "length": {k: _mean_stat(full, k) for k in ("len_first", "len_last", "growth", "len_step_std")},
    }


def _budget(rows: dict[str, dict], plan: dict) -> dict:
    """Rollout tokens of a probe against a full run (means over checkpoints) and the compute budget."""
    ptok = float(np.mean([r["probe_tokens"] for r in rows.values()]))
    ftok = float(np.mean([r["full_tokens"] for r in rows.values()]))
    ratios = [r["token_ratio"] for r in rows.values() if r["token_ratio"] is not None]
    return {"probe_tokens": ptok, "full_tokens": ftok, "ratio": ptok / ftok if ftok else None,
            "max_ratio": max(ratios) if ratios else None, "limit": plan["max_probe_ratio"],
            "within": bool(ratios) and max(ratios) <= plan["max_probe_ratio"],
            "probe_steps": plan["probe"]["steps"], "full_steps": plan["full"]["steps"]}


def rollout_tokens_through(p: Probe, step: float) -> float:
    """Rollout tokens a run generated in its training steps 1..``step``: len/mean x prompts x generations per
    step, as octo.probe.grpo sums them into probe.json's ``rollout_tokens``."""
    per_step = (num(p.meta.get("prompts_per_step")) or 0) * (num(p.meta.get("num_generations")) or 0)
    steps, lens = column(p.metrics, "len/mean")
    keep = (steps <= step) & ~np.isnan(lens)
    return float(np.sum(lens[keep]) * per_step)


def probe_compute_curve(stages: list[str], probe_scores: dict[str, CheckpointScore], full_tokens: dict[str, float],
                        truth: np.ndarray, truth_draws: np.ndarray, resampler: Resampler,
                        level: float) -> list[dict]:
    """How much probe the prediction needs: at each shared evaluation step, the tau of the probes' held-out
    accuracy against the truth beside ``ratio``, the probe's rollout tokens so far over a full run's."""
    runs = {s: probe_scores[s].probes for s in stages}
    common = set.intersection(*(set(ps.ho.steps.tolist()) for s in stages for ps in runs[s]))
    out = []
    for step in sorted(common):
        values, draws, tokens, ratios = [], [], [], []
        for s in stages:
            vs, ds = [], []
            for ps in runs[s]:
                i = int(np.flatnonzero(ps.ho.steps == step)[0])
                vs.append(float(ps.ho.combined[i]))
                g, smp = resampler.curves(ps.ho, ps.probe.probe_id)
                ds.append(g[:, i] if smp is None else (g[:, i] + smp[:, i]) / 2)
            values.append(float(np.mean(vs)))
            draws.append(np.mean(ds, axis=0))
            tokens.append(float(np.mean([rollout_tokens_through(ps.probe, step) for ps in runs[s]])))
            ratios.append(tokens[-1] / full_tokens[s] if full_tokens[s] > 0 else float("nan"))
        x = np.array(values)
        ci, _ = tau_ci(np.stack(draws, axis=1), truth_draws, level)
        ftok = float(np.mean([full_tokens[s] for s in stages]))
        out.append({"step": int(step), "tau": defined_tau(x, truth), "ci": ci,
                    "probe_tokens": float(np.mean(tokens)), "ratio": float(np.mean(tokens)) / ftok if ftok else None,
                    "max_ratio": float(np.nanmax(ratios)) if not np.all(np.isnan(ratios)) else None,
                    "values": dict(zip(stages, values))})
    return out


def world_levels(run_dir: Path) -> dict | None:
    """The toy world's difficulty levels by who poses them (``world/world.json``'s ``levels``: ``mid-training``,
    the levels its QA documents teach; ``beyond``, the levels only the RL prompts and the held-out set pose, which math
    web's items show where ``mathweb_shows_beyond``); None for a run directory without a toy world, or one written
    before the world recorded them."""
    path = Path(run_dir) / "world" / "world.json"
    if not path.is_file():
        return None
    try:
        info = read_json(path)
    except OctoError:
        return None
    levels = info.get("levels") if isinstance(info, dict) else None
    if not isinstance(levels, dict) or not all(isinstance(levels.get(k), list) for k in ("mid-training", "beyond")):
        return None
    config = info.get("config") if isinstance(info.get("config"), dict) else {}
    return {"mid-training": levels["mid-training"], "beyond": levels["beyond"],
            "mathweb_shows_beyond": bool(config.get("mathweb_levels_beyond", False))}


def full_per_level(hs: list) -> dict | None:
    """Held-out accuracy per difficulty level (mean of greedy and sampled per problem, mean over the full runs'
    ``heldout()`` curves) at the runs' first evaluation and their last; None where an evaluation lacks per-problem
    vectors or levels, or the runs disagree on the held-out set."""
    if not hs or any(h is None or h.levels is None or h.per_combined is None for h in hs) \
            or len({h.levels for h in hs}) != 1:
        return None
    lv = np.asarray(hs[0].levels)
    levels = sorted(set(hs[0].levels), key=lambda x: (str(type(x)), x))   # JSON scalars, whatever their type

    def at(i: int) -> list[float]:
        return [float(np.mean([h.per_combined[i][lv == x].mean() for h in hs])) for x in levels]

    return {"levels": levels, "first_step": float(hs[0].steps[0]), "first": at(0), "last": at(-1)}


def _curves(p: Probe) -> list[np.ndarray]:
    from octo.analysis.heldout import heldout

    return heldout(p).curves


def _excludes_zero(ci) -> bool | None:
    return None if not ci else bool(ci[0] > 0 or ci[1] < 0)


def _early(p: Probe, early: int, W: np.ndarray | None) -> tuple[float, np.ndarray | None] | None:
    """Mean combined held-out accuracy over evaluations at steps 1..early (point, bootstrap draws)."""
    from octo.analysis.heldout import heldout

    ho = heldout(p)
    idx = [i for i, s in enumerate(ho.steps) if 0 < s <= early]
    if not idx:
        return None
    point = float(np.mean(ho.combined[idx]))
    per = ho.per_combined
    draws = None
    if W is not None and per is not None and per.shape[1] == W.shape[1]:
        draws = W @ per[idx].mean(axis=0)
    return point, draws


@dataclass
class _FullRuns:
    """What the findings read: the full RL runs (and fixed-limit runs) per stage, as loaded and as scored."""

    full: dict[str, list[Probe]]
    fixed: dict[str, list[Probe]]
    scores: dict[str, CheckpointScore]
    fixed_scores: dict[str, CheckpointScore]
    resampler: Resampler
    cfg: AnalysisConfig

    def events(self, stage: str, fixed: bool = False) -> str:
        score = (self.fixed_scores if fixed else self.scores)[stage]
        return ", ".join(sorted({e.detector for e in score.events})) or "none"

    def files(self, *stages: str, fixed: bool = False) -> list[str]:
        runs = self.fixed if fixed else self.full
        return [str(p.path.relative_to(p.path.parents[2])) for s in stages for p in runs[s]]


def _finding(key, claim, holds, figure, ci=None, ci_what="", sources=()) -> dict:
    return {"key": key, "claim": claim, "holds": holds, "figure": figure, "ci": ci, "ci_what": ci_what,
            "significant": _excludes_zero(ci), "files": list(sources)}


def findings(plan: dict, full_scores: dict, fixed_scores: dict, full: dict, fixed: dict,
             resampler: Resampler, cfg: AnalysisConfig) -> list[dict]:
    """OctoThinker's findings (seed 004) as yes/no with the figure, read off the full RL runs."""
    f = plan["findings"]
    runs = _FullRuns(full, fixed, full_scores, fixed_scores, resampler, cfg)
    out = []
    if f.get("long") and f.get("short"):
        out += _long_vs_short(runs, f["long"], f["short"])
    if f.get("with_if") and f.get("without_if"):
        out.append(_if_data(runs, f["with_if"], f["without_if"]))
    if f.get("fewer_stable_tokens") and f.get("more_stable_tokens"):
        out.append(_stable_tokens(runs, f["fewer_stable_tokens"], f["more_stable_tokens"]))
    sv = plan.get("stair_vs_fixed")
    if sv and sv["checkpoint"] in fixed:
        out.append(_stair_vs_fixed(runs, sv, plan))
    for item in out:
        item["ci_level"] = int(round(cfg.ci_level * 100))
    return out


def _long_vs_short(runs: _FullRuns, long: str, short: str) -> list[dict]:
    full, scores, cfg = runs.full, runs.scores, runs.cfg
    gl, gs = _mean_stat(full[long], "growth"), _mean_stat(full[short], "growth")
    sl, ss = scores[long].components["stability"], scores[short].components["stability"]
    d = difference(scores[short], scores[long], "stability", cfg)
    ls, ll = _mean_stat(full[short], "len_last"), _mean_stat(full[long], "len_last")
    exploded = [e for e in scores[short].events if e.detector in ("length_explosion", "collapse")]
    limit = 1 + cfg.length_growth
    return [
        _finding("long_vs_short", f"long-CoT-heavy mixtures ({long}) grow response length more and are less stable "
                                  f"than short-CoT ones ({short}) [Fig. 6, 8]",
                 bool(gl > gs and sl < ss),
                 f"length growth over the full run x{gl:.2f} vs x{gs:.2f}; stability {sl:+.3f} vs {ss:+.3f}; "
                 f"events: {long} {runs.events(long)}, {short} {runs.events(short)}",
                 d["ci"] if d else None, f"stability {short} - {long}", runs.files(long, short)),
        _finding("short_stable", f"short-CoT mixtures ({short}) keep lengths short and stable [Fig. 7]",
                 bool(ls < ll and gs < limit and not exploded),
                 f"final train length {ls:.1f} vs {ll:.1f} tokens ({long}); growth x{gs:.2f} (stable: < "
                 f"x{limit:.2f}, the length-explosion threshold); length-explosion/collapse events: {len(exploded)}",
                 None, "", runs.files(short, long)),
    ]


def _if_data(runs: _FullRuns, wi: str, wo: str) -> dict:
    scores = runs.scores
    si, so = scores[wi].components["stability"], scores[wo].components["stability"]
    d = difference(scores[wi], scores[wo], "stability", runs.cfg)
    return _finding("if_data", f"IF data reduces instability ({wi} with IF vs {wo} without) [Fig. 7, 8]",
                    bool(si > so),
                    f"stability {si:+.3f} vs {so:+.3f}; length step std {_mean_stat(runs.full[wi], 'len_step_std'):.2f}"
                    f" vs {_mean_stat(runs.full[wo], 'len_step_std'):.2f}; events: {wi} {runs.events(wi)}, {wo} "
                    f"{runs.events(wo)}", d["ci"] if d else None, f"stability {wi} - {wo}", runs.files(wi, wo))


def _stable_tokens(runs: _FullRuns, few: str, more: str) -> dict:
    scores = runs.scores
    af, am = scores[few].metrics["final/acc"], scores[more].metrics["final/acc"]
    d = difference(scores[more], scores[few], "final/acc", runs.cfg)
    return _finding("stable_tokens", f"more stable-stage tokens improve RL ({more} vs {few}) [Fig. 11]", bool(am > af),
                    f"held-out accuracy after full RL {am:.3f} vs {af:.3f} (step 0: "
                    f"{scores[more].metrics['start/acc']:.3f} vs {scores[few].metrics['start/acc']:.3f})",
                    d["ci"] if d else None, f"final accuracy {more} - {few}", runs.files(more, few))


def _stair_vs_fixed(runs: _FullRuns, sv: dict, plan: dict) -> dict:
    s, early = sv["checkpoint"], sv["early_steps"]
    W = None
    ho0 = runs.scores[s].probes[0].ho
    if ho0.per_greedy is not None:
        W = runs.resampler.problem_weights(ho0.per_greedy.shape[1], ho0.levels)
    st = [_early(p, early, W) for p in runs.full[s]]
    fx = [_early(p, early, W) for p in runs.fixed[s]]
    if any(x is None for x in st + fx):
        return _finding("stair_vs_fixed", "a stair length schedule beats a fixed long limit early in training", None,
                        f"no held-out evaluation at steps 1..{early}: lower validation.full_eval_every", None, "", [])
    a, b = float(np.mean([x[0] for x in st])), float(np.mean([x[0] for x in fx]))
    ci = None
    if all(x[1] is not None for x in st + fx):
        ci = percentile_ci(np.mean([x[1] for x in st], axis=0) - np.mean([x[1] for x in fx], axis=0), runs.cfg.ci_level)
    stair_final, fixed_final = runs.scores[s].metrics["final/acc"], runs.fixed_scores[s].metrics["final/acc"]
    if sv.get("steps", plan["full"]["steps"]) >= plan["full"]["steps"]:
        after = f"after the full run {stair_final:.3f} vs {fixed_final:.3f}"
    else:
        after = (f"the fixed-limit runs stop at step {sv['steps']} (final accuracy {fixed_final:.3f}; the stair run's "
                 f"at step {plan['full']['steps']}: {stair_final:.3f})")
    return _finding("stair_vs_fixed", f"a stair length schedule ({sv['stair']}) beats a fixed long limit "
                                      f"({sv['fixed_len']} tokens) early in training ({s}) [Fig. 10]",
                    bool(a > b), f"mean held-out accuracy at steps 1-{early}: stair {a:.3f} vs fixed {b:.3f}; {after}"
                                 f"; events: stair {runs.events(s)}, fixed {runs.events(s, fixed=True)}",
                    ci, "early accuracy stair - fixed (problems resampled)",
                    runs.files(s) + runs.files(s, fixed=True))


def write_validation(run_dir: str | Path, *, doc: str | Path | None = None, cfg: AnalysisConfig | None = None) -> dict:
    """Analyse a validation run; write RUN/validation/{validation.json, validation.md, *.png} and, with ``doc``,
    the same page at ``doc`` with its PNGs in a folder named after it (docs/validation.md -> docs/validation/)."""
    from octo.analysis.validation_page import draw_plots, page_document

    run_dir = Path(run_dir)
    result, groups = analyse(run_dir, cfg)
    out_dir = run_dir / VALIDATION_DIR
    write_json_atomic(out_dir / RESULT_FILE, result)
    targets = [(out_dir / "validation.md", out_dir)]
    if doc:
        doc = Path(doc)
        targets.append((doc, doc.with_suffix("")))
    for md, img_dir in targets:
        write_text_atomic(md, page_document(result, draw_plots(result, groups, img_dir)).markdown(md.parent))
    return result
