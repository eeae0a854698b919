"""Fixtures for octo.analysis: synthetic run directories with known dynamics (tests/analysis/synth.py)."""

from __future__ import annotations

import shutil

import pytest

from tests.analysis.synth import branches_run

FAST = {"bootstrap": 300}   # enough resamples for behaviour tests; coverage tests use the default 1000


@pytest.fixture(scope="session")
def branches_template(tmp_path_factory):
    """A read-only branches run (Long / Short / Hybrid / base) with negative controls."""
    return branches_run(tmp_path_factory.mktemp("branches") / "run", controls=True, analysis=dict(FAST))


@pytest.fixture
def branches(tmp_path, branches_template):
    """A private copy of the branches run that a test may modify."""
    dst = tmp_path / "run"
    shutil.copytree(branches_template, dst)
    return dst
