"""Drive the in-process ``vllm`` backend and write what it produced to a JSON file.

    PYTHON tests/rollout/vllm_engine_run.py REPO CHECKPOINT OUT_DIR PROMPTS_JSON DTYPE

Run by test_vllm_engine.py with a Python that has vLLM: the server venv on a CPU machine
(octo is not installed there, so ``rollout/`` is loaded as ``octo.rollout`` from the repo) or
octo's own Python on a GPU machine. The test compares the output with the ``hf`` backend.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path


def import_rollout(repo: str):
    sys.path.insert(0, repo)
    try:
        import octo.rollout  # noqa: F401  (installed octo)
    except ModuleNotFoundError:  # the server venv: map rollout/ to octo.rollout as the install does
        spec = importlib.util.spec_from_file_location("octo.rollout", Path(repo) / "rollout" / "__init__.py",
                                                      submodule_search_locations=[str(Path(repo) / "rollout")])
        module = importlib.util.module_from_spec(spec)
        sys.modules["octo.rollout"] = module
        spec.loader.exec_module(module)
    return sys.modules["octo.rollout"]


def main() -> None:
    repo, ckpt, out_dir, prompts_json, dtype = sys.argv[1:6]
    rollout = import_rollout(repo)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from octo.rollout.config import RolloutConfig

    prompts = json.loads(prompts_json)
    tokenizer = AutoTokenizer.from_pretrained(ckpt)
    model = AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.float32)
    cpu = not torch.cuda.is_available()
    config = RolloutConfig(backend="vllm", dtype=dtype, enforce_eager=cpu, max_model_len=256)
    backend = rollout.make_backend(config, tokenizer=tokenizer, model=model, model_path=ckpt)
    res = {"name": backend.name}
    res["greedy"] = [[c.token_ids for c in g] for g in backend.generate(prompts, n=2, max_tokens=24, temperature=0)]
    sampled = backend.generate(prompts, n=3, max_tokens=16, temperature=0.8, seed=5)
    res["sampled"] = [[{"ids": c.token_ids, "logprobs": c.logprobs, "finish": c.finish_reason, "text": c.text}
                       for c in g] for g in sampled]
    again = backend.generate(prompts, n=3, max_tokens=16, temperature=0.8, seed=5)
    res["sampled_again"] = [[c.token_ids for c in g] for g in again]
    torch.manual_seed(0)
    with torch.no_grad():  # a weight change like an optimizer step's (tied weights stay tied)
        for p in model.parameters():
            p.add_(torch.randn_like(p), alpha=0.05)
    backend.update_weights(model, step=1)
    res["sync_s"] = backend.last_sync_s
    res["greedy_after"] = [[c.token_ids for c in g]
                           for g in backend.generate(prompts, n=1, max_tokens=24, temperature=0)]
    model.save_pretrained(Path(out_dir) / "changed")
    backend.close()
    (Path(out_dir) / "result.json").write_text(json.dumps(res))


if __name__ == "__main__":
    main()
