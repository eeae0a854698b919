"""Which solution form RL selects in the toy world: the share and mean reward of each answer form over a run.

    python benchmarks/answer_forms.py RUN_DIR [--runs 'validation/full/*'] [--tenths 1 5 10]

For every run directory under RUN_DIR matching ``--runs`` (a glob; each holds a GRPO run's ``samples.jsonl``, the
``probe.log_samples`` completions logged per step), the completions of each chosen tenth of its steps (1 = the first
tenth, 10 = the last) are sorted by the toy world's answer form (octo.toyworld.answer_form: ``column``, the column
procedure of the Long sources; ``places``, one sum per place; ``direct``, the sum at once; ``other``), and each form
gets its share of the completions and their mean reward. Prints one JSON object, ``{run: {tenth: {...}}}``, a run
named by its directory (by its path under RUN_DIR where two matched directories share a name: ``'*/probe'``).

It says why a branch ends where it does (docs/toyworld.md, v8): decay-hybrid's rollouts start mostly in the
``places`` form of its short sources, and RL drops the rarer column procedure, so Hybrid ends as a Short branch.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def tenth_steps(k: int, steps: int) -> tuple[int, int]:
    """The first and last step (1-based) of tenth ``k`` (1-10) of a run of ``steps`` steps; first > last where a run
    of fewer than 10 steps has no step in that tenth (its last tenth always holds its last step)."""
    return (k - 1) * steps // 10 + 1, k * steps // 10


def forms_by_tenth(samples: list[dict], steps: int, tenths: list[int]) -> dict:
    """Per chosen tenth: its steps, the number of completions, and each form's share and mean reward."""
    from octo.toyworld import ANSWER_FORMS, answer_form

    out = {}
    for k in tenths:
        lo, hi = tenth_steps(k, steps)
        rows = [(answer_form(s["completion"]), s["reward"]) for s in samples if lo <= s["step"] <= hi]
        n = Counter(f for f, _ in rows)
        out[str(k)] = {
            "steps": [lo, hi] if lo <= hi else [], "completions": len(rows),
            "forms": {f: {"share": round(n[f] / len(rows), 3),
                          "reward": round(sum(r for g, r in rows if g == f) / n[f], 3)}
                      for f in ANSWER_FORMS if n[f]}}
    return out


def run_steps(run: Path, samples: list[dict]) -> int:
    """The run's planned steps (probe.json), else the last step it logged."""
    from octo.errors import OctoError
    from octo.runio import PROBE_META_FILE, read_json

    try:
        return int(read_json(run / PROBE_META_FILE)["steps"])
    except (OctoError, ValueError, KeyError, TypeError):
        return max(int(s["step"]) for s in samples)


def read_samples(run: Path) -> list[dict]:
    """The run's logged completions (samples.jsonl, a cut last line skipped): step, completion and reward."""
    from octo.runio import SAMPLES_FILE, iter_jsonl

    return [{"step": int(row["step"]), "completion": str(row["completion"]), "reward": float(row["reward"])}
            for row in iter_jsonl(run / SAMPLES_FILE)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="answer_forms.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", type=Path, help="an octo run directory")
    ap.add_argument("--runs", default="validation/full/*",
                    help="glob of GRPO run directories under RUN_DIR (default: the validation's full RL runs)")
    ap.add_argument("--tenths", type=int, nargs="+", default=[1, 5, 10], choices=range(1, 11), metavar="K",
                    help="which tenths of each run's steps to report, 1-10 (default: 1 5 10)")
    args = ap.parse_args(argv)
    runs = sorted(Path(p) for p in glob.glob(os.path.join(str(args.run_dir), args.runs))
                  if (Path(p) / "samples.jsonl").is_file())
    if not runs:
        ap.error(f"no run directory with a samples.jsonl matches {args.runs!r} under {args.run_dir}; "
                 "pass --runs with the glob of your runs (e.g. 'probes/*')")
    from octo.errors import OctoError

    out = {}
    names = [run.name for run in runs]
    for run in runs:
        try:
            samples = read_samples(run)
        except OctoError as err:   # a damaged line before the last
            ap.error(str(err))
        except (KeyError, TypeError, ValueError) as err:
            ap.error(f"{run / 'samples.jsonl'} has a row that is not a logged sample ({type(err).__name__}: {err}); "
                     "pass --runs with the glob of octo's GRPO run directories")
        if samples:
            # a run is named by its directory, or by its path under RUN_DIR where the glob matches two of that name
            name = run.name if names.count(run.name) == 1 else str(run.relative_to(args.run_dir))
            out[name] = forms_by_tenth(samples, run_steps(run, samples), sorted(set(args.tenths)))
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
