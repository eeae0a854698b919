"""Does RL in the toy world behave like RL after real mid-training? The measured tables of docs/toyworld.md.

    python benchmarks/toyworld_rl.py [--run-dir runs/toyworld-rl] [--seeds 0 1 2] [--control-seeds 0]
                                     [--full-seeds 0] [--doc docs/toyworld.md] [--ship DIR] [--set KEY=VALUE ...]

Trains the stages of recipes/toy/scratch.yaml (the quickstart from random init, with the pretrain stage that
the quickstart takes from the shipped base model), plus one extra stage ``early``: that pretrain stage stopped
after 25 steps, a far-too-early checkpoint. Then runs the recipe's own GRPO probe (``octo probe``, its settings
unchanged) from:

============== ==========================================================================
stable         the stable checkpoint, once per ``--seeds`` seed (the claim: a gain)
random-init    a freshly initialised model (init: random, 0 steps)        (no gain)
early          the far-too-early checkpoint                                (no gain)
random-reward  the stable checkpoint with a random +-1 reward (``--control random``) (no gain)
lr-x10         the stable checkpoint at 10x the probe learning rate      (collapse)
decay-long     the Long branch (long-CoT decay mixture)
decay-short    the Short branch (short-CoT decay mixture)
decay-hybrid   the Hybrid branch
============== ==========================================================================

and, once per ``--full-seeds`` seed, a *full* RL run from each branch with recipes/toy/validation.yaml's full-run
settings (``validation.full_steps`` steps, the full length stair, ``validation.full_eval_every`` and
``full_eval_steps``): the comparison OctoThinker makes (seed 004: Long starts lowest, its lengths grow, it ends
highest).

Every control and branch probe runs once per ``--control-seeds`` seed. The gain of a probe row is held-out
sampled accuracy (temperature 1, every held-out problem, ``eval_samples`` samples each) at the probe's last
evaluation minus its step-0 evaluation, averaged over the row's seeds; its 95% CI is a paired bootstrap over
problems. A full run's accuracy is the validation's truth: the mean of greedy and sampled accuracy. Collapse
is octo's own detector (octo.analysis.detectors) on the probe's logs. Prints one JSON object and (re)writes
``--doc`` from it; ``--ship DIR`` also copies the stable checkpoint to DIR with ``octo export`` (the
checkpoint tests/probe/test_toy_rl.py uses). ``--set KEY=VALUE`` (repeatable) overrides a key of the bench recipe,
e.g. ``--set model.num_layers=4`` for recipes/toy/validation.yaml's model; use its own ``--run-dir`` and ``--doc``.
Everything is resumable: a finished stage or run is skipped.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

EARLY_STEPS = 25
BRANCHES = ("decay-long", "decay-short", "decay-hybrid")


def bench_recipe(run_dir: Path, sets: list[str] = ()) -> Path:
    """recipes/toy/scratch.yaml with an ``early`` stage, this run directory and the ``sets`` overrides, written
    beside it (the quickstart itself starts from the shipped base model, so it has no pretrain stage to stop
    early). A bad override raises octo's OctoError before anything is written."""
    import yaml

    from octo.config import parse_recipe
    from octo.schema import apply_overrides

    r = yaml.safe_load((REPO / "recipes/toy/scratch.yaml").read_text())
    r["name"], r["run_dir"] = "toyworld-rl", str(run_dir)
    pre = r["cpt"]["stages"]["pretrain"]
    r["cpt"]["stages"]["early"] = {"init": "random", "mixture": dict(pre["mixture"]),
                                   "tokens": EARLY_STEPS * r["cpt"]["batch_tokens"],
                                   "schedule": dict(pre["schedule"])}
    r = apply_overrides(r, list(sets))
    parse_recipe(copy.deepcopy(r))
    path = run_dir.parent / f"{run_dir.name}.recipe.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(r, sort_keys=False))
    return path


