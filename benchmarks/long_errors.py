"""Where a checkpoint's column-procedure answers go wrong, per level (issue 20, property 1c).

    python benchmarks/long_errors.py --run-dir RUN [--recipe recipes/toy/validation.yaml]
                                     [--stages decay-long decay-short] [--limit 256] [--per-level 40]

Greedy answers to level-balanced held-out problems at ``--limit`` tokens, through the probe's rollout backend,
for the final checkpoint of each stage. For every level: greedy accuracy (octo's math verifier), the share of
answers written as the column procedure, the share of those whose first line restates both of the question's
numbers right, and each answer's first error (octo.toyworld.procedure_error: copy, rewrite, carry, digits, sum,
answer_digits, lines, final, ok; no_procedure for a short answer). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def level_rows(problems: list[dict], texts: list[str], correct: list[int]) -> dict:
    """Per level: accuracy, procedure share, right-copy share of procedure answers, first-error counts."""
    from octo.toyworld import procedure_error

    by_level: dict[int, dict] = {}
    for p, text, ok in zip(problems, texts, correct):
        a, b = (int(x) for x in re.findall(r"\d+", p["question"])[:2])
        verdict = procedure_error(a, b, text)
        row = by_level.setdefault(p["level"], {"n": 0, "correct": 0, "errors": Counter()})
        row["n"] += 1
        row["correct"] += int(ok)
        row["errors"][verdict] += 1
    out = {}
    for level, row in sorted(by_level.items()):
        errs, n = row["errors"], row["n"]
        written = n - errs["no_procedure"]
        out[str(level)] = {"n": n, "acc": round(row["correct"] / n, 3), "procedure": round(written / n, 3),
                           "copied_right": round((written - errs["copy"]) / written, 3) if written else None,
                           "errors": dict(errs.most_common())}
    return out


def main() -> int:
    from octo.accuracy import evaluate_problems, select_problems
    from octo.config import load_recipe
    from octo.context import RunContext
    from octo.errors import OctoError
    from octo.model import load_model, load_tokenizer
    from octo.rollout import make_backend
    from octo.runio import STAGE_DONE_FILE, read_json
    from octo.verifiers import shared_pool

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--recipe", default=str(REPO / "recipes/toy/validation.yaml"))
    ap.add_argument("--stages", nargs="+", default=["decay-long", "decay-short"])
    ap.add_argument("--limit", type=int, default=256)
    ap.add_argument("--per-level", type=int, default=40)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a recipe override the run was made with (e.g. model.num_layers=4)")
    args = ap.parse_args()
    run = Path(args.run_dir)
    missing = [s for s in args.stages if not (run / "cpt" / s / STAGE_DONE_FILE).exists()]
    if missing:
        ap.error(f"{run} has no finished stage {', '.join(missing)}; run `octo cpt {args.recipe} --run-dir {run}` "
                 "first, or name stages it has with --stages")
    if args.limit < 1 or args.per_level < 1:
        ap.error("--limit and --per-level must be positive")
    try:
        recipe = load_recipe(args.recipe, [f"run_dir={run}", *args.set])
    except OctoError as e:
        ap.error(str(e))
    heldout = RunContext(recipe).problems(recipe.data.heldout)
    levels = len({p["level"] for p in heldout})
    problems = select_problems(heldout, args.per_level * levels)
    pool = shared_pool(recipe.verifier)
    out: dict[str, dict] = {}
    for stage in args.stages:
        ckpt = run / read_json(run / "cpt" / stage / STAGE_DONE_FILE)["final_checkpoint"]
        tok, model = load_tokenizer(ckpt), load_model(ckpt)
        model.eval()
        backend = make_backend(recipe.probe.rollout, tokenizer=tok, model=model, model_path=str(ckpt))
        try:   # the gates' and probes' own greedy evaluation, whose completions it keeps in "_greedy"
            res = evaluate_problems(backend, tok, problems, template=recipe.probe.prompt_template,
                                    max_new_tokens=args.limit, verifier=recipe.verifier, pool=pool, seed=0)
        finally:
            backend.close()
        texts = [c.text for c in res["_greedy"][0]]
        out[stage] = {"acc": round(res["acc"], 3),
                      "levels": level_rows(problems, texts, res["per_problem/greedy"])}
    print(json.dumps({"run_dir": str(run), "limit": args.limit, "problems": len(problems), "stages": out},
                     indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
