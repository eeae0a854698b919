"""The in-process ``vllm`` backend, checked against the ``hf`` backend on a toy checkpoint with
TIED embeddings (the weight-sync case that goes silently wrong when lm_head is left out).

vLLM cannot live in octo's environment on a CPU machine (it pins its own torch), so the
backend runs in a subprocess: with the server venv's Python (marker ``vllm``, CPU) or with
octo's Python where vLLM is installed beside it (marker ``gpu``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from octo.rollout import make_backend
from octo.rollout.config import RolloutConfig
from tests.rollout.test_hf import recomputed_logprobs

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tied_checkpoint(tmp_path_factory):
    from tests.rollout.conftest import one_torch_thread
    from tests.rollout.toymodel import build_checkpoint

    with one_torch_thread():
        return build_checkpoint(tmp_path_factory.mktemp("tied") / "ckpt", tied=True)


def run_engine(python: str, checkpoint: Path, out: Path, prompts, dtype: str) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([python, str(REPO / "tests" / "rollout" / "vllm_engine_run.py"), str(REPO), str(checkpoint),
                           str(out), json.dumps(prompts), dtype], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((out / "result.json").read_text())


def check_against_hf(res: dict, checkpoint: Path, out: Path, prompts) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForCausalLM.from_pretrained(checkpoint).eval()
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert res["name"] == "vllm"
    hf = make_backend(RolloutConfig(backend="hf"), tokenizer=tokenizer, model=model)
    ref = [g[0].token_ids for g in hf.generate(prompts, n=1, max_tokens=24, temperature=0)]
    assert res["greedy"] == [[r, r] for r in ref]
    assert res["sampled_again"] == [[c["ids"] for c in g] for g in res["sampled"]]
    for prompt, group in zip(prompts, res["sampled"]):
        assert len(group) == 3
        for c in group:
            assert c["logprobs"] == pytest.approx(recomputed_logprobs(model, prompt, c["ids"], 0.8), abs=1e-3)
            assert c["text"] == tokenizer.decode(c["ids"], skip_special_tokens=True)
            assert (c["finish"] == "stop") == (c["ids"][-1] == tokenizer.eos_token_id)
    changed = AutoModelForCausalLM.from_pretrained(out / "changed").eval()
    ref_after = [g[0].token_ids for g in make_backend(RolloutConfig(backend="hf"), tokenizer=tokenizer, model=changed)
                 .generate(prompts, n=1, max_tokens=24, temperature=0)]
    assert res["greedy_after"] == [[r] for r in ref_after]
    assert ref_after != ref
    assert res["sync_s"] > 0


@pytest.mark.vllm
def test_in_process_engine_on_cpu(vllm_python, tied_checkpoint, toy_tokenizer, tmp_path):
    from tests.rollout.toymodel import prompts as make_prompts
    from transformers import AutoTokenizer

    prompts = make_prompts(AutoTokenizer.from_pretrained(tied_checkpoint), 6)
    res = run_engine(vllm_python, tied_checkpoint, tmp_path, prompts, "float32")
    check_against_hf(res, tied_checkpoint, tmp_path, prompts)


@pytest.mark.gpu
def test_in_process_engine_on_gpu(tied_checkpoint, tmp_path):
    import torch

    from octo.rollout.vllm_engine import is_vllm_available

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU on this machine")
    if not is_vllm_available():
        pytest.skip("vLLM is not installed in octo's environment (pip install vllm on the GPU machine)")
    from tests.rollout.toymodel import prompts as make_prompts
    from transformers import AutoTokenizer

    prompts = make_prompts(AutoTokenizer.from_pretrained(tied_checkpoint), 6)
    res = run_engine(sys.executable, tied_checkpoint, tmp_path, prompts, "float32")
    check_against_hf(res, tied_checkpoint, tmp_path, prompts)
