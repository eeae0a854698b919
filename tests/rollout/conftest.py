"""Fixtures of the rollout tests: a tiny trained Llama checkpoint and the vLLM server venv."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def toy_checkpoint(tmp_path_factory) -> Path:
    """A trained toy checkpoint (untied embeddings, head_dim 32) with its tokenizer."""
    from tests.rollout.toymodel import build_checkpoint

    with one_torch_thread():
        return build_checkpoint(tmp_path_factory.mktemp("toy") / "ckpt")


@pytest.fixture(scope="session")
def toy_tokenizer(toy_checkpoint):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(toy_checkpoint)


@pytest.fixture
def toy_model(toy_checkpoint):
    """A fresh copy of the toy model for each test (tests may change its weights)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(toy_checkpoint).eval()


@pytest.fixture(scope="session")
def toy_prompts(toy_tokenizer) -> list[list[int]]:
    from tests.rollout.toymodel import prompts

    return prompts(toy_tokenizer, 8)


def find_vllm_python() -> tuple[str | None, str]:
    """(python of the vLLM server venv, or None; why not)."""
    candidate = os.environ.get("OCTO_VLLM_PYTHON") or str(REPO / ".venv-vllm" / "bin" / "python")
    if not Path(candidate).exists():
        return None, (f"no vLLM server venv ({candidate} does not exist); build it with "
                      f"scripts/install-vllm-server.sh and set OCTO_VLLM_PYTHON")
    probe = subprocess.run([candidate, "-c", "import importlib.util, sys; "
                                             "sys.exit(importlib.util.find_spec('vllm') is None)"],
                           capture_output=True, timeout=60)
    if probe.returncode != 0:
        return None, f"{candidate} has no vllm; rebuild it with scripts/install-vllm-server.sh"
    return candidate, ""


@pytest.fixture(scope="session")
def vllm_python() -> str:
    python, why = find_vllm_python()
    if python is None:
        pytest.skip(why)
    return python


@contextlib.contextmanager
def one_torch_thread():
    """The toy model's matmuls are tiny: one thread is as fast as two on an idle machine, and
    10-30x faster when other processes share the 2 cores (OpenMP threads then wait on each other)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    with one_torch_thread():
        yield
