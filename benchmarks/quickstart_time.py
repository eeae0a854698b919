"""The quickstart's wall time, part by part, against the two baselines its speed comes from (issue 25).

    python benchmarks/quickstart_time.py [--recipe recipes/toy/quickstart.yaml] [--no-baselines] [--keep DIR]

Runs ``octo run`` on the recipe in a fresh run directory as a new user would (a subprocess), timestamps every line
it prints as the line arrives, and reads the parts from the ``stage NAME: start/done`` and ``probe ID: start/done``
lines: setup (world, tokenizer, the asset check), each stage, each probe (start to done, in its worker when
``probe.jobs`` > 1), the probes' wall time together, scoring and report. Then, in the same invocation:

- ``probes_one_at_a_time``: the same probes again, one at a time with every core (``--jobs 1``), in the finished
  run directory with its probes removed, so only the probes rerun;
- ``pretrain_from_scratch``: the pretrain stage of recipes/toy/scratch.yaml, which the shipped base model
  (octo/assets/toy-base) saves the quickstart.

Prints one JSON object. Quiet-machine figures are in the README; a busy machine is slower (``load_before``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PART = re.compile(r"\b(stage|probe) (\S+?): (start|done)\b")


def timed_run(args: list[str]) -> tuple[float, list[tuple[float, str]]]:
    """Run ``octo ARGS``; return its wall time and every output line with the seconds since start it arrived at."""
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "octo.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)
    lines = []
    for raw in proc.stdout:
        for line in raw.replace("\r", "\n").splitlines():
            lines.append((time.monotonic() - t0, line))
    if proc.wait():
        tail = "\n".join(line for _, line in lines[-20:])
        raise SystemExit(f"octo {' '.join(args)} failed (exit {proc.returncode}):\n{tail}")
    return time.monotonic() - t0, lines


def parts(lines: list[tuple[float, str]]) -> dict:
    """{"stage": {name: seconds}, "probe": {id: seconds}, "first": t, "last_stage_done": t, ...} from the lines."""
    start, out, marks = {}, {"stage": {}, "probe": {}}, {}
    for t, line in lines:
        m = PART.search(line)
        if m:
            kind, name, what = m.groups()
            if what == "start":
                start[(kind, name)] = t
            elif (kind, name) in start:
                out[kind][name] = round(t - start[(kind, name)], 1)
                marks[f"{kind}_last_done"] = t
            marks.setdefault(f"{kind}_first_start", start.get((kind, name), t))
    return {**out, **marks}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipe", default="recipes/toy/quickstart.yaml")
    ap.add_argument("--no-baselines", action="store_true", help="time the quickstart only")
    ap.add_argument("--keep", default=None, help="keep the run directory here (default: a temporary one)")
    args = ap.parse_args()

    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="octo-qs-"))
    run = Path(args.keep) if args.keep else tmp / "run"
    try:
        total, lines = timed_run(["run", args.recipe, "--run-dir", str(run)])
        p = parts(lines)
        result = {
            "recipe": args.recipe, "cores": os.cpu_count(), "load_before": round(load_before, 2),
            "target_s": 300, "total_s": round(total, 1),
            "setup_s": round(p.get("stage_first_start", 0.0), 1),
            "stages_s": p["stage"],
            "stages_total_s": round(p["stage_last_done"] - p["stage_first_start"], 1),
            "probes_s": p["probe"],
            "probes_wall_s": round(p["probe_last_done"] - p["stage_last_done"], 1),
            "scoring_and_report_s": round(total - p["probe_last_done"], 1),
        }
        print(json.dumps(result), file=sys.stderr, flush=True)
        if not args.no_baselines:
            shutil.copytree(run, tmp / "quickstart-result")
            for name in ("probes", "report", "scores.json"):
                path = run / name
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
            _, seq = timed_run(["run", args.recipe, "--run-dir", str(run), "--jobs", "1"])
            q = parts(seq)
            result["baseline_probes_one_at_a_time_wall_s"] = round(q["probe_last_done"] - q["probe_first_start"], 1)
            result["probes_speedup"] = round(result["baseline_probes_one_at_a_time_wall_s"]
                                             / result["probes_wall_s"], 2)
            _, scratch = timed_run(["cpt", "recipes/toy/scratch.yaml", "--stage", "pretrain", "--run-dir",
                                    str(tmp / "scratch")])
            result["baseline_pretrain_from_scratch_s"] = parts(scratch)["stage"]["pretrain"]
        print(json.dumps(result, indent=1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
