"""Fixtures of the verifier tests: the regression table and worker pools (started once per session)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from octo.verifiers import VerifierConfig, VerifierPool

TABLE = Path(__file__).resolve().parents[1] / "data" / "verifier_cases.jsonl"


def load_table() -> list[dict]:
    with open(TABLE, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@pytest.fixture(scope="session")
def pool():
    """A default-config pool (the table's verdicts assume the default config)."""
    with VerifierPool(VerifierConfig(workers=2)) as p:
        p.start()
        yield p


@pytest.fixture(scope="session")
def fast_pool():
    """A pool with short time limits and the size guard off, for adversarial inputs."""
    cfg = VerifierConfig(workers=2, timeout_s=1.0, kill_grace_s=0.5, guard_heavy=False)
    with VerifierPool(cfg) as p:
        p.start()
        yield p