def full_settings() -> dict:
    """recipes/toy/validation.yaml's full-run settings, as ``--set`` overrides of the probe."""
    import yaml

    v = yaml.safe_load((REPO / "recipes/toy/validation.yaml").read_text())["validation"]
    stairs = v["full_max_len"]["stairs"]
    return {"steps": v["full_steps"], "eval_every": v["full_eval_every"], "save_every": v["full_save_every"],
            "stairs": stairs,
            "overrides": [f"probe.steps={v['full_steps']}", f"probe.eval_every={v['full_eval_every']}",
                          f"probe.eval_steps={list(v.get('full_eval_steps') or [])}",
                          f"probe.save_every={v['full_save_every']}",
                          "probe.max_len.stairs={" + ", ".join(f"{k}: {x}" for k, x in stairs.items()) + "}"]}


def octo(*args: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "octo.cli", *args], check=True, cwd=REPO)
    return time.perf_counter() - t0


def final_checkpoint(run_dir: Path, stage: str) -> Path:
    done = json.loads((run_dir / "cpt" / stage / "DONE.json").read_text())
    return run_dir / done["final_checkpoint"]


def random_init_checkpoint(run_dir: Path, recipe_path: Path) -> Path:
    """A freshly initialised toy model (the recipe's model and tokenizer, seed 0), saved once."""
    out = run_dir / "bench" / "random-init-model"
    if (out / "config.json").exists():
        return out
    from octo.config import load_recipe
    from octo.context import RunContext
    from octo.model import build_toy_model

    recipe = load_recipe(recipe_path)
    ctx = RunContext(recipe)
    model = build_toy_model(recipe.model, ctx.tokenizer, recipe.seed)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    ctx.tokenizer.save_pretrained(tmp)
    tmp.rename(out)
    return out


def run_probe(recipe_path: Path, run_dir: Path, name: str, ckpt: Path, seed: int, extra: list[str],
              sets: list[str] = ()) -> dict:
    out = run_dir / "bench" / f"{name}.seed-{seed}"
    t0 = time.perf_counter()
    args = ["probe", str(ckpt), "--recipe", str(recipe_path), "--seed", str(seed), "--out", str(out), *extra]
    for s in sets:
        args += ["--set", s]
    if any(a.startswith("probe.lr=") for a in extra):
        # another learning rate is another recipe: its own run directory (same world, same checkpoint)
        args += ["--run-dir", str(run_dir / "bench" / "run-lr-x10")]
    if not (out / "DONE.json").exists():
        octo(*args)
    wall = time.perf_counter() - t0
    timing = out / "bench-wall.json"
    if not timing.exists() or wall > 5:      # keep the first real run's wall time
        timing.write_text(json.dumps({"wall_s": wall}))
    return {"dir": out, "wall_s": json.loads(timing.read_text())["wall_s"]}


def per_level(evals_row: dict) -> dict:
    """Combined (greedy and sampled) accuracy per difficulty level of one evaluation."""
    import numpy as np

    lv = np.asarray(evals_row["per_problem/level"])
    comb = (np.asarray(evals_row["per_problem/greedy"], float) + np.asarray(evals_row["per_problem/sampled"])) / 2
    return {int(k): float(comb[lv == k].mean()) for k in sorted(set(lv.tolist()))}


