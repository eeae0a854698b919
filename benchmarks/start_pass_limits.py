"""Step-0 pass@1 and pass@k of a run's final CPT checkpoints at several response-length limits (issue 21).

    python benchmarks/start_pass_limits.py [--run-dir runs/quickstart] [--recipe recipes/toy/quickstart.yaml]
                                           [--limits 64 256] [--samples 16] [--problems 64]

The probe's step-0 sampling pass (start.jsonl) runs at the probe schedule's largest limit. In toy world v2 the
probe sees only the full runs' first stair (64 tokens), where most Long-branch answers are cut, so every step-0
predictor ranks the Long branch last although full RL makes it first (docs/toyworld.md). This measures the same
pass (octo.accuracy.start_pass: the same level-balanced held-out problems, temperature 1, one seed) at other
limits, for every stage of the recipe that has a final checkpoint in the run directory. Prints one JSON object:
{stage: {limit: {"pass@1", "pass@<k>", "clip_ratio", "len/mean"}}}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> int:
    from octo.accuracy import start_pass
    from octo.config import load_recipe
    from octo.context import RunContext
    from octo.model import load_model, load_tokenizer
    from octo.rollout import make_backend
    from octo.runio import STAGE_DONE_FILE, read_json
    from octo.verifiers import shared_pool

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run-dir", default=str(REPO / "runs/quickstart"))
    ap.add_argument("--recipe", default=str(REPO / "recipes/toy/quickstart.yaml"))
    ap.add_argument("--limits", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--problems", type=int, default=64)
    args = ap.parse_args()
    run = Path(args.run_dir)
    if not (run / "cpt").is_dir():
        print(f"start_pass_limits: error: {run} has no cpt/ stages; run `octo run {args.recipe} --run-dir {run}` "
              "first, or pass --run-dir", file=sys.stderr)
        return 2
    recipe = load_recipe(args.recipe, [f"run_dir={run}"])
    ctx = RunContext(recipe)
    heldout = ctx.problems(recipe.data.heldout)
    pool = shared_pool(recipe.verifier)
    out: dict[str, dict] = {}
    for stage in recipe.cpt.stages:
        done = run / "cpt" / stage / STAGE_DONE_FILE
        if not done.exists():
            continue
        ckpt = run / read_json(done)["final_checkpoint"]
        tok, model = load_tokenizer(ckpt), load_model(ckpt)
        model.eval()
        model.generation_config.eos_token_id = tok.eos_token_id
        model.generation_config.pad_token_id = tok.pad_token_id
        backend = make_backend(recipe.probe.rollout, tokenizer=tok, model=model, model_path=str(ckpt))
        try:
            for limit in args.limits:
                # the probe's own pass (start.jsonl's "heldout" row), at this limit
                (row,) = start_pass(backend, tok, heldout=heldout, prompts=[], template=recipe.probe.prompt_template,
                                    max_new_tokens=limit, pool=pool, samples=args.samples,
                                    heldout_problems=args.problems, prompt_problems=0,
                                    temperature=recipe.probe.temperature, seed=54321)
                out.setdefault(stage, {})[str(limit)] = {
                    k: row[k] for k in ("pass@1", f"pass@{args.samples}", "clip_ratio", "len/mean")}
        finally:
            backend.close()
    print(json.dumps({"run_dir": str(run), "problems": min(args.problems, len(heldout)), "samples": args.samples,
                      "stages": out},
                     indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
