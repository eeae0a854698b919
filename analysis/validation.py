"""Does the probe readiness ranking predict RL? Kendall tau with bootstrap CIs, findings, the validation page.

    result = write_validation("runs/validation", doc="docs/validation.md")   # after `octo validate` ran

``octo validate`` (octo/validate.py) trains the stages, runs a short probe and a full RL run from
every validated checkpoint and writes ``RUN/validation/plan.json`` (which directories belong to which
checkpoint, and the settings below). This module reads that plan and the directories it names, and
nothing else; like the rest of octo.analysis it never imports the engine.

- **Rankings.** Truth: held-out accuracy at the last evaluation of the full RL runs (mean of greedy and
  sampled, ``final/acc`` of octo.analysis.score), mean over seeds. Predictors, from the probes: the
  readiness score (``score_groups``, the same score as ``octo score``), step-0 accuracy alone, the probe's
  own final accuracy, and each ``ppl_metrics`` perplexity of the checkpoint's gates (lower predicts better).
- **Kendall tau-b** between a predictor and the truth over the checkpoints (ties count half in neither
  direction: tau-b = (C - D) / sqrt((n0 - n_x)(n0 - n_y)), Kendall 1945).
- **Bootstrap CI** of tau: the draws of score.py's bootstrap, i.e. held-out problems resampled (the same
  multinomial weights for every probe and full run, since all are evaluated on the same problems) and, with
  several seeds, seeds resampled as units (the i-th probe and the i-th full run together). Checkpoints are
  not resampled: they are the fixed design of the experiment, and resampling 6-7 items with replacement
  mostly manufactures ties. tau is computed in every draw; the CI is the percentile interval.
- **The value of the dynamics**: readiness tau minus each simpler predictor's tau, with the percentile CI of
  that difference over the same draws (paired: both taus of a draw see the same resampled problems and seeds,
  so the truth's noise they share cancels), and the share of draws in which readiness ranks better.
- **Separated pairs**: the pairs of checkpoints whose full-RL difference is beyond noise (its CI excludes 0). Tau
  also scores pairs that end within noise of each other, which no predictor can order but by chance; on the
  separated pairs each predictor is counted right, wrong or tied.
- **Findings** (seed 004): yes/no with the figure, from the full RL runs; see ``findings``.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
from octo.analysis.config import AnalysisConfig, load_analysis_config
from octo.analysis.load import Probe, load_probe, load_stages, num
from octo.analysis.score import CheckpointScore, Resampler, difference, score_groups
from octo.analysis.series import column
from octo.analysis.stats import (kendall_tau, percentile_ci, ranking, ranking_text, ranks, tau_ci, tau_gain_ci)

from octo.errors import OctoError
from octo.runio import read_json, write_json_atomic, write_text_atomic

VALIDATION_DIR = "validation"
PLAN_FILE = "plan.json"
RESULT_FILE = "validation.json"
FULL_DIR = f"{VALIDATION_DIR}/full"
FIXED_DIR = f"{VALIDATION_DIR}/fixed"
#: the full-run plots the page shows (probe_plots draws more; the rest are deleted)
SHOWN_PLOTS = ("acc", "length", "clip")


def _swaps_text(swaps: list[dict], pct: int) -> str:
    if not swaps:
        return ""
    return " Pairs whose order changed at the last evaluation (their final-accuracy difference, " + f"{pct}% CI): " \
        + "; ".join((f"{w['pair'][0]} and {w['pair'][1]} tied" if abs(w["diff"]) < 1e-12 else
                     f"{w['pair'][0]} ahead of {w['pair'][1]} by {w['diff']:+.3f}")
                    + f" {_fmt_ci(w['ci'], signed=True)} ({w['before']:+.3f} the evaluation before)"
                    for w in swaps) + "."


def separated_pairs(stages: list[str], truth: np.ndarray, truth_draws: np.ndarray, level: float) -> list[dict]:
    """The pairs of checkpoints whose full-RL outcomes differ beyond noise (the CI of their difference over the
    bootstrap draws excludes 0), the better one first. The other pairs end within noise of each other: the
    experiment knows no true order for them, so ordering them is no test of a predictor."""
    out = []
    for i, j in itertools.combinations(range(len(stages)), 2):
        if truth[j] > truth[i]:
            i, j = j, i
        ci = percentile_ci(truth_draws[:, i] - truth_draws[:, j], level)
        if ci[0] > 0:
            out.append({"pair": [stages[i], stages[j]], "idx": [i, j], "diff": float(truth[i] - truth[j]), "ci": ci})
    return out


def separated_agreement(pairs: list[dict], x: np.ndarray, draws: np.ndarray, level: float) -> dict:
    """How a predictor (higher = better; point ``x`` (n,), bootstrap draws ``(B, n)``) orders the pairs full RL
    separates: counts right, wrong and tied at the point estimate, the pairs it orders wrong (better one first), and
    the percentile CI of the share it orders right (ties half) over the draws."""
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
    """The pairs of checkpoints whose order (or tie) at the last evaluation differs from the one before, each with
    its difference at the last evaluation (first minus second, the first being ahead there) and that difference's
    percentile CI over the bootstrap draws ``(B, n)``: a swap whose CI includes 0 is noise, not a ranking still
    moving."""
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
    pscore = _scores(probes, cfg, resampler, "probe")
    fscore = _scores(full, cfg, resampler, "full RL run")
    xscore = _scores(fixed, cfg, resampler, "fixed-length run") if fixed else {}
    gates = _final_gates(run_dir)
    B = cfg.bootstrap

    def const(v: float) -> np.ndarray:
        return np.full(B, v)

    # truth and predictors: (point per stage, draws (B, n)); higher = better for every predictor
    truth = np.array([fscore[s].metrics["final/acc"] for s in stages])
    truth_draws = np.stack([fscore[s].draws["final/acc"] for s in stages], axis=1)
    predictors: dict[str, dict] = {
        "readiness": {"label": "probe readiness score (octo score)", "values": [pscore[s].score for s in stages],
                      "draws": [pscore[s].draws["score"] for s in stages], "sign": 1},
        "start_acc": {"label": "step-0 held-out accuracy alone", "sign": 1,
                      "values": [pscore[s].metrics["start/acc"] for s in stages],
                      "draws": [pscore[s].draws["start/acc"] for s in stages]},
        "probe_final_acc": {"label": "probe's final held-out accuracy", "sign": 1,
                            "values": [pscore[s].metrics["final/acc"] for s in stages],
                            "draws": [pscore[s].draws["final/acc"] for s in stages]},
    }
    for key in plan["ppl_metrics"]:
        vals = [num(gates.get(s, {}).get(key)) for s in stages]
        if any(v is None for v in vals):
            missing = [s for s, v in zip(stages, vals) if v is None]
            predictors[key] = {"label": f"CPT {key} alone (gates.jsonl)", "values": vals, "sign": -1,
                               "missing": f"no {key} in the final gates of {', '.join(missing)}"}
            continue
        predictors[key] = {"label": f"CPT {key} alone (gates.jsonl; lower predicts better)", "values": vals,
                           "draws": [const(v) for v in vals], "sign": -1}
    # the part of the truth this experiment knows: the pairs full RL separates beyond noise (each predictor is also
    # counted on those alone)
    separated = separated_pairs(stages, truth, truth_draws, cfg.ci_level)
    taus, signed_draws = {}, {}
    for key, p in predictors.items():
        row = {"label": p["label"], "values": dict(zip(stages, p["values"]))}
        if "missing" in p:
            taus[key] = {**row, "tau": None, "ci": None, "note": p["missing"]}
            continue
        x = p["sign"] * np.array(p["values"], dtype=float)
        signed_draws[key] = p["sign"] * np.stack(p["draws"], axis=1)
        ci, finite = tau_ci(signed_draws[key], truth_draws, cfg.ci_level)
        taus[key] = {**row, "tau": kendall_tau(x, truth), "ci": ci, "finite_draws": finite,
                     "ranking": ranking(stages, x),
                     "separated": separated_agreement(separated, x, signed_draws[key], cfg.ci_level)}
    # the value of the dynamics, measured: readiness tau minus each simpler predictor's, paired over the draws
    for key, t in taus.items():
        if key != "readiness" and key in signed_draws:
            ci, share = tau_gain_ci(signed_draws["readiness"], signed_draws[key], truth_draws, cfg.ci_level)
            t["readiness_gain"] = {"diff": taus["readiness"]["tau"] - t["tau"], "ci": ci, "share": share}
    truth_order = ranking(stages, truth)
    # do the full runs' rankings settle? tau between the last and the previous evaluation's ranking
    prev = np.array([np.mean([float(np.mean([c[-2] for c in _curves(p)])) for p in full[s]]) for s in stages])
    settled = all(len(p.evals) >= 2 for s in stages for p in full[s])
    settle = kendall_tau(prev, truth) if settled else None
    swaps = settle_swaps(stages, prev, truth, truth_draws, cfg.ci_level) if settled else []

    rows = {}
    for s in stages:
        pt = [num(p.meta.get("rollout_tokens")) or 0.0 for p in probes[s] if not p.control]
        ft = [num(p.meta.get("rollout_tokens")) or 0.0 for p in full[s]]
        pm, fm = (float(np.mean(x)) if x else 0.0 for x in (pt, ft))
        g = gates.get(s, {})
        rows[s] = {
            "checkpoint_id": full[s][0].checkpoint_id,
            "probe_dirs": [str(p.path.relative_to(run_dir)) for p in probes[s]],
            "full_dirs": [str(p.path.relative_to(run_dir)) for p in full[s]],
            "readiness": pscore[s].score, "readiness_ci": list(pscore[s].ci),
            "components": pscore[s].components,
            "start_acc": pscore[s].metrics["start/acc"], "probe_final_acc": pscore[s].metrics["final/acc"],
            "full_final_acc": fscore[s].metrics["final/acc"],
            "full_final_acc_ci": fscore[s].metric_cis.get("final/acc"),
            "full_final_acc_per_seed": [float(np.mean([c[-1] for c in _curves(p)])) for p in full[s]],
            "full_start_acc": fscore[s].metrics["start/acc"],
            "full_stability": fscore[s].components["stability"],
            "full_events": sorted({e.detector for e in fscore[s].events}),
            "probe_events": sorted({e.detector for e in pscore[s].events}),
            **{k: num(g.get(k)) for k in plan["ppl_metrics"]},
            # per run: a probe against a full run, whatever the number of seeds of each
            "probe_tokens": pm, "full_tokens": fm, "token_ratio": pm / fm if pt and fm > 0 else None,
            "length": {k: _mean_stat(full[s], k) for k in ("len_first", "len_last", "growth", "len_step_std")},
        }
    for s, k in ranks(truth_order).items():
        rows[s]["rank_full"] = k
    for s, k in ranks(taus["readiness"]["ranking"]).items():
        rows[s]["rank_readiness"] = k
    ptok = float(np.mean([r["probe_tokens"] for r in rows.values()]))
    ftok = float(np.mean([r["full_tokens"] for r in rows.values()]))
    ratios = [r["token_ratio"] for r in rows.values() if r["token_ratio"] is not None]
    budget = {"probe_tokens": ptok, "full_tokens": ftok, "ratio": ptok / ftok if ftok else None,
              "max_ratio": max(ratios) if ratios else None, "limit": plan["max_probe_ratio"],
              "within": bool(ratios) and max(ratios) <= plan["max_probe_ratio"],
              "probe_steps": plan["probe"]["steps"], "full_steps": plan["full"]["steps"]}
    result = {
        "version": 1, "reduced": plan["reduced"], "command": plan["command"], "full_command": plan["full_command"],
        "run_dir": str(run_dir), "seeds": plan["seeds"], "full_seeds": plan.get("full_seeds", plan["seeds"]),
        "stages": stages, "descriptions": plan.get("descriptions", {}),
        "probe": plan["probe"], "full": plan["full"], "target_tau": plan["target_tau"],
        "ci_level": cfg.ci_level, "bootstrap": cfg.bootstrap, "n_heldout": fscore[stages[0]].probes[0].ho.n,
        "truth_ranking": truth_order, "settle_tau": settle, "settle_swaps": swaps, "taus": taus,
        "separated_pairs": [{k: v for k, v in p.items() if k != "idx"} for p in separated],
        "checkpoints": rows, "budget": budget,
        "probe_compute": probe_compute_curve(stages, pscore, {s: rows[s]["full_tokens"] for s in stages}, truth,
                                             truth_draws, resampler, cfg.ci_level),
        "findings": findings(plan, pscore, fscore, xscore, full, fixed, resampler, cfg),
        "invocations": plan.get("invocations", []),
    }
    groups = {"probes": probes, "full": full, "fixed": fixed, "fscore": fscore, "xscore": xscore}
    return result, groups


def rollout_tokens_through(p: Probe, step: float) -> float:
    """Rollout tokens a run generated in its training steps 1..``step``: len/mean x prompts x generations per
    step, as octo.probe.grpo sums them into probe.json's ``rollout_tokens``."""
    per_step = (num(p.meta.get("prompts_per_step")) or 0) * (num(p.meta.get("num_generations")) or 0)
    steps, lens = column(p.metrics, "len/mean")
    keep = (steps <= step) & ~np.isnan(lens)
    return float(np.sum(lens[keep]) * per_step)


