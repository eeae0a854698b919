"""Can this world judge a readiness score? Issue 20's properties of a toy world, read off a validation run.

Each property is yes, no or not measured (``holds`` True / False / None) with the figure it was read from:
the Long branch starts below Short and ends above it with its lengths grown, Hybrid ends between them or above
both, no checkpoint ends full RL at the ceiling, full RL separates most pairs beyond noise, enough checkpoints
are late bloomers, and the whole experiment fits its wall-time budget. The targets are the recipe's
``validation.world_targets`` (recorded in plan.json); the branches are ``validation.findings``.
"""

from __future__ import annotations

import dataclasses

from octo.analysis.config import AnalysisConfig, WorldTargetsConfig
from octo.analysis.score import CheckpointScore, difference


def _prop(key: str, claim: str, holds: bool | None, figure: str) -> dict:
    return {"key": key, "property": claim, "holds": holds, "figure": figure}


def _ci(d: dict) -> str:
    return f"{d['diff']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]"


def world_properties(result: dict, plan: dict, full_scores: dict[str, CheckpointScore],
                     cfg: AnalysisConfig) -> list[dict]:
    """The properties of issue 20 that a validation run measures (the controls are benchmarks/toyworld_rl.py's);
    ``full_scores`` are the full RL runs scored per checkpoint, whose final-accuracy draws the differences use."""
    t = {**dataclasses.asdict(WorldTargetsConfig()), **(plan.get("world_targets") or {})}
    f = plan.get("findings") or {}

    def final_diff(a: str, b: str) -> dict:   # a - b in full-RL final accuracy, with its bootstrap CI
        return difference(full_scores[a], full_scores[b], "final/acc", cfg)

    out = _branches(result, final_diff, f.get("long"), f.get("short"), f.get("hybrid"))
    return out + [_ceiling(result, t), _separation(result, t), _late(result, t), _cost(result, t)]


def _branches(result: dict, final_diff, long: str | None, short: str | None, hybrid: str | None) -> list[dict]:
    if not (long and short):
        return []
    rows, out = result["checkpoints"], []
    a0, b0 = rows[long]["start_acc"], rows[short]["start_acc"]
    out.append(_prop("long_starts_below", f"the Long branch ({long}) starts below Short ({short})", bool(a0 < b0),
                     f"step-0 held-out accuracy {a0:.3f} vs {b0:.3f} (the probes' step-0 evaluation, at "
                     f"{result['probe']['max_len']})"))
    gl, gs = rows[long]["length"]["growth"], rows[short]["length"]["growth"]
    out.append(_prop("long_lengths_grow", "its response lengths grow under full RL, more than Short's",
                     bool(gl > 1 and gl > gs), f"length growth x{gl:.2f} vs x{gs:.2f} (full runs, mean train length "
                                               "of the last tenth of steps over the first tenth)"))
    d = final_diff(long, short)
    out.append(_prop("long_ends_above", "it ends full RL above Short, beyond noise", bool(d["ci"][0] > 0),
                     f"final accuracy {rows[long]['full_final_acc']:.3f} vs {rows[short]['full_final_acc']:.3f}; "
                     f"Long - Short {_ci(d)}"))
    if hybrid:
        low = min((long, short), key=lambda s: rows[s]["full_final_acc"])
        d = final_diff(hybrid, low)
        out.append(_prop("hybrid", f"Hybrid ({hybrid}) ends between Short and Long or above both (above the lower "
                                   "of them, beyond noise)", bool(d["ci"][0] > 0),
                         f"final accuracy {rows[hybrid]['full_final_acc']:.3f}, Short "
                         f"{rows[short]['full_final_acc']:.3f}, Long {rows[long]['full_final_acc']:.3f}; Hybrid - "
                         f"{'Short' if low == short else 'Long'} {_ci(d)}"))
    return out


