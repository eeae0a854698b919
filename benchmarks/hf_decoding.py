"""The ``hf`` backend's decoding against its own earlier forms, measured in the same run on the same request:

- ``whole``: the model's forward at every step, every row of a chunk decoded to the chunk's end (the backend
  before stop 35);
- ``compacted``: the model's forward at every step, rows that ended at EOS dropped from the forward batch
  (``rollout.decoder: transformers``);
- ``octo_step``: the default (``rollout.decoder: auto``): rows dropped, and a Llama model's steps run by octo's
  own step with the KV cache in buffers allocated once per chunk (octo.rollout.llama_decode).

    python benchmarks/hf_decoding.py [--run-dir runs/quickstart] [--recipe recipes/toy/quickstart.yaml]
                                     [--stages decay-long decay-short] [--problems 32] [--samples 16]
                                     [--max-tokens 256] [--threads 1]

For each stage with a final checkpoint in the run directory: the probe's step-0 sampling request (level-balanced
held-out problems x ``--samples`` at temperature 1, ``--max-tokens``; the pass that dominates a probe's time) and
its greedy evaluation request, and a training step's rollout (8 of the problems x 8 samples at temperature 1),
generated once by each decoder with the same seed. Reports the seconds of each,
the speed-ups over ``whole`` and over ``compacted``, the mean and clipped share of completion lengths, and
whether every completion's tokens are equal across the three and its log-probs between ``octo_step`` and
``compacted`` (they must be). One torch thread by
default, as ``--jobs 2`` gives each run. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def whole_batch_backend(backend):
    """The same backend object, decoding every row of a chunk to the chunk's end (no compaction)."""
    backend._compact = lambda rows, stopped, mask, positions, step: (rows, mask, positions)
    return backend


def timed(backend, prompts, **kw) -> tuple[float, list[tuple]]:
    t0 = time.perf_counter()
    groups = backend.generate(prompts, **kw)
    return time.perf_counter() - t0, [(c.token_ids, c.logprobs) for g in groups for c in g]


def compare(make, prompts, max_tokens: int, **kw) -> dict:
    octo_s, octo = timed(make("auto"), prompts, max_tokens=max_tokens, **kw)
    comp_s, comp = timed(make("transformers"), prompts, max_tokens=max_tokens, **kw)
    whole_s, whole = timed(whole_batch_backend(make("transformers")), prompts, max_tokens=max_tokens, **kw)
    lengths = [len(t) for t, _ in octo]
    return {"whole_s": round(whole_s, 2), "compacted_s": round(comp_s, 2), "octo_step_s": round(octo_s, 2),
            "speedup_over_whole": round(whole_s / octo_s, 2), "speedup_over_compacted": round(comp_s / octo_s, 2),
            "completions": len(octo), "len/mean": round(sum(lengths) / len(lengths), 1),
            "clip_ratio": round(sum(n == max_tokens for n in lengths) / len(lengths), 3),
            "same_tokens": [t for t, _ in octo] == [t for t, _ in comp] == [t for t, _ in whole],
            # a smaller forward batch may round a log-prob differently; octo's step and the compacted forward see
            # the same batches, so theirs must be equal bit for bit
            "same_logprobs_as_compacted": octo == comp}


def main() -> int:
    import torch

    from octo.accuracy import _prompt_ids, select_problems
    from octo.config import load_recipe
    from octo.context import RunContext
    from octo.model import load_model, load_tokenizer
    from octo.rollout import make_backend
    from octo.runio import STAGE_DONE_FILE, read_json

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run-dir", default=str(REPO / "runs/quickstart"))
    ap.add_argument("--recipe", default=str(REPO / "recipes/toy/quickstart.yaml"))
    ap.add_argument("--stages", nargs="+", default=["decay-long", "decay-short"])
    ap.add_argument("--problems", type=int, default=32)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    run = Path(args.run_dir)
    done = {s: run / "cpt" / s / STAGE_DONE_FILE for s in args.stages}
    missing = [s for s, p in done.items() if not p.exists()]
    if missing:
        print(f"hf_decoding: error: {run} has no finished stage {', '.join(missing)}; run `octo run {args.recipe} "
              f"--run-dir {run}` first, or pass --run-dir / --stages", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    recipe = load_recipe(args.recipe, [f"run_dir={run}"])
    problems = select_problems(RunContext(recipe).problems(recipe.data.heldout), args.problems)
    out: dict[str, dict] = {}
    for stage, path in done.items():
        ckpt = run / read_json(path)["final_checkpoint"]
        tok, model = load_tokenizer(ckpt), load_model(ckpt).eval()
        model.generation_config.eos_token_id = tok.eos_token_id
        prompts = _prompt_ids(tok, problems, recipe.probe.prompt_template)

        def make(decoder: str):
            cfg = dataclasses.replace(recipe.probe.rollout, decoder=decoder)
            return make_backend(cfg, tokenizer=tok, model=model, model_path=str(ckpt))

        out[stage] = {"sampled": compare(make, prompts, args.max_tokens, n=args.samples, temperature=1.0, seed=1),
                      "greedy": compare(make, prompts, args.max_tokens, n=1, temperature=0.0, seed=1),
                      # a probe step's rollout: 8 prompts x 8 samples (probe.prompts_per_step x num_generations)
                      "rollout": compare(make, prompts[:8], args.max_tokens, n=8, temperature=1.0, seed=1)}
    print(json.dumps({"run_dir": str(run), "problems": len(problems), "samples": args.samples,
                      "max_tokens": args.max_tokens, "threads": args.threads, "stages": out}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
