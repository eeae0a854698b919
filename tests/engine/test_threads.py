"""Torch threads: ``cpt.threads: 0`` (and ``--jobs``' share of it) reads OMP_NUM_THREADS where it is set."""

from __future__ import annotations

import os

import pytest


@pytest.mark.parametrize("env, want", [("1", 1), ("3", 3), ("", None), ("0", None), ("two", None), (None, None)])
def test_cpt_threads_zero_means_omp_num_threads_where_set_else_every_core(monkeypatch, env, want):
    import torch

    from octo.cpt.trainer import default_threads, set_threads

    if env is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", env)
    expected = want or os.cpu_count()
    assert default_threads() == expected
    before = torch.get_num_threads()
    try:
        set_threads(0)
        assert torch.get_num_threads() == expected
        set_threads(2)
        assert torch.get_num_threads() == 2   # an explicit cpt.threads wins
    finally:
        torch.set_num_threads(before)