def probe_compute_curve(stages: list[str], pscore: dict[str, CheckpointScore], full_tokens: dict[str, float],
                        truth: np.ndarray, truth_draws: np.ndarray, resampler: Resampler,
                        level: float) -> list[dict]:
    """How much probe the prediction needs: at each held-out evaluation step every probe shares, the probes'
    held-out accuracy there as the predictor (Kendall tau against the full-RL truth, problems resampled with
    the truth's weights) beside the rollout tokens spent up to that step over a full run's (per checkpoint:
    mean over seeds; ``ratio`` = mean over checkpoints of probe tokens / mean of full tokens, as the budget).
    ``pscore``: the probes as scored (their held-out curves already read, controls apart)."""
    runs = {s: pscore[s].probes for s in stages}
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
        out.append({"step": int(step), "tau": kendall_tau(x, truth), "ci": ci,
                    "probe_tokens": float(np.mean(tokens)), "ratio": float(np.mean(tokens)) / ftok if ftok else None,
                    "max_ratio": float(np.nanmax(ratios)) if not np.all(np.isnan(ratios)) else None,
                    "values": dict(zip(stages, values))})
    return out


def _curves(p: Probe) -> list[np.ndarray]:
    from octo.analysis.heldout import heldout

    return heldout(p).curves