def _ceiling(result: dict, t: dict) -> dict:
    rows = result["checkpoints"]
    top = max(result["stages"], key=lambda s: rows[s]["full_final_acc"])
    m = rows[top]["full_final_acc"]
    return _prop("no_ceiling", f"no checkpoint's mean full-RL final accuracy is above {t['max_final_acc']:g}",
                 bool(m <= t["max_final_acc"]), f"highest {m:.3f} ({top})")


def _separation(result: dict, t: dict) -> dict:
    n = len(result["stages"])
    pairs, k = n * (n - 1) // 2, len(result["separated_pairs"])
    per_seed = result["separated_per_seed"]
    alone = (f"; each full-run seed alone (its held-out problems resampled, no seeds to resample) separates "
             f"{' and '.join(map(str, per_seed))}" if len(per_seed) > 1 else "")
    return _prop("separation", f"full RL separates at least {t['min_separated_share']:.0%} of checkpoint pairs "
                               "beyond noise", bool(pairs and k >= t["min_separated_share"] * pairs),
                 f"{k} of {pairs} pairs ({k / pairs:.0%}){alone}" if pairs else "no pairs")


def _late(result: dict, t: dict) -> dict:
    late, n = result["late_bloomers"]["checkpoints"], len(result["stages"])
    names = ", ".join(x["stage"] for x in late)
    return _prop("late_bloomers", f"at least {t['min_late_bloomers']} late bloomers among at least "
                                  f"{t['min_checkpoints']} checkpoints",
                 bool(len(late) >= t["min_late_bloomers"] and n >= t["min_checkpoints"]),
                 f"{len(late)} of {n}" + (f" ({names})" if names else ""))


def machine_text(m: dict | None) -> str:
    """Where an invocation ran (octo.validate.machine), as the page says it; '' where it recorded none (before octo
    recorded machines)."""
    if not m:
        return ""
    return (f"{m['cpus']} CPU cores ({m['cpu']}; {m['gflops_1thread']:g} GFLOP/s on one thread), "
            + (f"GPU {m['gpu']}" if m.get("gpu") else "no GPU"))


def _cost(result: dict, t: dict) -> dict:
    calls = result["invocations"]
    claim = f"the whole experiment takes at most {t['max_hours']:g} h"
    if not calls:
        return _prop("cost", claim, None, "no invocation recorded")
    done, total = sum(x["runs"] for x in calls), calls[-1]["of"]
    wall = sum(x["wall_s"] for x in calls)
    if done < total:
        return _prop("cost", claim, None,
                     f"not measured in full here: the recorded invocations ({wall / 60:.0f} min) executed {done} of "
                     f"the {total} GRPO runs; the others were made by an invocation killed before its first finished "
                     "run (or, before octo recorded each run, before its end) or copied from another directory")
    # the CPT stages: invocations recorded before octo recorded them cannot tell, so they are not questioned
    if all("stages_needed" in x for x in calls):
        trained = {s for x in calls for s in x["stages_trained"]}
        missing = [s for s in calls[-1]["stages_needed"] if s not in trained]
        if missing:
            return _prop("cost", claim, None,
                         f"not measured in full here: the recorded invocations ({wall / 60:.0f} min) executed all "
                         f"{total} GRPO runs, but the CPT of {len(missing)} of the "
                         f"{len(calls[-1]['stages_needed'])} stages ({', '.join(missing)}) was not trained by them "
                         "(copied from another directory, trained by `octo cpt`, or by an invocation killed before "
                         "its stages were done)")
    cut = sum(not x.get("complete", True) for x in calls)
    where = list(dict.fromkeys(machine_text(x.get("machine")) for x in calls if x.get("machine")))
    return _prop("cost", claim, bool(wall <= t["max_hours"] * 3600),
                 f"{wall / 60:.0f} min over {len(calls)} invocation(s) (CPT, gates and GRPO runs; not the analysis)"
                 + (f"; {cut} of them interrupted, counted to their last finished run" if cut else "")
                 + (f"; on {' and '.join(where)}" if where else ""))
