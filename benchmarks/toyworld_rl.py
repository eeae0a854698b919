"""Does RL visibly work in the toy world? The measured table of docs/toyworld.md.

    python benchmarks/toyworld_rl.py [--run-dir runs/toyworld-rl] [--seeds 0 1 2] [--control-seeds 0]
                                     [--doc docs/toyworld.md] [--ship DIR]

Trains the quickstart recipe's stages (recipes/toy/quickstart.yaml, plus one extra stage ``early``:
the pretrain stage stopped after 25 steps, a far-too-early checkpoint), then runs the quickstart's
own GRPO probe (``octo probe``, its settings unchanged) from:

============== ==========================================================================
stable         the stable checkpoint, once per ``--seeds`` seed (the claim: a gain)
random-init    a freshly initialised model (init: random, 0 steps)        (no gain)
early          the far-too-early checkpoint                                (no gain)
random-reward  the stable checkpoint with a random +-1 reward (``--control random``) (no gain)
lr-x10         the stable checkpoint at 10x the probe learning rate      (collapse)
decay-long     the Long branch (long-CoT decay mixture)      (OctoThinker: long, growing, unstable)
decay-short    the Short branch (short-CoT decay mixture)    (OctoThinker: short, stable)
============== ==========================================================================

Every control and branch runs once per ``--control-seeds`` seed. The gain of a row is held-out
sampled accuracy (temperature 1, every held-out problem, ``eval_samples`` samples each) at the
probe's last evaluation minus its step-0 evaluation, averaged over the row's seeds; its 95% CI is
a paired bootstrap over problems. Collapse is octo's own detector (octo.analysis.detectors) on the
probe's logs. Prints one JSON object and (re)writes ``--doc`` from it; ``--ship DIR`` also copies
the stable checkpoint to DIR with ``octo export`` (the checkpoint tests/probe/test_toy_rl.py uses).
Everything is resumable: a finished stage or probe is skipped on a rerun.
"""

from __future__ import annotations

import argparse
import json
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


def bench_recipe(run_dir: Path) -> Path:
    """The quickstart recipe with an ``early`` stage and this run directory, written beside it."""
    import yaml

    r = yaml.safe_load((REPO / "recipes/toy/quickstart.yaml").read_text())
    r["name"], r["run_dir"] = "toyworld-rl", str(run_dir)
    pre = r["cpt"]["stages"]["pretrain"]
    r["cpt"]["stages"]["early"] = {"init": "random", "mixture": dict(pre["mixture"]),
                                   "tokens": EARLY_STEPS * r["cpt"]["batch_tokens"],
                                   "schedule": dict(pre["schedule"])}
    path = run_dir.parent / f"{run_dir.name}.recipe.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(r, sort_keys=False))
    return path


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


def run_probe(recipe_path: Path, run_dir: Path, name: str, ckpt: Path, seed: int, extra: list[str]) -> dict:
    out = run_dir / "bench" / f"{name}.seed-{seed}"
    t0 = time.perf_counter()
    args = ["probe", str(ckpt), "--recipe", str(recipe_path), "--seed", str(seed), "--out", str(out), *extra]
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


