"""CPT gates beside readiness: stability gap, J(t), stop-rule verdict and the Pareto set (seed 001).

Every row of ``cpt/<stage>/gates.jsonl`` becomes one table row, against the *reference* M(0) (the
final checkpoint of the root stage, or ``analysis.reference``):

- stability gap (seed 001, 5.1): ``stab_gap/<metric> = M(t) - M(0)``; ``stage_gap/<metric>`` the same
  against the stage's own start (Delta_stab(t) within one stage);
- gate score (seed 001, 4.3): ``J = w_domain * (acc - acc_0) - w_general * max(0, ln(ppl/ppl_0))
  - w_behavior * max(0, fmt_0 - fmt) - w_safety * max(0, refusal_0 - refusal)``;
- stop rule (seed 001, 4.1/4.4): general, safety or behavior regression beyond tau_g / tau_s / tau_b,
  or a domain gain below eps_d for ``stop_patience`` evaluations; ``pass`` otherwise;
- Pareto set (seed 001, 4.2): rows not dominated on domain accuracy, ppl/general, format_rate and
  refusal_rate.

Values the engine already wrote (``stab_gap/*``, ``J``, ``verdict``, ``pareto``) are kept as written.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from octo.analysis.config import AnalysisConfig
from octo.analysis.load import Run, num

from octo.errors import OctoError
from octo.runio import checkpoint_id

ACC_KEY_RE = re.compile(r"^acc/[^/]+$")
GENERAL = "ppl/general"
FORMAT = "format_rate"
SAFETY = "refusal_rate"


def domain_key(rows: list[dict], cfg: AnalysisConfig) -> str | None:
    if cfg.domain_metric:
        return cfg.domain_metric
    for row in rows:
        for key in row:
            if ACC_KEY_RE.match(key) and num(row[key]) is not None:
                return key
    return None


def _all_rows(run: Run) -> list[dict]:
    rows = []
    for stage in run.stages.values():
        for g in stage.gates:
            step = int(num(g.get("step")) or 0)
            rows.append({**g, "stage": stage.name, "step": step,
                         "checkpoint_id": str(g.get("checkpoint_id") or checkpoint_id(stage.name, step))})
    return rows


def reference_row(run: Run, rows: list[dict], cfg: AnalysisConfig) -> dict | None:
    """M(0): ``cfg.reference``, else the base model (see the module docstring), else None."""
    by_id = {r["checkpoint_id"]: r for r in rows}
    if cfg.reference:
        if cfg.reference not in by_id:
            known = ", ".join(by_id) or "(none)"
            raise OctoError(f"analysis.reference '{cfg.reference}' is not a checkpoint with gates; gated "
                            f"checkpoints: {known}")
        return by_id[cfg.reference]
    if not rows:
        return None
    roots = [s for s in run.stages.values() if s.init in ("random", "model") and s.gates]
    if roots:
        root = roots[0]
        gated = [r for r in rows if r["stage"] == root.name]
        return max(gated, key=lambda r: r["step"]) if root.init == "random" else min(gated, key=lambda r: r["step"])
    if "pretrain" in run.stages and run.stages["pretrain"].gates:
        return max((r for r in rows if r["stage"] == "pretrain"), key=lambda r: r["step"])
    zero = [r for r in rows if r["step"] == 0]
    return zero[0] if zero else None


def _stage_starts(run: Run, rows: list[dict]) -> dict[str, dict]:
    """checkpoint id -> the gates row its stage started from (see ``stage_gap`` in the module docstring)."""
    by_stage: dict[str, list[dict]] = {}
    for r in rows:
        by_stage.setdefault(r["stage"], []).append(r)
    out = {}
    for name, stage_rows in by_stage.items():
        zero = [r for r in stage_rows if r["step"] == 0]
        init = run.stages[name].init if name in run.stages else None
        start = zero[0] if zero else (max(by_stage[init], key=lambda r: r["step"]) if init in by_stage else None)
        if start is not None:
            for r in stage_rows:
                out[r["checkpoint_id"]] = start
    return out


def pareto_set(points: dict[str, tuple[float, ...]]) -> set[str]:
    """Ids whose point no other point dominates (>= on every coordinate, > on one); larger is better."""
    out = set()
    for a, pa in points.items():
        dominated = any(all(x >= y for x, y in zip(pb, pa)) and any(x > y for x, y in zip(pb, pa))
                        for b, pb in points.items() if b != a)
        if not dominated:
            out.add(a)
    return out


DERIVED = ("J", "verdict", "pareto")


def gate_table(run: Run, cfg: AnalysisConfig, *, recompute: bool = False) -> dict:
    """``{"rows", "reference", "domain_metric"}``; ``recompute`` ignores the derived values the engine wrote."""
    rows = _all_rows(run)
    if recompute:
        rows = [{k: v for k, v in r.items() if k not in DERIVED and not k.startswith(("stab_gap/", "stage_gap/"))}
                for r in rows]
    dm = domain_key(rows, cfg)
    ref = reference_row(run, rows, cfg)
    w = cfg.gate_weights
    out_rows = []
    starts = _stage_starts(run, rows)
    for row in rows:
        out = dict(row)
        ppl, acc, fmt = num(row.get(GENERAL)), num(row.get(dm)) if dm else None, num(row.get(FORMAT))
        safe = num(row.get(SAFETY))
        derived: dict = {}
        if ref is not None:
            ppl0, acc0, fmt0 = num(ref.get(GENERAL)), num(ref.get(dm)) if dm else None, num(ref.get(FORMAT))
            safe0 = num(ref.get(SAFETY))
            terms = []
            if ppl is not None and ppl0 is not None:
                derived[f"stab_gap/{GENERAL}"] = ppl - ppl0
                reg_g = math.log(ppl / ppl0) if ppl > 0 and ppl0 > 0 else None
                derived["reg/general"] = reg_g
                if reg_g is not None:
                    terms.append(-w["general"] * max(0.0, reg_g))
            if acc is not None and acc0 is not None:
                derived[f"stab_gap/{dm}"] = acc - acc0
                terms.append(w["domain"] * (acc - acc0))
            if fmt is not None and fmt0 is not None:
                derived[f"stab_gap/{FORMAT}"] = fmt - fmt0
                terms.append(-w["behavior"] * max(0.0, fmt0 - fmt))
            if safe is not None and safe0 is not None:
                derived[f"stab_gap/{SAFETY}"] = safe - safe0
                terms.append(-w["safety"] * max(0.0, safe0 - safe))
            derived["J"] = sum(terms) if terms else None
        start = starts.get(row["checkpoint_id"])
        if start is not None:
            for key in (GENERAL, dm, FORMAT, SAFETY):
                a, b = (num(row.get(key)), num(start.get(key))) if key else (None, None)
                if a is not None and b is not None:
                    derived[f"stage_gap/{key}"] = a - b
        for key, value in derived.items():
            if out.get(key) is None:
                out[key] = value
        out["reference"] = ref is not None and row is ref
        out_rows.append(out)
    _verdicts(out_rows, ref, dm, cfg)
    points = {}
    for r in out_rows:
        ppl, acc, fmt = num(r.get(GENERAL)), num(r.get(dm)) if dm else None, num(r.get(FORMAT))
        coords = [acc, -ppl if ppl is not None else None, fmt, num(r.get(SAFETY))]
        points[r["checkpoint_id"]] = coords
    usable = [i for i in range(4) if all(p[i] is not None for p in points.values())] if points else []
    front = pareto_set({k: tuple(p[i] for i in usable) for k, p in points.items()}) if usable else set()
    for r in out_rows:
        if r.get("pareto") is None:
            r["pareto"] = (r["checkpoint_id"] in front) if usable else None
    return {"rows": out_rows, "reference": ref["checkpoint_id"] if ref is not None else None, "domain_metric": dm}


def _verdicts(rows: list[dict], ref: dict | None, dm: str | None, cfg: AnalysisConfig) -> None:
    by_stage: dict[str, list[dict]] = {}
    for r in rows:
        by_stage.setdefault(r["stage"], []).append(r)
    for stage_rows in by_stage.values():
        low_gain = 0
        for r in sorted(stage_rows, key=lambda x: x["step"]):
            # a verdict the engine wrote during training is kept, but its row still counts towards
            # the consecutive low-gain evaluations of the rows after it
            verdict, low_gain = _verdict(r, ref, dm, cfg, low_gain)
            if r.get("verdict") is None:
                r["verdict"] = verdict


def _verdict(r: dict, ref: dict | None, dm: str | None, cfg: AnalysisConfig, low_gain: int) -> tuple[str | None, int]:
    """(verdict of one row, consecutive low-gain evaluations of its stage up to it)."""
    if ref is None:
        return None, low_gain
    if r["reference"]:
        return "reference", low_gain
    if r["stage"] == ref["stage"] and r["step"] < ref["step"]:
        return "before reference", low_gain
    reg_g = r.get("reg/general")
    gap_f = num(r.get(f"stab_gap/{FORMAT}"))
    gap_s = num(r.get(f"stab_gap/{SAFETY}"))
    gain = num(r.get(f"stab_gap/{dm}")) if dm else None
    low_gain = low_gain + 1 if gain is not None and gain < cfg.eps_d else 0
    if reg_g is not None and reg_g > cfg.tau_g:
        return "stop: general regression", low_gain
    if gap_s is not None and -gap_s > cfg.tau_s:
        return "stop: safety regression", low_gain
    if gap_f is not None and -gap_f > cfg.tau_b:
        return "stop: behavior regression", low_gain
    if low_gain >= cfg.stop_patience:
        return "stop: no domain gain", low_gain
    return "pass", low_gain


def cpt_choice(table: dict, run_dir: Path | None = None) -> tuple[dict | None, str]:
    """(row, reason) of the checkpoint the CPT gates alone pick from a gate table (``octo eval --select``), among
    checkpoints retention kept: the highest J among the Pareto-optimal checkpoints that pass the stop rule."""
    rows = [r for r in table["rows"] if r.get("checkpoint")
            and (run_dir is None or (Path(run_dir) / r["checkpoint"]).is_dir())]
    passing = [r for r in rows if r.get("verdict") in ("pass", "reference")]
    front = [r for r in passing if r.get("pareto")]
    pool = front or passing
    scored = [r for r in pool if isinstance(r.get("J"), (int, float))]
    if not scored:
        if not rows:
            return None, "no saved checkpoint has gates"
        return None, (f"no checkpoint passes the stop rule ({len(rows)} evaluated); "
                      "loosen analysis.tau_g / tau_s / tau_b / eps_d or train differently")
    best = max(scored, key=lambda r: r["J"])
    where = "Pareto-optimal checkpoints" if front else "checkpoints (none is Pareto-optimal)"
    return best, (f"highest J ({best['J']:+.4f}) among the {len(pool)} {where} that pass the stop rule, "
                  f"reference {table['reference']}")


def relation_text(cpt: str | None, recommended: str, probed: list[str]) -> str:
    """One sentence relating the CPT-gate choice (``octo eval --select``) to the RL-readiness recommendation
    (``octo score`` / ``octo report``)."""
    ready = f"the readiness score (the probes: how each checkpoint learns under RL) recommends {recommended}"
    if cpt is None:
        return f"{ready}; the CPT gates choose no checkpoint."
    if cpt == recommended:
        return f"{ready}, the same checkpoint the CPT gates alone choose (`octo eval --select`): both views agree."
    why = ("it was not probed, so readiness cannot rank it" if cpt not in probed else
           f"readiness ranks it {probed.index(cpt) + 1} of {len(probed)}")
    return (f"{ready}, while the CPT gates alone (`octo eval --select`: perplexity, accuracy and stability gap of "
            f"the checkpoint as it is, before any RL) choose {cpt}; {why}. For which checkpoint to train with RL, "
            "follow readiness; the gate choice is the one to make without probes.")