def _fmt_ci(ci, scale: float = 1.0, nd: int = 3, signed: bool = False) -> str:
    if not ci:
        return "n/a"
    f = f"{{:+.{nd}f}}" if signed else f"{{:.{nd}f}}"
    return f"[{f.format(ci[0] * scale)}, {f.format(ci[1] * scale)}]"


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


def findings(plan: dict, pscore: dict, fscore: dict, xscore: dict, full: dict, fixed: dict,
             resampler: Resampler, cfg: AnalysisConfig) -> list[dict]:
    """OctoThinker's findings (seed 004) as yes/no with the figure, read off the full RL runs."""
    f = plan["findings"]
    pct = int(round(cfg.ci_level * 100))
    out = []

    def ev(s):
        return ", ".join(sorted({e.detector for e in fscore[s].events})) or "none"

    def files(*stages):
        return [str(p.path.relative_to(p.path.parents[2])) for s in stages for p in full[s]]

    def add(key, claim, holds, figure, ci=None, ci_what="", sources=()):
        out.append({"key": key, "claim": claim, "holds": holds, "figure": figure, "ci": ci, "ci_what": ci_what,
                    "significant": _excludes_zero(ci), "files": list(sources)})

    long, short = f.get("long"), f.get("short")
    if long and short:
        gl, gs = _mean_stat(full[long], "growth"), _mean_stat(full[short], "growth")
        sl, ss = fscore[long].components["stability"], fscore[short].components["stability"]
        d = difference(fscore[short], fscore[long], "stability", cfg)
        add("long_vs_short", f"long-CoT-heavy mixtures ({long}) grow response length more and are less stable "
                             f"than short-CoT ones ({short}) [Fig. 6, 8]",
            bool(gl > gs and sl < ss),
            f"length growth over the full run x{gl:.2f} vs x{gs:.2f}; stability {sl:+.3f} vs {ss:+.3f}; "
            f"events: {long} {ev(long)}, {short} {ev(short)}",
            d["ci"] if d else None, f"stability {short} - {long}", files(long, short))
        ls, ll = _mean_stat(full[short], "len_last"), _mean_stat(full[long], "len_last")
        exploded = [e for e in fscore[short].events if e.detector in ("length_explosion", "collapse")]
        limit = 1 + cfg.length_growth
        add("short_stable", f"short-CoT mixtures ({short}) keep lengths short and stable [Fig. 7]",
            bool(ls < ll and gs < limit and not exploded),
            f"final train length {ls:.1f} vs {ll:.1f} tokens ({long}); growth x{gs:.2f} (stable: < x{limit:.2f}, "
            f"the length-explosion threshold); length-explosion/collapse events: {len(exploded)}",
            None, "", files(short, long))
    wi, wo = f.get("with_if"), f.get("without_if")
    if wi and wo:
        si, so = fscore[wi].components["stability"], fscore[wo].components["stability"]
        d = difference(fscore[wi], fscore[wo], "stability", cfg)
        add("if_data", f"IF data reduces instability ({wi} with IF vs {wo} without) [Fig. 7, 8]", bool(si > so),
            f"stability {si:+.3f} vs {so:+.3f}; length step std {_mean_stat(full[wi], 'len_step_std'):.2f} vs "
            f"{_mean_stat(full[wo], 'len_step_std'):.2f}; events: {wi} {ev(wi)}, {wo} {ev(wo)}",
            d["ci"] if d else None, f"stability {wi} - {wo}", files(wi, wo))
    few, more = f.get("fewer_stable_tokens"), f.get("more_stable_tokens")
    if few and more:
        af, am = fscore[few].metrics["final/acc"], fscore[more].metrics["final/acc"]
        d = difference(fscore[more], fscore[few], "final/acc", cfg)
        add("stable_tokens", f"more stable-stage tokens improve RL ({more} vs {few}) [Fig. 11]", bool(am > af),
            f"held-out accuracy after full RL {am:.3f} vs {af:.3f} (step 0: {fscore[more].metrics['start/acc']:.3f} "
            f"vs {fscore[few].metrics['start/acc']:.3f})",
            d["ci"] if d else None, f"final accuracy {more} - {few}", files(more, few))
    sv = plan.get("stair_vs_fixed")
    if sv and sv["checkpoint"] in fixed:
        s, early = sv["checkpoint"], sv["early_steps"]
        W = None
        ho0 = fscore[s].probes[0].ho
        if ho0.per_greedy is not None:
            W = resampler.problem_weights(ho0.per_greedy.shape[1], ho0.levels)
        st = [_early(p, early, W) for p in full[s]]
        fx = [_early(p, early, W) for p in fixed[s]]
        if any(x is None for x in st + fx):
            add("stair_vs_fixed", "a stair length schedule beats a fixed long limit early in training", None,
                f"no held-out evaluation at steps 1..{early}: lower validation.full_eval_every", None, "", [])
        else:
            a, b = float(np.mean([x[0] for x in st])), float(np.mean([x[0] for x in fx]))
            ci = None
            if all(x[1] is not None for x in st + fx):
                diff = np.mean([x[1] for x in st], axis=0) - np.mean([x[1] for x in fx], axis=0)
                ci = percentile_ci(diff, cfg.ci_level)
            add("stair_vs_fixed", f"a stair length schedule ({sv['stair']}) beats a fixed long limit "
                                  f"({sv['fixed_len']} tokens) early in training ({s}) [Fig. 10]",
                bool(a > b),
                f"mean held-out accuracy at steps 1-{early}: stair {a:.3f} vs fixed {b:.3f}; "
                + (f"after the full run {fscore[s].metrics['final/acc']:.3f} vs {xscore[s].metrics['final/acc']:.3f}"
                   if sv.get("steps", plan["full"]["steps"]) >= plan["full"]["steps"] else
                   f"the fixed-limit runs stop at step {sv['steps']} (final accuracy {xscore[s].metrics['final/acc']:.3f}"
                   f"; the stair run's at step {plan['full']['steps']}: {fscore[s].metrics['final/acc']:.3f})")
                + "; events: stair "
                f"{ev(s)}, fixed {', '.join(sorted({e.detector for e in xscore[s].events})) or 'none'}",
                ci, "early accuracy stair - fixed (problems resampled)",
                files(s) + [str(p.path.relative_to(p.path.parents[2])) for p in fixed[s]])
    for item in out:
        item["ci_level"] = pct
    return out