def summarise(name: str, runs: list[dict]) -> dict:
    import numpy as np

    from octo.analysis.config import AnalysisConfig
    from octo.analysis.detectors import detect
    from octo.analysis.load import load_probe
    from octo.analysis.stats import mean_ci
    from octo.runio import read_json, read_jsonl

    deltas, starts, ends, events, lengths, walls, tokens = [], [], [], [], [], [], []
    for r in runs:
        evals = read_jsonl(r["dir"] / "evals.jsonl")
        first, last = evals[0], evals[-1]
        a, b = np.asarray(first["per_problem/sampled"]), np.asarray(last["per_problem/sampled"])
        deltas.append(b - a)
        starts.append(float(first["acc/sampled"]))
        ends.append(float(last["acc/sampled"]))
        events.append(sorted({e.detector for e in detect(load_probe(r["dir"]), AnalysisConfig())}))
        m = read_jsonl(r["dir"] / "metrics.jsonl")
        lens = [x["len/mean"] for x in m]
        lengths.append({
            "eval_len_start": first["len/mean"], "eval_len_end": last["len/mean"],
            "train_len_first5": float(np.mean(lens[:5])), "train_len_last5": float(np.mean(lens[-5:])),
            "train_len_max": float(np.max(lens)),
            "len_step_std": float(np.std(np.diff(lens))) if len(lens) > 2 else 0.0,
            "clip_ratio_mean": float(np.mean([x["clip_ratio"] for x in m])),
            "reward_first5": float(np.mean([x["reward/mean"] for x in m[:5]])),
            "reward_last5": float(np.mean([x["reward/mean"] for x in m[-5:]])),
        })
        walls.append(r["wall_s"])
        tokens.append(read_json(r["dir"] / "probe.json").get("rollout_tokens"))
    per_problem = np.mean(deltas, axis=0)
    gain = float(per_problem.mean())
    lo, hi = mean_ci(per_problem.tolist(), n_boot=2000, seed=0)
    gains = [float(d.mean()) for d in deltas]
    return {"name": name, "seeds": len(runs), "n_problems": int(len(per_problem)),
            "sampled_start": float(np.mean(starts)), "sampled_end": float(np.mean(ends)),
            "gain": gain, "ci95": [lo, hi], "gain_per_seed": gains,
            "gain_seed_std": float(np.std(gains, ddof=1)) if len(gains) > 1 else None,
            "events": events, "lengths": lengths, "wall_s": walls, "rollout_tokens": tokens}


def verdicts(rows: dict) -> list[dict]:
    """Each claim of the issue as a yes/no with its figure."""
    def ci_has_zero(r):
        return r["ci95"][0] <= 0 <= r["ci95"][1]

    out = []
    s = rows["stable"]
    out.append({"claim": "a probe from the stable checkpoint raises held-out sampled accuracy by >= 10 points, "
                         "95% CI excluding 0",
                "holds": s["gain"] >= 0.10 and s["ci95"][0] > 0,
                "figure": f"{s['gain'] * 100:+.1f} points, CI [{s['ci95'][0] * 100:+.1f}, {s['ci95'][1] * 100:+.1f}] "
                          f"over {s['seeds']} seeds; longest probe {max(s['wall_s']):.0f} s"})
    for key, what in (("random-init", "the random-init model"), ("early", "the far-too-early checkpoint"),
                      ("random-reward", "a random reward (negative control)")):
        r = rows[key]
        out.append({"claim": f"{what} shows no gain",
                    "holds": r["ci95"][1] < 0.10 and (ci_has_zero(r) or r["ci95"][1] < 0),
                    "figure": f"{r['gain'] * 100:+.1f} points, CI [{r['ci95'][0] * 100:+.1f}, "
                              f"{r['ci95'][1] * 100:+.1f}] (CI {'includes 0' if ci_has_zero(r) else 'excludes 0'})"})
    r = rows["lr-x10"]
    fired = all("collapse" in e for e in r["events"])
    out.append({"claim": "10x the learning rate collapses and octo's collapse detector fires",
                "holds": r["gain"] < 0 and fired,
                "figure": f"{r['sampled_start'] * 100:.1f}% -> {r['sampled_end'] * 100:.1f}% sampled; events "
                          f"{r['events']}"})
    lo, sh = rows["decay-long"], rows["decay-short"]

    def m(r, k):
        import numpy as np
        return float(np.mean([x[k] for x in r["lengths"]]))

    out.append({"claim": "Long-branch responses are longer than Short-branch responses",
                "holds": m(lo, "eval_len_start") > 1.5 * m(sh, "eval_len_start"),
                "figure": f"held-out mean length at step 0: long {m(lo, 'eval_len_start'):.0f}, short "
                          f"{m(sh, 'eval_len_start'):.0f} tokens"})
    out.append({"claim": "Long-branch lengths grow under RL",
                "holds": m(lo, "train_len_last5") > 1.1 * m(lo, "train_len_first5"),
                "figure": f"train len/mean first 5 steps {m(lo, 'train_len_first5'):.0f} -> last 5 "
                          f"{m(lo, 'train_len_last5'):.0f}"})
    out.append({"claim": "Short-branch lengths stay short and stable",
                "holds": abs(m(sh, "train_len_last5") - m(sh, "train_len_first5")) <= 0.2 * m(sh, "train_len_first5"),
                "figure": f"train len/mean first 5 steps {m(sh, 'train_len_first5'):.0f} -> last 5 "
                          f"{m(sh, 'train_len_last5'):.0f}"})
    out.append({"claim": "the Long branch is less stable than the Short branch (step-to-step length std, "
                         "clip ratio, events)",
                "holds": m(lo, "len_step_std") > m(sh, "len_step_std") and
                m(lo, "clip_ratio_mean") >= m(sh, "clip_ratio_mean"),
                "figure": f"length step std long {m(lo, 'len_step_std'):.1f} vs short {m(sh, 'len_step_std'):.1f}; "
                          f"clip ratio {m(lo, 'clip_ratio_mean'):.2f} vs {m(sh, 'clip_ratio_mean'):.2f}; events "
                          f"long {lo['events']} short {sh['events']}"})
    return out


