"""Shared fixtures: tiny recipes and a prepared tiny run (toy world + tokenizer), built locally."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
# pytest-xdist (pyproject's addopts) runs two workers on two cores: every process a test starts then uses one torch
# thread (octo reads OMP_NUM_THREADS for cpt.threads: 0), since two OpenMP threads wait on each other when another
# process shares the cores (a tiny model gains nothing from the second thread anyway)
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
# the quickstart's stages with pretraining from random init (recipes/toy/quickstart.yaml starts from the shipped
# base model, whose sizes are fixed): tests build their own tiny base model
QUICKSTART = REPO / "recipes" / "toy" / "scratch.yaml"

# A recipe small enough that a whole `octo run` takes seconds: the quickstart's structure with
# tiny budgets. Tests that need other sizes copy it and change keys.
TINY_OVERRIDES = [
    "world.docs_per_source=200", "world.prompts=200", "world.heldout_per_level=20",
    "model.hidden_size=64", "model.num_heads=2", "model.num_kv_heads=2", "model.intermediate_size=128",
    "model.num_layers=2",
    "cpt.seq_len=128", "cpt.micro_batch_size=4", "cpt.batch_tokens=512",
    "cpt.gates.heldout_docs=8", "cpt.gates.problems=12", "cpt.gates.max_new_tokens=24",
    "cpt.stages.pretrain.tokens=2048", "cpt.stages.pretrain.schedule.warmup_steps=1",
    "cpt.stages.stable.tokens=8192", "cpt.stages.decay-long.tokens=1024",
    "cpt.stages.decay-short.tokens=1024", "cpt.stages.decay-hybrid.tokens=1024",
    "cpt.stages.stable.save_every=4",
    "probe.steps=2", "probe.prompts_per_step=2", "probe.num_generations=2", "probe.eval_every=1",
    "probe.eval_problems=6", "probe.eval_samples=2", "probe.save_every=1",
    "probe.max_len.stairs={0: 12, 1: 16}", "probe.log_samples=2",
    "probe.start_max_len=0",   # the step-0 pass at the probe's own limit, not the quickstart's 256 tokens
    # no saves by the clock: a test's checkpoints are the step schedule's, however loaded the machine
    "cpt.save_every_s=0", "probe.save_every_s=0",
]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Groups for pytest-xdist's ``--dist loadgroup``: a test file stays in one worker (its module fixtures are built
    once); the tests that keep both cores busy themselves (marked ``multiproc``) all run in one worker, one after
    another, and so do the ``vllm`` tests (each starts a vLLM server, ~40 s of start-up)."""
    groups = []
    for item in items:
        group = next((m for m in ("multiproc", "vllm") if item.get_closest_marker(m)), item.nodeid.split("::")[0])
        item.add_marker(pytest.mark.xdist_group(group))
        groups.append(group)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # those two groups are the longest units of work: first in the queue (addopts keep xdist from reordering), one
        # per worker, then the files in collection order. Putting the files with a `slow` test next measured 1,870 s
        # against this order's 1,549 s, but the machine was slower for that run too: not settled
        rank = {"multiproc": 0, "vllm": 1}
        items[:] = [it for _, it in sorted(zip(groups, items), key=lambda gi: rank.get(gi[0], 2))]


@pytest.fixture(scope="session")
def quickstart_raw() -> dict:
    from octo.config import load_recipe_dict

    return load_recipe_dict(QUICKSTART)


@pytest.fixture
def tiny_recipe(tmp_path, quickstart_raw):
    """The tiny recipe in a fresh run directory."""
    from octo.config import parse_recipe

    return parse_recipe(copy.deepcopy(quickstart_raw), TINY_OVERRIDES + [f"run_dir={tmp_path / 'run'}"])


@pytest.fixture(scope="session")
def tiny_ctx(tmp_path_factory, quickstart_raw):
    """A prepared tiny run (world, tokenizer, manifest) shared by read-only tests."""
    from octo.config import parse_recipe
    from octo.context import RunContext

    run = tmp_path_factory.mktemp("tiny") / "run"
    recipe = parse_recipe(copy.deepcopy(quickstart_raw), TINY_OVERRIDES + [f"run_dir={run}"])
    ctx = RunContext(recipe)
    ctx.prepare()
    return ctx