# --- the page ----------------------------------------------------------------------------------

def _plots(result: dict, groups: dict, img_dir: Path) -> dict[str, Path]:
    from octo.analysis.plots import _figure, _save, probe_plots

    img_dir.mkdir(parents=True, exist_ok=True)
    stages = result["stages"]
    rows = result["checkpoints"]
    out: dict[str, Path] = {}
    # probe predictors against the full-RL truth
    keys = [k for k, t in result["taus"].items() if t.get("tau") is not None or t.get("ci")]
    fig, axes = _figure(len(keys), height=4.0, width=3.6 * len(keys))
    y = np.array([rows[s]["full_final_acc"] for s in stages])
    yci = np.array([rows[s]["full_final_acc_ci"] or [v, v] for s, v in zip(stages, y)])
    for ax, key in zip(axes, keys):
        t = result["taus"][key]
        x = np.array([t["values"][s] for s in stages], dtype=float)
        xerr = None
        if key == "readiness":
            ci = np.array([rows[s]["readiness_ci"] for s in stages])
            xerr = [x - ci[:, 0], ci[:, 1] - x]
        ax.errorbar(x, y, yerr=[y - yci[:, 0], yci[:, 1] - y], xerr=xerr, fmt="o", ms=4, capsize=3, lw=0.8)
        for s, xi, yi in zip(stages, x, y):
            ax.annotate(s, (xi, yi), textcoords="offset points", xytext=(4, 3), fontsize=6)
        log = key.startswith("ppl") and np.nanmin(x) > 0 and np.nanmax(x) / np.nanmin(x) > 10   # spans a decade
        if log:
            ax.set_xscale("log")
        if key.startswith("ppl"):
            ax.invert_xaxis()
        tau = "n/a" if t["tau"] is None or np.isnan(t["tau"]) else f"{t['tau']:+.2f}"
        ax.set_title(f"{key}: tau {tau}", fontsize=9)
        ax.set_xlabel(key + ((" (log, reversed)" if log else " (reversed)") if key.startswith("ppl") else ""),
                      fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("held-out accuracy after full RL", fontsize=8)
    fig.suptitle("Probe predictors vs full-RL outcome (one point per checkpoint; whiskers: CIs)", fontsize=10)
    out["scatter"] = _save(fig, img_dir / "predictors.png")
    # tau per predictor with CI
    fig, (ax,) = _figure(1, width=7.5, height=0.45 * len(keys) + 1.6, left_in=1.6)
    names = keys[::-1]
    vals = np.array([np.nan if result["taus"][k]["tau"] is None else result["taus"][k]["tau"] for k in names])
    cis = np.array([result["taus"][k]["ci"] or [np.nan, np.nan] for k in names], dtype=float)
    ax.barh(names, np.nan_to_num(vals), color=["#d62728" if k == "readiness" else "#1f77b4" for k in names])
    ok = ~np.isnan(cis[:, 0])
    ax.errorbar(vals[ok], np.array(names)[ok], xerr=[vals[ok] - cis[ok, 0], cis[ok, 1] - vals[ok]], fmt="none",
                ecolor="black", capsize=4, lw=1)
    ax.axvline(result["target_tau"], color="0.3", ls="--", lw=1)
    ax.axvline(0, color="0.5", lw=0.8)
    ax.set_xlim(-1.05, 1.05)
    ax.set_xlabel(f"Kendall tau-b with the full-RL ranking ({int(result['ci_level'] * 100)}% bootstrap CI; "
                  f"dashed: target {result['target_tau']})", fontsize=8)
    ax.set_title("Agreement of each predictor's ranking with the full-RL ranking", fontsize=10)
    ax.tick_params(labelsize=8)
    ax.grid(axis="x", alpha=0.3)
    out["tau"] = _save(fig, img_dir / "tau.png")

    def keep(plots, prefix):
        for p in plots:
            if p.name[len(prefix):] in SHOWN_PLOTS:
                out[p.name] = p.path
            else:
                p.path.unlink(missing_ok=True)   # drawn by probe_plots, not shown on the page

    events = [e.to_dict() for r in groups["fscore"].values() for e in r.events]
    keep(probe_plots(groups["full"], img_dir, events=events, prefix="full_"), "full_")
    if groups["fixed"]:
        s = next(iter(groups["fixed"]))
        pair = {f"stair ({s})": groups["full"][s], f"fixed ({s})": groups["fixed"][s]}
        ev = events + [e.to_dict() for r in groups["xscore"].values() for e in r.events]
        keep(probe_plots(pair, img_dir, events=ev, prefix="stair_"), "stair_")
    return out


def _yes(v) -> str:
    return "not checked" if v is None else ("yes" if v else "**no**")


def render(result: dict, images: dict[str, str]) -> str:
    """The Markdown page; ``images`` maps plot names to links relative to the page."""
    r = result
    pct = int(round(r["ci_level"] * 100))
    stages, rows, b = r["stages"], r["checkpoints"], r["budget"]
    L = ["# Does the readiness score predict RL? The toy-world validation", "",
         f"*Generated by `{r['command']}`; do not edit by hand: every number below comes from the run directory "
         f"`{r['run_dir']}` (its `validation/validation.json` holds them all, and the files each one is read from "
         "are named beside it).*", ""]
    if r["reduced"]:
        L += ["> **This is the reduced run**, the pipeline check that CI runs: a tiny model, "
              f"{r['full']['steps']}-step full RL runs, {len(r['seeds'])} seed(s), {r['n_heldout']} held-out "
              "problems. It shows that every step of the experiment runs and what the page reports; its numbers "
              "are **not evidence** about whether the readiness score predicts RL. The full experiment is", ">",
              f"> `{r['full_command']}`", ""]
    else:
        L += ["The pipeline check that CI runs is the same command with `--reduced` (tiny sizes, one seed; "
              "tests/analysis/test_validate.py).", ""]
    L += ["## What was run", "",
          f"From the final checkpoint of each of {len(stages)} mid-training stages: a **probe** (GRPO, "
          f"{r['probe']['steps']} steps, the recipe's `probe` section) and a **full RL run** (the same GRPO for "
          f"{r['full']['steps']} steps, max length {r['full']['max_len']}, evaluated every {r['full']['eval_every']} "
          f"steps), probes with seed(s) {', '.join(map(str, r['seeds']))} and full runs with seed(s) "
          f"{', '.join(map(str, r['full_seeds']))} (independent of the probes: a probe is not the start of its own "
          f"full run), all evaluated on the same {r['n_heldout']} "
          "held-out problems. Settings: the recipe's `validation:` section (`ValidationConfig` in octo/config.py, "
          "every key with its help text; `--dry-run` prints the resolved recipe).", "",
          "| checkpoint | stage | what it is |", "|---|---|---|"]
    for s in stages:
        L.append(f"| {rows[s]['checkpoint_id']} | {s} | {r['descriptions'].get(s, '')} |")
    ratio = "n/a" if b["ratio"] is None else f"{b['ratio']:.3f}"
    L += ["", f"**Compute.** A probe used {b['probe_tokens']:,.0f} rollout tokens on average, a full run "
          f"{b['full_tokens']:,.0f}: a ratio of **{ratio}** overall, at most "
          f"{b['max_ratio']:.3f} for one checkpoint (budget {b['limit']:g}: "
          f"{'within' if b['within'] else '**exceeded**'}); in steps {b['probe_steps']} / {b['full_steps']}. "
          "Rollout tokens are `rollout_tokens` of each run's `probe.json` (training rollouts; the held-out "
          "evaluations, which both kinds of run make, are not counted).", ""]
    t = r["taus"]["readiness"]
    ok = t["tau"] is not None and t["tau"] >= r["target_tau"]
    L += ["## Does the probe ranking predict the full-RL ranking?", "",
          f"Truth: held-out accuracy at the last evaluation of the full RL runs (mean of greedy and sampled "
          f"accuracy, mean over seeds). Full-RL ranking: {ranking_text(r['truth_ranking'])}.", "",
          f"| predictor (from the probe or the gates) | Kendall tau-b | {pct}% bootstrap CI | readiness tau minus "
          f"this one, {pct}% CI (paired) | share of draws where readiness ranks better | pairs full RL separates: "
          f"right / wrong / tied (share right, {pct}% CI) | its ranking |",
          "|---|---|---|---|---|---|---|"]
    for key, tt in r["taus"].items():
        tau = "n/a" if tt["tau"] is None or np.isnan(tt["tau"]) else f"{tt['tau']:+.3f}"
        rank = ranking_text(tt["ranking"]) if tt.get("ranking") else tt.get("note", "")
        gain = tt.get("readiness_gain")
        if key == "readiness":
            vs = share = "(itself)"
        elif gain is None or np.isnan(gain["diff"]):
            vs = share = "n/a"
        else:
            vs = f"{gain['diff']:+.3f} {_fmt_ci(gain['ci'], signed=True)}"
            share = "n/a" if gain["share"] is None else f"{gain['share']:.2f}"
        sep = tt.get("separated")
        sep = "n/a" if not sep or not sep["n"] else \
            f"{sep['right']} / {sep['wrong']} / {sep['tied']} ({sep['share']:.2f}, {_fmt_ci(sep['ci'], nd=2)})"
        L.append(f"| {tt['label']} | {tau} | {_fmt_ci(tt['ci'], signed=True)} | {vs} | {share} | {sep} | {rank} |")
    n_pairs = len(stages) * (len(stages) - 1) // 2
    sep_pairs = r.get("separated_pairs") or []
    seen = {tuple(sorted(x["pair"])) for x in sep_pairs}
    close = [" ~ ".join(pair) for pair in itertools.combinations(stages, 2) if tuple(sorted(pair)) not in seen]
    L += ["", f"**Which pairs can this run judge?** Of the {n_pairs} pairs of checkpoints, full RL separates "
          f"{len(sep_pairs)} beyond noise (the {pct}% CI of their final-accuracy difference excludes 0); those are "
          "the pairs the column above counts. The other " + str(len(close)) + " end within noise of each other, "
          "so the run knows no true order for them" + (f": {', '.join(close)}." if close else ".")]
    L += ["", f"Readiness tau {'reaches' if ok else 'does **not** reach'} the target {r['target_tau']}"
          + ("" if not r["reduced"] else " (reduced run: not evidence either way)")
          + (f" ({t['tau']:+.3f}); the target lies inside its {pct}% CI, so this run neither reaches nor rules it out"
             if not ok and t["tau"] is not None and t["ci"] and t["ci"][0] <= r["target_tau"] <= t["ci"][1]
             else "") + ". "
          + (f"The full-RL ranking at the last evaluation agrees with the one at the evaluation before with "
             f"tau {r['settle_tau']:+.3f} (1 = the ranking had settled)." if r["settle_tau"] is not None else "")
          + _swaps_text(r.get("settle_swaps") or [], pct),
          "",
          f"**Bootstrap.** {r['bootstrap']} draws. In each draw the held-out problems are resampled with "
          "replacement (the same weights for every probe and full run, since all answer the same problems) and, "
          "with several seeds, each checkpoint's seeds are resampled as units ("
          + ("the i-th probe and the i-th full run together" if len(r["seeds"]) == len(r["full_seeds"]) else
             "its probes' seeds and its full runs' seeds each") + "); tau is recomputed per draw and the interval is its percentile range. Checkpoints are not "
          "resampled: they are the experiment's fixed design, and drawing 6-7 items with replacement mostly "
          "creates ties. Perplexities have no resampling noise here and stay fixed in every draw.", ""]
    cols = ["readiness", f"{pct}% CI", "step-0 acc", "probe final acc"] + [k for k in r["taus"] if k.startswith("ppl")]
    L += ["| checkpoint | " + " | ".join(cols) + " | full-RL final acc | " + f"{pct}% CI | per seed | rank (readiness) "
          "| rank (full RL) | rollout tokens per run, probe / full |", "|---" * (len(cols) + 7) + "|"]
    for s in sorted(stages, key=lambda s: rows[s]["rank_full"]):
        x = rows[s]
        ppl = [("n/a" if x.get(k) is None else f"{x[k]:.3f}") for k in cols[4:]]
        L.append(f"| {s} | {x['readiness']:+.3f} | {_fmt_ci(x['readiness_ci'], signed=True)} | {x['start_acc']:.3f} "
                 f"| {x['probe_final_acc']:.3f} | " + " | ".join(ppl) + f" | {x['full_final_acc']:.3f} | "
                 f"{_fmt_ci(x['full_final_acc_ci'])} | {', '.join(f'{v:.3f}' for v in x['full_final_acc_per_seed'])} "
                 f"| {x['rank_readiness']} | {x['rank_full']} | {x['probe_tokens']:,.0f} / {x['full_tokens']:,.0f} |")
    L += ["", "Sources: readiness, step-0 and probe final accuracy: `probes/<id>/evals.jsonl` and `metrics.jsonl` "
          "scored by octo.analysis.score (what `octo score RUN` computes); full-RL accuracy: the last row of "
          "`validation/full/<id>/evals.jsonl`; perplexities: the final row of `cpt/<stage>/gates.jsonl`; "
          "rollout tokens: `probe.json`. Directories per checkpoint are listed in `validation/validation.json`.", ""]
    curve = r.get("probe_compute") or []
    if curve:
        L += ["### How much probe does the prediction need?", "",
              "The probes' held-out accuracy at each of their evaluations, as a predictor on its own, beside the "
              "rollout tokens spent up to that step (step 0: before any training, i.e. step-0 accuracy; the last "
              "step: the probe's final accuracy). The ratio is probe tokens so far over a full run's, overall and "
              f"for the checkpoint where it is largest (budget {b['limit']:g}). Problems are resampled as above; "
              "seeds are averaged, not resampled.", "",
              f"| probe step | rollout tokens per probe so far | ratio to a full run | largest ratio | Kendall tau-b | "
              f"{pct}% CI |", "|---|---|---|---|---|---|"]
        for c in curve:
            tau = "n/a" if c["tau"] is None or np.isnan(c["tau"]) else f"{c['tau']:+.3f}"
            rr = "n/a" if c["ratio"] is None else f"{c['ratio']:.3f}"
            mr = "n/a" if c["max_ratio"] is None else f"{c['max_ratio']:.3f}"
            L.append(f"| {c['step']} | {c['probe_tokens']:,.0f} | {rr} | {mr} | {tau} "
                     f"| {_fmt_ci(c['ci'], signed=True)} |")
        L += ["", "Source: the probes' `evals.jsonl` (accuracy) and `metrics.jsonl` (`len/mean` x prompts x "
              "generations per step, the sum that `probe.json`'s `rollout_tokens` holds).", ""]
    for name in ("tau", "scatter"):
        if name in images:
            L += [f"![{name}]({images[name]})", ""]
    L += ["## OctoThinker's findings in the toy world", "",
          "Read off the full RL runs (the figures of seed 004 in brackets); *stability* is octo's readiness component "
          "(-(peak - final held-out accuracy) - detector event penalties, docs/analysis.md), *length growth* the "
          "mean `len/mean` of the last tenth of training steps over the first tenth.", "",
          f"| finding | holds | figure | {pct}% CI of the difference | CI excludes 0 |", "|---|---|---|---|---|"]
    for f in r["findings"]:
        sig = "n/a" if f["significant"] is None else ("yes" if f["significant"] else "no")
        ci = f"{f['ci_what']}: {_fmt_ci(f['ci'], signed=True)}" if f["ci"] else "n/a"
        L.append(f"| {f['claim']} | {_yes(f['holds'])} | {f['figure']} | {ci} | {sig} |")
    if not r["findings"]:
        L.append("| (no findings configured: validation.findings) | not checked | | | |")
    L += ["", "Sources: `metrics.jsonl` (lengths) and `evals.jsonl` (accuracy) of the full runs, "
          "`validation/fixed/<id>/` for the fixed-limit runs; octo's detectors on each.", ""]
    for name, title in (("full_acc", "Held-out accuracy during the full RL runs"),
                        ("full_length", "Training response length during the full RL runs"),
                        ("full_clip", "Clip ratio and length limit during the full RL runs"),
                        ("stair_acc", "Stair schedule vs fixed long limit: held-out accuracy"),
                        ("stair_length", "Stair schedule vs fixed long limit: response length"),
                        ("stair_clip", "Stair schedule vs fixed long limit: clip ratio and length limit")):
        if name in images:
            L += [f"**{title}**", "", f"![{name}]({images[name]})", ""]
    L += ["## Reading this honestly, and what would improve it", ""] + improvements(r)
    worked = [x for x in r.get("invocations", []) if x["runs"]]   # a rerun that only re-analyses adds nothing
    if worked:
        calls = "; ".join(f"{x['wall_s']:.0f} s, executing {x['runs']} of the {x['of']} GRPO runs"
                          + (f" ({x['probes']} of them probes of {x['probe_steps']} steps)" if x.get("probes") else "")
                          for x in worked)
        L += ["", "Wall time of the command on this run directory (CPT stages, probes and full runs; the analysis "
                  f"after them not included): {calls}."]
    return "\n".join(L) + "\n"


def improvements(r: dict) -> list[str]:
    """Statements about this run's limits, computed from its numbers."""
    rows, stages = r["checkpoints"], r["stages"]
    out = []
    if r["reduced"]:
        out.append("- This reduced run checks the pipeline only; run the full command above for the evidence.")
    accs = sorted(rows[s]["full_final_acc"] for s in stages)
    gaps = np.diff(accs)
    seed_sd = [float(np.std(rows[s]["full_final_acc_per_seed"], ddof=1)) for s in stages
               if len(rows[s]["full_final_acc_per_seed"]) > 1]
    widths = [rows[s]["full_final_acc_ci"][1] - rows[s]["full_final_acc_ci"][0] for s in stages
              if rows[s]["full_final_acc_ci"]]
    med_gap = float(np.median(gaps)) if len(gaps) else float("nan")
    if widths:
        out.append(f"- Separation of the truth: the median gap between neighbouring checkpoints in full-RL accuracy is "
                   f"{med_gap:.3f}, while a checkpoint's {int(r['ci_level'] * 100)}% interval is "
                   f"{float(np.median(widths)):.3f} wide (median)"
                   + (f" and its seed-to-seed standard deviation {float(np.median(seed_sd)):.3f}" if seed_sd else "")
                   + ". Where intervals overlap, the true order is itself uncertain and no predictor can reach "
                     "tau 1; more seeds and more held-out problems narrow them.")
    t = r["taus"]["readiness"]
    if t["ci"]:
        out.append(f"- The readiness tau interval spans {t['ci'][1] - t['ci'][0]:.2f}. With {len(stages)} "
                   f"checkpoints one swapped pair moves tau by {2 / (len(stages) * (len(stages) - 1) / 2):.2f}; "
                   "more checkpoints (e.g. more stable-stage lengths or decay mixtures) make tau finer and its CI "
                   "narrower.")
    if r["settle_tau"] is not None and r["settle_tau"] < 1:
        swaps = r.get("settle_swaps") or []
        noise = [w for w in swaps if w["ci"][0] <= 0 <= w["ci"][1]]
        if swaps and len(noise) == len(swaps):
            out.append(f"- The full-RL ranking changed between the last two evaluations (tau {r['settle_tau']:+.2f}) "
                       "only between checkpoints whose final accuracies are within noise of each other (every such "
                       "pair's difference CI includes 0, above): settled as far as these evaluations can tell; more "
                       "seeds or held-out problems, not longer runs, would separate them.")
        else:
            out.append(f"- The full-RL ranking still changed between the last two evaluations (tau "
                       f"{r['settle_tau']:+.2f}), also between checkpoints whose difference is beyond noise: longer "
                       "full runs would let it settle.")
    base = {k: v["tau"] for k, v in r["taus"].items() if k != "readiness" and v["tau"] is not None}
    if base and t["tau"] is not None:
        best = max(base, key=base.get)
        ci = (r["taus"][best].get("readiness_gain") or {}).get("ci")
        gain = (f" (readiness minus it: {t['tau'] - base[best]:+.3f}, {int(r['ci_level'] * 100)}% CI "
                f"{_fmt_ci(ci, signed=True)}, paired over the bootstrap draws)")
        if ci and ci[0] > 0:
            verdict = "that interval excludes 0: the dynamics add ranking information beyond noise here."
        elif ci and ci[1] < 0:
            verdict = "that interval excludes 0 on the wrong side: here the dynamics make the ranking worse."
        else:
            verdict = ("that interval includes 0: this run cannot tell whether the dynamics add ranking information"
                       + ("." if ci else " (no interval)."))
        if base[best] >= t["tau"]:
            out.append(f"- A simpler predictor ({best}, tau {base[best]:+.3f}) does at least as well as the readiness "
                       f"score here{gain}; {verdict} Re-weighting the components (`analysis.weights`) against these "
                       "full runs, then checking on fresh seeds, is the next step.")
        else:
            out.append(f"- The readiness score beats the best simpler predictor ({best}, tau {base[best]:+.3f}){gain}; "
                       f"{verdict}")
    sep = {k: v.get("separated") for k, v in r["taus"].items() if (v.get("separated") or {}).get("n")}
    if sep:
        n = next(iter(sep.values()))["n"]
        pairs = len(stages) * (len(stages) - 1) // 2

        def wrong(v):
            return "" if not v["wrong_pairs"] else \
                " (" + "; ".join(f"{b} above {a}" for a, b in v["wrong_pairs"][:4]) \
                + ("; ..." if len(v["wrong_pairs"]) > 4 else "") + ")"

        out.append(f"- Full RL separates {n} of the {pairs} pairs beyond noise; on those, "
                   + ", ".join(f"{k} orders {v['right']} right and {v['wrong']} wrong{wrong(v)}" for k, v in sep.items())
                   + ". Tau over all pairs also scores the order of checkpoints that end within noise of each other, "
                     "where no predictor can be right but by chance; checkpoints whose RL outcomes differ more "
                     "(not more of those that all reach the same level) make the test sharper.")
    if not r["budget"]["within"]:
        lim = r["budget"]["limit"]
        fit = [c for c in r.get("probe_compute") or [] if c["step"] > 0 and c["max_ratio"] is not None
               and c["max_ratio"] <= lim and c["tau"] is not None and not np.isnan(c["tau"])]
        text = "- The probes used more than the compute budget: lengthen the full runs or shorten the probes."
        if fit:
            c = fit[-1]
            text += (f" Up to step {c['step']} they stayed within it (largest ratio {c['max_ratio']:.3f}), and their "
                     f"held-out accuracy there ranks the checkpoints with tau {c['tau']:+.3f}: a "
                     f"probe of {c['step']} steps is the candidate, to be confirmed by running it (its readiness score "
                     "needs its own length and stability dynamics, which a cut-off longer probe does not give).")
        out.append(text)
    no = [f["key"] for f in r["findings"] if f["holds"] is False]
    if no:
        out.append(f"- Findings that do not hold here ({', '.join(no)}) are reported as **no**, not tuned away; the "
                   "toy world is a tiny model on arithmetic word problems, so a finding about 3B models on competition "
                   "math may simply not transfer. Findings whose difference CI includes 0 are not resolved by this "
                   "run either way.")
    return out


def write_validation(run_dir: str | Path, *, doc: str | Path | None = None, cfg: AnalysisConfig | None = None) -> dict:
    """Analyse a validation run; write RUN/validation/{validation.json, validation.md, *.png} and, with ``doc``,
    the same page at ``doc`` with its PNGs in a folder named after it (docs/validation.md -> docs/validation/)."""
    run_dir = Path(run_dir)
    result, groups = analyse(run_dir, cfg)
    out_dir = run_dir / VALIDATION_DIR
    write_json_atomic(out_dir / RESULT_FILE, result)
    targets = [(out_dir / "validation.md", out_dir)]
    if doc:
        doc = Path(doc)
        targets.append((doc, doc.with_suffix("")))
    for md, img_dir in targets:
        paths = _plots(result, groups, img_dir)
        links = {k: os.path.relpath(p, md.parent) for k, p in paths.items()}
        write_text_atomic(md, render(result, links))
    return result