def write_doc(path: Path, result: dict) -> None:
    rows, rec = result["rows"], result["recipe"]
    lines = [DOC_HEAD.format(**rec), "## Measured: probes\n",
             f"Command: `{result['command']}` (its probes ran {result['probe_s'] / 60:.0f} min in all on "
             f"{result['machine']}). Held-out sampled accuracy at temperature {rec['temperature']}, "
             f"{rows['stable']['n_problems']} problems x {rec['eval_samples']} samples; gain = last - step-0 "
             "evaluation; 95% CI = paired bootstrap over problems.\n",
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
    lines += ["\n## Measured: branches\n",
              "| probe from | eval len step 0 | eval len end | train len first 5 | last 5 | max | "
              "length step std | clip ratio | reward first 5 | last 5 |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name in ("stable", "decay-long", "decay-short"):
        for x in rows[name]["lengths"][:1]:
            lines.append(f"| {name} | {x['eval_len_start']:.0f} | {x['eval_len_end']:.0f} | {x['train_len_first5']:.0f} | "
                         f"{x['train_len_last5']:.0f} | {x['train_len_max']:.0f} | {x['len_step_std']:.1f} | "
                         f"{x['clip_ratio_mean']:.2f} | {x['reward_first5']:.2f} | {x['reward_last5']:.2f} |")
    lines += ["\n## Claims\n", "| claim | holds | figure |", "|---|---|---|"]
    for v in result["verdicts"]:
        lines.append(f"| {v['claim']} | {'yes' if v['holds'] else '**no**'} | {v['figure']} |")
    chance = 1 / (rec["max_number"] + 1)
    weak = [f"{name} ends at {rows[name]['sampled_end'] * 100:.1f}%" for name in ("random-init", "early")]
    lines.append(f"\nChance level: a model that always writes one boxed number in [0, {rec['max_number']}] "
                 f"answers about {chance * 100:.0f}% of the problems right by guessing; {' and '.join(weak)}. "
                 "Where those rows gain, RL taught them to write a boxed guess, not to solve problems: "
                 "a small answer space rewards guesses often enough for GRPO to learn the format.")
    lo = rows["decay-long"]
    ln = lo["lengths"][0]
    lines.append(f"\nThe Long branch starts at {lo['sampled_start'] * 100:.1f}% sampled accuracy (stable: "
                 f"{rows['stable']['sampled_start'] * 100:.1f}%, Short: {rows['decay-short']['sampled_start'] * 100:.1f}%): "
                 f"after {rec['decay_tokens']} decay tokens the 0.8M-parameter model imitates the long style "
                 f"(held-out answers of {ln['eval_len_start']:.0f} tokens) but loses track over it. Under the "
                 f"first stair's limit {ln['clip_ratio_mean'] * 100:.0f}% of its rollouts are cut, and GRPO shortens "
                 f"them ({ln['train_len_first5']:.0f} -> {ln['train_len_last5']:.0f} tokens) instead of growing them: "
                 "in this world long reasoning does not yet help, so the claim that Long lengths grow under RL "
                 "is not reproduced. Making long reasoning genuinely useful (problems a short answer cannot "
                 "solve, a longer Long decay) is the next change to the world.")
    lines.append("\n" + DOC_TAIL)
    path.write_text("\n".join(lines) + "\n")


DOC_HEAD = """# The toy world

*Generated by `python benchmarks/toyworld_rl.py`; do not edit by hand (the tables are its output).*

The toy world is octo's embedded default (`recipes/toy/quickstart.yaml`): a seeded generator of
arithmetic word problems and of eight training sources that stand in for OctoThinker's datasets
(octo/toyworld.py). It exists so that the whole loop (mid-training stages, branches, GRPO probes,
readiness scores) runs on a laptop CPU in minutes, and so that the probes in it behave like RL on
real models. This page says how it is built, why, and what was measured.

## Design, and why

- **Problems.** "Ann has 5 pens. Ann buys 3 more pens. Then Ann loses 2 pens. How many pens does Ann
  have now?": a start value and 1-{max_ops} operations, every number in [0, {max_number}]. The level
  (difficulty) is the number of operations. Numbers up to {max_number} (not 20 or 30) because a 0.8M
  parameter model must learn the arithmetic facts *and* to copy each operand from the question within
  a few minutes of CPU training. With numbers up to 20, 2M tokens of the same kind of data gave 34%
  greedy accuracy and 9% on 3-step problems: the arithmetic in the model's equations was right, the
  operands it copied from the question were not (measured while designing this world).
- **Two short solution forms in MegaMath-QA.** The toy MegaMath-QA source writes multi-step answers
  either as one expression (`5+3-2=6`) or as one equation per operation (`5+3=8`, `8-2=6`), half each.
  A tiny model cannot do several operations inside one token, so the one-line form is the
  error-prone one. The stable checkpoint samples both forms; GRPO learns to prefer the reliable one
  and to sharpen the arithmetic, which is the "RL amplifies a behaviour already in the mid-training
  data" effect reported for real models. This is what puts the stable checkpoint at the *edge of
  competence*: right often enough that most groups have reward spread, wrong often enough to gain.
- **Long-CoT sources** (toy OpenR1, AM-Distilled) write verbose reasoning: restating, checking each
  step backwards, slips followed by "Wait, that is not right. Let me redo it", recounts. Their
  solutions are 100-200 tokens against 15-40 for the short forms, so the Long branch answers at
  length and meets the max-length limit, as OctoThinker's Long branch does.
- **Model.** Llama, 3 layers, width 128, 4 heads of 32, FFN 384, untied embeddings: about 0.8M
  parameters. A 4x larger model (3.4M) learns less in the same CPU time (shared/FACTS.md).
- **Stages.** pretrain ({pretrain_tokens} tokens, cosine 2e-3 -> 1e-3) -> stable ({stable_tokens} tokens at
  constant 1e-3) -> three decay branches ({decay_tokens} tokens each, cosine to 5e-4) with seed 004's Table 5
  mixtures. The toy stable stage carries more QA ({stable_qa:.0%}) than OctoThinker's "small amount of
  synthetic data": with less, the model had not learnt the answer format and the multi-step skill by the
  end of the stage.
- **Probe.** GRPO (TRL, loss {loss_type}, beta {beta}), {prompts_per_step} prompts x {num_generations} completions
  per step, {steps} steps, learning rate {lr:g} (constant), temperature {temperature}, max length stair {stairs}.
  The learning rate is the one setting that matters most: on the previous toy world 2e-5 left the reward
  flat over 40 steps (shared/FACTS.md), and 10x {lr:g} collapses the model (measured below). With Adam every
  parameter moves by about the learning rate per step whatever its gradient, so on a sub-million-parameter
  model the usable window is narrow.
"""

DOC_TAIL = """## Notes

- The random-reward control does not just fail to gain: it loses accuracy. Random rewards give every
  group reward spread, so every step applies a full-size Adam update in a random direction; the real
  reward leaves about half the groups without spread (no gradient) and its updates point somewhere.
  The loss measures how fast noise alone erodes the model at this learning rate.
- What the toy world does not reproduce is written in the Claims table as **no**, with its figure; it is
  not tuned away.
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", default=str(REPO / "runs/toyworld-rl"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--control-seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--doc", default=str(REPO / "docs/toyworld.md"))
    ap.add_argument("--ship", default=None, help="export the stable checkpoint here (octo export)")
    args = ap.parse_args()
    t_start = time.perf_counter()
    run_dir = Path(args.run_dir).resolve()
    recipe_path = bench_recipe(run_dir)
    octo("cpt", str(recipe_path))

    import yaml

    r = yaml.safe_load(recipe_path.read_text())
    p = r["probe"]
    stable = final_checkpoint(run_dir, "stable")
    plan = [("stable", stable, args.seeds, []),
            ("random-init", random_init_checkpoint(run_dir, recipe_path), args.control_seeds, []),
            ("early", final_checkpoint(run_dir, "early"), args.control_seeds, []),
            ("random-reward", stable, args.control_seeds, ["--control", "random"]),
            ("lr-x10", stable, args.control_seeds, ["--set", f"probe.lr={p['lr'] * 10:g}"]),
            ("decay-long", final_checkpoint(run_dir, "decay-long"), args.control_seeds, []),
            ("decay-short", final_checkpoint(run_dir, "decay-short"), args.control_seeds, [])]
    rows = {}
    for name, ckpt, seeds, extra in plan:
        runs = [run_probe(recipe_path, run_dir, name, ckpt, s, extra) for s in seeds]
        rows[name] = summarise(name, runs)
        print(json.dumps({k: rows[name][k] for k in ("name", "sampled_start", "sampled_end", "gain", "ci95",
                                                     "events")}), file=sys.stderr, flush=True)
    st = r["cpt"]["stages"]
    rec = {"max_ops": r["world"]["max_ops"], "max_number": r["world"]["max_number"],
           "pretrain_tokens": f"{st['pretrain']['tokens']:,}", "stable_tokens": f"{st['stable']['tokens']:,}",
           "decay_tokens": f"{st['decay-long']['tokens']:,}", "stable_qa": st["stable"]["mixture"]["qa-megamath"],
           **{k: p[k] for k in ("loss_type", "beta", "prompts_per_step", "num_generations", "steps", "lr",
                                "temperature", "eval_samples")},
           "stairs": " -> ".join(f"{v} (step {k})" for k, v in p["max_len"]["stairs"].items())}
    cmd = "python benchmarks/toyworld_rl.py" + "".join(
        f" {flag} {' '.join(map(str, val))}" for flag, val, default in
        (("--seeds", args.seeds, [0, 1, 2]), ("--control-seeds", args.control_seeds, [0])) if val != default)
    result = {"command": cmd, "machine": f"{os.cpu_count()} CPU cores, no GPU", "recipe": rec,
              "rows": rows, "total_s": time.perf_counter() - t_start,
              "probe_s": sum(w for row in rows.values() for w in row["wall_s"])}
    result["verdicts"] = verdicts(rows)
    if args.doc:
        write_doc(Path(args.doc), result)
    if args.ship:
        ship = Path(args.ship)
        shutil.rmtree(ship, ignore_errors=True)
        octo("export", str(stable), str(ship))
    print(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