def summarise(name: str, runs: list[dict]) -> dict:
    import numpy as np

    from octo.analysis.config import AnalysisConfig
    from octo.analysis.detectors import detect
    from octo.analysis.load import load_probe
    from octo.analysis.stats import mean_ci
    from octo.runio import read_json, read_jsonl

    deltas, starts, ends, events, lengths, walls, tokens = [], [], [], [], [], [], []
    comb_start, comb_end, comb_per, levels_start, levels_end, curves = [], [], [], [], [], []
    for r in runs:
        evals = read_jsonl(r["dir"] / "evals.jsonl")
        first, last = evals[0], evals[-1]
        a, b = np.asarray(first["per_problem/sampled"]), np.asarray(last["per_problem/sampled"])
        deltas.append(b - a)
        starts.append(float(first["acc/sampled"]))
        ends.append(float(last["acc/sampled"]))
        comb_start.append((first["acc"] + first["acc/sampled"]) / 2)
        comb_end.append((last["acc"] + last["acc/sampled"]) / 2)
        comb_per.append((np.asarray(last["per_problem/greedy"], float) + b) / 2)
        levels_start.append(per_level(first))
        levels_end.append(per_level(last))
        curves.append([{"step": e["step"], "acc": (e["acc"] + e["acc/sampled"]) / 2, "len": e["len/mean"],
                        "clip": e["clip_ratio"]} for e in evals])
        events.append(sorted({e.detector for e in detect(load_probe(r["dir"]), AnalysisConfig())}))
        m = read_jsonl(r["dir"] / "metrics.jsonl")
        lens = [x["len/mean"] for x in m]
        fifth = max(1, len(m) // 10)
        lengths.append({
            "eval_len_start": first["len/mean"], "eval_len_end": last["len/mean"],
            "eval_clip_start": first["clip_ratio"], "eval_clip_end": last["clip_ratio"],
            "train_len_first": float(np.mean(lens[:fifth])), "train_len_last": float(np.mean(lens[-fifth:])),
            "train_len_max": float(np.max(lens)),
            "len_step_std": float(np.std(np.diff(lens))) if len(lens) > 2 else 0.0,
            "clip_ratio_mean": float(np.mean([x["clip_ratio"] for x in m])),
            "reward_first": float(np.mean([x["acc"] for x in m[:fifth]])),
            "reward_last": float(np.mean([x["acc"] for x in m[-fifth:]])),
            "limit_first": m[0]["max_len"], "limit_last": m[-1]["max_len"],
        })
        walls.append(r["wall_s"])
        tokens.append(read_json(r["dir"] / "probe.json").get("rollout_tokens"))
    per_problem = np.mean(deltas, axis=0)
    gain = float(per_problem.mean())
    lo, hi = mean_ci(per_problem.tolist(), n_boot=2000, seed=0)
    gains = [float(d.mean()) for d in deltas]
    return {"name": name, "seeds": len(runs), "n_problems": int(len(per_problem)),
            "sampled_start": float(np.mean(starts)), "sampled_end": float(np.mean(ends)),
            "combined_start": float(np.mean(comb_start)), "combined_end": float(np.mean(comb_end)),
            "per_problem_combined_end": np.mean(comb_per, axis=0).tolist(),
            "levels_start": {k: float(np.mean([x[k] for x in levels_start])) for k in levels_start[0]},
            "levels_end": {k: float(np.mean([x[k] for x in levels_end])) for k in levels_end[0]},
            "curves": curves,
            "gain": gain, "ci95": [lo, hi], "gain_per_seed": gains,
            "gain_seed_std": float(np.std(gains, ddof=1)) if len(gains) > 1 else None,
            "events": events, "lengths": lengths, "wall_s": walls, "rollout_tokens": tokens}


def _m(r: dict, k: str) -> float:
    return float(sum(x[k] for x in r["lengths"]) / len(r["lengths"]))


def diff_ci(a: dict, b: dict) -> list[float]:
    """95% CI of full-RL final accuracy a - b (paired bootstrap over the shared held-out problems)."""
    from octo.analysis.stats import mean_ci

    d = [x - y for x, y in zip(a["per_problem_combined_end"], b["per_problem_combined_end"])]
    return mean_ci(d, n_boot=2000, seed=0)


def verdicts(rows: dict, full: dict) -> list[dict]:
    """Each claim as a yes/no with its figure."""
    def ci_has_zero(r):
        return r["ci95"][0] <= 0 <= r["ci95"][1]

    def pts(r):
        return f"{r['gain'] * 100:+.1f} points, CI [{r['ci95'][0] * 100:+.1f}, {r['ci95'][1] * 100:+.1f}]"

    out = []
    s = rows["stable"]
    out.append({"claim": "a probe from the stable checkpoint raises held-out sampled accuracy by >= 10 points, "
                         "95% CI excluding 0",
                "holds": s["gain"] >= 0.10 and s["ci95"][0] > 0,
                "figure": f"{pts(s)} over {s['seeds']} seeds; longest probe {max(s['wall_s']):.0f} s"})
    for key, what in (("random-init", "the random-init model"), ("early", "the far-too-early checkpoint"),
                      ("random-reward", "a random reward (negative control)")):
        r = rows[key]
        out.append({"claim": f"{what} gains nothing (gain CI includes 0 or lies below it)",
                    "holds": ci_has_zero(r) or r["ci95"][1] < 0,
                    "figure": f"{pts(r)} (CI {'includes 0' if ci_has_zero(r) else 'excludes 0'})"})
    r = rows["lr-x10"]
    fired = all("collapse" in e for e in r["events"])
    out.append({"claim": "10x the learning rate collapses and octo's collapse detector fires",
                "holds": r["gain"] < 0 and fired,
                "figure": f"{r['sampled_start'] * 100:.1f}% -> {r['sampled_end'] * 100:.1f}% sampled; events "
                          f"{r['events']}"})
    lo, sh, hy = (rows[b] for b in BRANCHES)
    out.append({"claim": "Long-branch responses are at least 1.5x as long as Short-branch responses "
                         "(probe step 0, under the probe's limit)",
                "holds": _m(lo, "eval_len_start") > 1.5 * _m(sh, "eval_len_start"),
                "figure": f"held-out mean length at step 0: long {_m(lo, 'eval_len_start'):.0f}, short "
                          f"{_m(sh, 'eval_len_start'):.0f} tokens"})
    out.append({"claim": "the Long branch starts below the Short branch (probe step-0 held-out accuracy) because "
                         "its answers meet the first length limit",
                "holds": lo["combined_start"] < sh["combined_start"] and
                _m(lo, "eval_clip_start") > _m(sh, "eval_clip_start"),
                "figure": f"step-0 accuracy long {lo['combined_start']:.3f} vs short {sh['combined_start']:.3f}; "
                          f"share of greedy answers cut at the probe's limit {lo['lengths'][0]['limit_last']}: long "
                          f"{_m(lo, 'eval_clip_start'):.2f}, short {_m(sh, 'eval_clip_start'):.2f}"})
    if not full:
        return out
    fl, fs, fh = (full[b] for b in BRANCHES)
    out.append({"claim": "Long-branch lengths grow under full RL (the full stair)",
                "holds": _m(fl, "train_len_last") > 1.1 * _m(fl, "train_len_first"),
                "figure": f"train len/mean first tenth of steps {_m(fl, 'train_len_first'):.0f} (limit "
                          f"{fl['lengths'][0]['limit_first']}) -> last tenth {_m(fl, 'train_len_last'):.0f} (limit "
                          f"{fl['lengths'][0]['limit_last']}); held-out {_m(fl, 'eval_len_start'):.0f} -> "
                          f"{_m(fl, 'eval_len_end'):.0f}"})
    ci = diff_ci(fl, fs)
    out.append({"claim": "the Long branch ends full RL above the Short branch (final accuracy, CI of the "
                         "difference above 0)",
                "holds": ci[0] > 0,
                "figure": f"long {fl['combined_end']:.3f} vs short {fs['combined_end']:.3f}; difference CI "
                          f"[{ci[0]:+.3f}, {ci[1]:+.3f}] ({fl['seeds']} seed(s))"})
    lo_end, hi_end = sorted([fl["combined_end"], fs["combined_end"]])
    out.append({"claim": "the Hybrid branch ends full RL between Long and Short or above both",
                "holds": fh["combined_end"] >= lo_end,
                "figure": f"hybrid {fh['combined_end']:.3f} (long {fl['combined_end']:.3f}, short "
                          f"{fs['combined_end']:.3f})"})
    top = max(full.values(), key=lambda r: r["combined_end"])
    out.append({"claim": "no ceiling: no full-RL run ends above 0.90 mean accuracy",
                "holds": top["combined_end"] <= 0.90,
                "figure": f"highest: {top['name']} {top['combined_end']:.3f}; hardest level after full RL: "
                          + ", ".join(f"{r['name']} {r['levels_end'][max(r['levels_end'])]:.2f}" for r in full.values())})
    out.append({"claim": "Short-branch lengths stay short and stable under full RL (growth below x1.5)",
                "holds": _m(fs, "train_len_last") < 1.5 * _m(fs, "train_len_first"),
                "figure": f"train len/mean first tenth {_m(fs, 'train_len_first'):.0f} -> last tenth "
                          f"{_m(fs, 'train_len_last'):.0f}; step-to-step std {_m(fs, 'len_step_std'):.1f} "
                          f"(long {_m(fl, 'len_step_std'):.1f})"})
    return out


def write_doc(path: Path, result: dict) -> None:
    rows, full, rec = result["rows"], result["full"], result["recipe"]
    lines = [DOC_HEAD.format(command=result["command"], **rec), "## Measured: probes\n",
             f"Command: `{result['command']}` (its probes ran {result['probe_s'] / 60:.0f} min in all, "
             + (f"its full runs {result['full_s'] / 60:.0f} min, " if full else
                "no full RL runs (`--full-seeds` with no seed: the claims about full RL are left out; "
                "`octo validate recipes/toy/validation.yaml` runs them on the same stages, at 5 layers), ")
             + f"on {result['machine']}). Held-out sampled accuracy at temperature "
             f"{rec['temperature']}, {rows['stable']['n_problems']} problems x {rec['eval_samples']} samples, "
             f"evaluated at the probe's largest limit ({rec['probe_max']} tokens); gain = last - step-0 evaluation; "
             "95% CI = paired bootstrap over problems.\n",
             "| probe from | seeds | sampled acc start | end | gain (points) | 95% CI | detector events | wall s |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        ev = "; ".join(",".join(e) or "-" for e in r["events"])
        lines.append(f"| {name} | {r['seeds']} | {r['sampled_start']:.3f} | {r['sampled_end']:.3f} | "
                     f"{r['gain'] * 100:+.1f} | [{r['ci95'][0] * 100:+.1f}, {r['ci95'][1] * 100:+.1f}] | {ev} | "
                     f"{max(r['wall_s']):.0f} |")
    s = rows["stable"]
    if s["gain_seed_std"] is not None:
        lines.append(f"\nRun-to-run noise at this size: the stable probe's gain per seed is "
                     f"{', '.join(f'{g * 100:+.1f}' for g in s['gain_per_seed'])} points "
                     f"(std {s['gain_seed_std'] * 100:.1f}).\n")
    levels = sorted(rows["stable"]["levels_start"])
    lines += ["\n## Measured: accuracy per difficulty level\n",
              "Mean of greedy and sampled accuracy per level (level = digits of each addend), at step 0 and at the "
              "last evaluation. Probes are evaluated at the probe's largest limit "
              f"({rec['probe_max']} tokens), full runs at the full stair's ({rec['full_max']}).\n",
              "| run | " + " | ".join(f"L{lv} start | end" for lv in levels) + " | all start | end |",
              "|---|" + "---|---|" * len(levels) + "---|---|"]
    for kind, table in (("probe", rows), ("full RL", full)):
        for name, r in table.items():
            cells = " | ".join(f"{r['levels_start'][lv]:.2f} | {r['levels_end'][lv]:.2f}" for lv in levels)
            lines.append(f"| {kind} {name} | {cells} | {r['combined_start']:.3f} | {r['combined_end']:.3f} |")
    lines += ["\n## Measured: branches\n",
              "Training response length (`len/mean` of the rollouts) in the first and last tenth of the steps, with the "
              "length limit then; held-out length and greedy clip ratio at step 0 and at the end; training accuracy "
              "(the correctness reward) in the first and last tenth.\n",
              "| run | train len first (limit) | last (limit) | max | length step std | held-out len start | end | "
              "clip start | end | train acc first | last | events |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for kind, table in (("probe", {k: rows[k] for k in ("stable", *BRANCHES)}), ("full RL", full)):
        for name, r in table.items():
            x = r["lengths"][0]
            lines.append(f"| {kind} {name} | {x['train_len_first']:.0f} ({x['limit_first']}) | "
                         f"{x['train_len_last']:.0f} ({x['limit_last']}) | {x['train_len_max']:.0f} | "
                         f"{x['len_step_std']:.1f} | {x['eval_len_start']:.0f} | {x['eval_len_end']:.0f} | "
                         f"{x['eval_clip_start']:.2f} | {x['eval_clip_end']:.2f} | {x['reward_first']:.2f} | "
                         f"{x['reward_last']:.2f} | {','.join(r['events'][0]) or '-'} |")
    if full:
        lines += ["\nFull-RL held-out accuracy (mean of greedy and sampled) at each evaluation:\n",
                  "| run | " + " | ".join(f"step {c['step']}" for c in next(iter(full.values()))["curves"][0]) + " |",
                  "|---|" + "---|" * len(next(iter(full.values()))["curves"][0])]
        for name, r in full.items():
            lines.append(f"| {name} | " + " | ".join(f"{c['acc']:.3f} ({c['len']:.0f} tok)" for c in r["curves"][0])
                         + " |")
    lines += ["\n## Claims\n", "| claim | holds | figure |", "|---|---|---|"]
    for v in result["verdicts"]:
        lines.append(f"| {v['claim']} | {'yes' if v['holds'] else '**no**'} | {v['figure']} |")
    lines.append("\n" + page_tail(path))
    path.write_text("\n".join(lines), encoding="utf-8")


DOC_HEAD = """# The toy world

*Generated by `{command}`; do not edit by hand (the tables are its output).*

The toy world is octo's embedded default (`recipes/toy/quickstart.yaml`): a seeded generator of
addition word problems and of eight training sources that stand in for OctoThinker's datasets
(octo/toyworld.py). It exists so that the whole loop (mid-training stages, branches, GRPO probes,
readiness scores) runs on a laptop CPU, and so that RL in it behaves like RL after real mid-training:
the mid-training data decides what RL can bring out. This page says how it is built, why, and what was
measured. World v1 (small-number multi-step problems) hit a ceiling, and long reasoning never paid in it
(docs/validation.md of that world); this is world v2 (issue 20).

## Design, and why

- **Problems.** "Ann has 4729 coins. Ann finds 1835 more coins. How many coins does Ann have now?":
  the level (difficulty) is the number of digits of both addends, {min_digits} to {max_digits}.
  Multi-digit answers leave no boxed-guess shortcut (world v1's random init gained a point by boxing a
  number in [0, 12]).
- **Why long reasoning pays.** A short answer writes the sum most significant digit first, which needs
  every carry before the first digit: small transformers do multi-digit addition reliably only with a
  digit-by-digit scratchpad (Nye et al. 2021, "Show Your Work"), and most reliably with one that makes each
  step local (Lee et al. 2023, "Teaching Arithmetic to Small Transformers"). The column procedure here
  re-writes the digits still to add on every line, so the column's two digits are always the last ones
  before a delimiter (a causal model cannot know a digit's place value while reading it), then writes the
  column sum with its carry and the answer digits so far: `472+183 c1 2+3+1=6 a64`. In design pilots
  (one run each, `octo cpt` on this world's draft) answers at once stayed at 0-5% greedy accuracy beyond
  one digit after 3.7M tokens, while 1.6M tokens of mostly column-procedure text took the same
  0.8M-parameter model from 0% to 93% on 2-5 digits.
- **Sources.** MegaMath-QA writes the sum at once or in a few steps, half each; OpenMathInstruct-2 writes
  the few steps (one sum per place, `tens 2+3+1=6`, without re-writing the digits: each line needs the k-th
  digit from the right, and the answer reads the column results back in reverse, so it works for a few
  digits and degrades with more); NuminaMath answers at once. The column procedure is written only by
  the Long sources, OpenR1-style (a preamble; {long_slip:.0%} of columns first get a wrong sum, then "Wait,
  that is not right" and the right one) or AM-style (restating, the procedure, two columns re-checked),
  and shown by math-web pages as worked examples ({mathweb_columns:.0%} of math-web items), so every stage has
  seen it but only a Long decay answers questions with it. Long answers are {long_len} tokens (one to
  {max_digits} digits) against {short_len} for the few-steps form.
- **Length limits: why the probe's limit binds and the full run's does not.** Probes and full runs
  evaluate at their schedule's largest limit (octo/probe/grpo.py). A probe is a short RL run, so it sees
  only the first stair of the full runs' schedule ({probe_stairs}), as a short run of OctoThinker's sees
  2K and never 8K. The full runs climb the whole stair ({full_stairs}); its last limit lets the Long
  answers of every level finish, the first cuts them from two digits on. So a Long checkpoint's step-0
  accuracy counts as wrong the answers that a full run can finish: the world poses the question a
  probe exists for (is a low start a bad checkpoint, or one whose answers do not fit yet?). Evaluating
  the probe at the full runs' last limit instead would show the Long answers finishing at step 0 and
  leave nothing for a readiness score to find that step-0 accuracy does not already show.
- **Model.** This page's runs: Llama, {num_layers} layers, width {hidden_size}, {num_heads} heads of {head_dim},
  FFN {intermediate_size}, untied embeddings, {params_m:.2f}M parameters. The quickstart's shipped base has 3
  layers, about 0.8M parameters (world v1's size; it learns the column procedure, see above). The validation
  experiment (recipes/toy/validation.yaml) uses 5 layers, about 1.2M, since v10: at 3 the Long branch copies the
  question's numbers into its procedure wrongly, at 4 the 7-digit level that only RL poses is not learned (below).
- **Stages.** pretrain ({pretrain_tokens} tokens, cosine 2e-3 -> 1e-3) -> stable ({stable_tokens} tokens at
  constant 1e-3) -> three decay branches ({decay_tokens} tokens each, cosine to 5e-4) with OctoThinker's Table 5
  mixtures.
- **Probe.** GRPO (TRL, loss {loss_type}, beta {beta}), {prompts_per_step} prompts x {num_generations} completions
  per step, {steps} steps, learning rate {lr:g} (constant), temperature {temperature}, max length {probe_stairs}.
"""

# The page's hand-written part: from this heading on, the pilot runs that chose the design and the notes. It lives only
# in docs/toyworld.md (the prose in this file drifted from the page before): regenerating a page keeps the part it
# has; a page without one gets a pointer to docs/toyworld.md's.
TAIL_HEADING = "## How the design was chosen"
TAIL_POINTER = TAIL_HEADING + """

The pilot runs that chose this world's design, and the notes, are in [docs/toyworld.md](toyworld.md) (not
regenerated by the benchmark).
"""


def page_tail(path: Path) -> str:
    """What follows the generated tables on the page at ``path``: its own hand-written part, or the pointer."""
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    return text[text.index(TAIL_HEADING):].rstrip("\n") + "\n" if TAIL_HEADING in text else TAIL_POINTER


def _token_lengths(run_dir: Path) -> tuple[str, str]:
    """Mean response tokens of the long-openr1 and qa-omi2 documents, easiest and hardest level."""
    from octo.data.templates import field_map, render
    from octo.model import load_tokenizer
    from octo.runio import read_jsonl

    tok = load_tokenizer(run_dir / "tokenizer")
    out = []
    for src in ("long-openr1", "qa-omi2"):
        by: dict[int, list[int]] = {}
        for r in read_jsonl(run_dir / "world" / f"{src}.jsonl")[:1000]:
            _, resp = render("QA", r, field_map("QA", {}))
            by.setdefault(r["level"], []).append(len(tok(resp)["input_ids"]))
        lo, hi = min(by), max(by)
        out.append(f"{sum(by[lo]) / len(by[lo]):.0f}-{sum(by[hi]) / len(by[hi]):.0f}")
    return out[0], out[1]


def _param_count(model_dir: Path) -> int:
    """Parameters of a saved model, from its safetensors headers."""
    from safetensors import safe_open

    n = 0
    for f in sorted(model_dir.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            for k in st.keys():
                shape = st.get_slice(k).get_shape()
                n += math.prod(shape)
    return n


def recipe_facts(r: dict, run_dir: Path, recipe_path: Path, fs: dict) -> dict:
    """The bench recipe's settings the page's design text states (DOC_HEAD's fields)."""
    st, w, m, p = r["cpt"]["stages"], r["world"], r["model"], r["probe"]
    long_len, short_len = _token_lengths(run_dir)

    def stair_text(stairs):
        return " -> ".join(f"{v} (step {k})" for k, v in stairs.items())

    return {**{k: m[k] for k in ("num_layers", "hidden_size", "num_heads", "intermediate_size")},
            "head_dim": m["hidden_size"] // m["num_heads"],
            "params_m": _param_count(random_init_checkpoint(run_dir, recipe_path)) / 1e6,
            "min_digits": w["min_digits"], "max_digits": w["max_digits"], "mathweb_columns": w["mathweb_columns"],
            "long_slip": w["long_slip"], "long_len": long_len, "short_len": short_len,
            "pretrain_tokens": f"{st['pretrain']['tokens']:,}", "stable_tokens": f"{st['stable']['tokens']:,}",
            "decay_tokens": f"{st['decay-long']['tokens']:,}",
            **{k: p[k] for k in ("loss_type", "beta", "prompts_per_step", "num_generations", "steps", "lr",
                                 "temperature", "eval_samples")},
            "probe_stairs": stair_text(p["max_len"]["stairs"]), "full_stairs": stair_text(fs["stairs"]),
            "probe_max": max(p["max_len"]["stairs"].values()), "full_max": max(fs["stairs"].values())}


def command_line(args: argparse.Namespace) -> str:
    """The command that regenerates the page: the options that differ from their defaults (not --run-dir)."""
    cmd = "python benchmarks/toyworld_rl.py" + "".join(
        f" {flag}" + "".join(f" {v}" for v in val) for flag, val, default in
        (("--seeds", args.seeds, [0, 1, 2]), ("--control-seeds", args.control_seeds, [0]),
         ("--full-seeds", args.full_seeds, [0])) if val != default) + "".join(f" --set {x}" for x in args.set)
    doc = Path(args.doc).resolve() if args.doc else None
    if doc and doc != (REPO / "docs/toyworld.md").resolve():
        cmd += f" --doc {doc.relative_to(REPO) if doc.is_relative_to(REPO) else doc}"
    return cmd


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", default=str(REPO / "runs/toyworld-rl"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--control-seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--full-seeds", type=int, nargs="*", default=[0],
                    help="seeds of the full RL runs from each branch (none: skip them)")
    ap.add_argument("--doc", default=str(REPO / "docs/toyworld.md"))
    ap.add_argument("--ship", default=None, help="export the stable checkpoint here (octo export)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a key of the bench recipe (repeatable), e.g. --set model.num_layers=4")
    args = ap.parse_args()
    if args.doc and not Path(args.doc).resolve().parent.is_dir():
        ap.error(f"--doc {args.doc}: its folder does not exist; create it or name a page in an existing one")
    t_start = time.perf_counter()
    run_dir = Path(args.run_dir).resolve()
    from octo.errors import OctoError

    try:
        recipe_path = bench_recipe(run_dir, args.set)
    except OctoError as e:
        ap.error(str(e))
    octo("cpt", str(recipe_path))

    import yaml

    r = yaml.safe_load(recipe_path.read_text())
    p = r["probe"]
    stable = final_checkpoint(run_dir, "stable")
    plan = [("stable", stable, args.seeds, []),
            ("random-init", random_init_checkpoint(run_dir, recipe_path), args.control_seeds, []),
            ("early", final_checkpoint(run_dir, "early"), args.control_seeds, []),
            ("random-reward", stable, args.control_seeds, ["--control", "random"]),
            ("lr-x10", stable, args.control_seeds, ["--set", f"probe.lr={p['lr'] * 10:g}"])]
    plan += [(b, final_checkpoint(run_dir, b), args.control_seeds, []) for b in BRANCHES]
    rows = {}
    for name, ckpt, seeds, extra in plan:
        runs = [run_probe(recipe_path, run_dir, name, ckpt, s, extra) for s in seeds]
        rows[name] = summarise(name, runs)
        print(json.dumps({k: rows[name][k] for k in ("name", "sampled_start", "sampled_end", "gain", "ci95",
                                                     "events")}), file=sys.stderr, flush=True)
    fs = full_settings()
    full = {}
    for b in BRANCHES if args.full_seeds else ():
        runs = [run_probe(recipe_path, run_dir, f"full-{b}", final_checkpoint(run_dir, b), s, [], fs["overrides"])
                for s in args.full_seeds]
        full[b] = summarise(b, runs)
        print(json.dumps({k: full[b][k] for k in ("name", "combined_start", "combined_end", "levels_end")}),
              file=sys.stderr, flush=True)
    rec = recipe_facts(r, run_dir, recipe_path, fs)
    cmd = command_line(args)
    result = {"command": cmd, "machine": f"{os.cpu_count()} CPU cores, no GPU", "recipe": rec,
              "rows": rows, "full": full, "total_s": time.perf_counter() - t_start,
              "probe_s": sum(w for row in rows.values() for w in row["wall_s"]),
              "full_s": sum(w for row in full.values() for w in row["wall_s"])}
    result["verdicts"] = verdicts(rows, full)
    if args.doc:
        write_doc(Path(args.doc), result)
    if args.ship:
        ship = Path(args.ship)
        shutil.rmtree(ship, ignore_errors=True)
        octo("export", str(stable), str(ship))
    print(json.dumps({k: v for k, v in result.items() if k not in ("rows", "full")}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
