"""The shipped toy base model (octo/assets, ``asset:toy-base``) and the quickstart that starts from it."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.conftest import QUICKSTART as SCRATCH
from tests.conftest import REPO

FAST = REPO / "recipes" / "toy" / "quickstart.yaml"


def _raw(path):
    return yaml.safe_load(path.read_text())


def test_the_asset_is_the_pretraining_of_the_scratch_recipe():
    """quickstart.yaml = scratch.yaml minus pretraining: the same world, data and stages after pretrain, and the
    asset has the scratch recipe's model sizes (scripts/build-toy-base.sh runs scratch's pretrain stage)."""
    from octo.assets import resolve

    fast, scratch = _raw(FAST), _raw(SCRATCH)
    assert fast["world"] == scratch["world"]
    assert {k: v for k, v in fast["data"].items() if k != "tokenizer"} == \
        {k: v for k, v in scratch["data"].items() if k != "tokenizer"}
    assert fast["model"]["init"] == fast["data"]["tokenizer"] == "asset:toy-base"
    assert set(fast["cpt"]["stages"]) == set(scratch["cpt"]["stages"]) - {"pretrain"}
    for name in ("decay-long", "decay-short", "decay-hybrid"):
        assert fast["cpt"]["stages"][name]["mixture"] == scratch["cpt"]["stages"][name]["mixture"]
    assert fast["cpt"]["stages"]["stable"]["mixture"] == scratch["cpt"]["stages"]["stable"]["mixture"]
    config = json.loads((resolve("asset:toy-base") / "config.json").read_text())
    sizes = scratch["model"]
    assert (config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"],
            config["intermediate_size"]) == (sizes["hidden_size"], sizes["num_layers"], sizes["num_heads"],
                                             sizes["intermediate_size"])
    manifest = json.loads((resolve("asset:toy-base") / "manifest.json").read_text())
    assert manifest["stage"] == "pretrain"


def test_a_changed_asset_is_refused(tmp_path, monkeypatch):
    import octo.assets as assets
    from octo.errors import OctoError

    copy_dir = tmp_path / "assets"
    shutil.copytree(assets.ASSETS_DIR, copy_dir, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    monkeypatch.setattr(assets, "ASSETS_DIR", copy_dir)
    monkeypatch.setattr(assets, "_verified", set())
    assert assets.resolve("asset:toy-base") == copy_dir / "toy-base"

    weights = copy_dir / "toy-base" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    monkeypatch.setattr(assets, "_verified", set())
    with pytest.raises(OctoError, match="the sha256 of model.safetensors differs from the one pinned"):
        assets.resolve("asset:toy-base")

    weights.unlink()
    with pytest.raises(OctoError, match="does not match its SHA256SUMS file list"):
        assets.resolve("asset:toy-base")


@pytest.mark.parametrize("key", ["model.init", "data.tokenizer"])
def test_an_unknown_asset_names_the_key_and_the_shipped_ones(key):
    from octo.config import parse_recipe
    from octo.errors import ConfigError

    with pytest.raises(ConfigError, match=f"recipe key '{key}': 'asset:nope' is not a shipped asset; shipped: asset:toy-base"):
        parse_recipe(copy.deepcopy(_raw(FAST)), [f"{key}=asset:nope"])


# the quickstart from the shipped base with tiny budgets (its model sizes are the asset's)
TINY_FAST = [
    "world.docs_per_source=200", "world.prompts=200", "world.heldout_per_level=20",
    "cpt.seq_len=128", "cpt.micro_batch_size=4", "cpt.batch_tokens=512",
    "cpt.gates.heldout_docs=8", "cpt.gates.problems=12", "cpt.gates.max_new_tokens=24",
    "cpt.stages.stable.tokens=2048", "cpt.stages.stable.schedule.warmup_steps=1",
    "cpt.stages.decay-long.tokens=1024", "cpt.stages.decay-short.tokens=1024", "cpt.stages.decay-hybrid.tokens=1024",
    "probe.steps=2", "probe.prompts_per_step=2", "probe.num_generations=2", "probe.eval_every=1",
    "probe.eval_problems=6", "probe.eval_samples=2", "probe.save_every=1", "probe.start_samples=2",
    "probe.max_len.stairs={0: 12, 1: 16}", "probe.log_samples=2",
]


def _octo_run(run_dir, *extra):
    args = [sys.executable, "-m", "octo.cli", "run", str(FAST), "--run-dir", str(run_dir), *extra]
    for o in TINY_FAST:
        args += ["--set", o]
    return subprocess.run(args, capture_output=True, text=True, timeout=900, cwd=REPO,
                          env={**__import__("os").environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})


@pytest.mark.slow
@pytest.mark.multiproc
def test_quickstart_from_the_asset_runs_probes_in_two_workers_and_resumes_with_one(tmp_path):
    run = tmp_path / "run"
    res = _octo_run(run, "--jobs", "2")
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout + res.stderr
    assert "4 GRPO runs, 2 at a time, 1 torch thread(s) each" in out
    assert not (run / "cpt" / "pretrain").exists()
    restores = [json.loads(line) for line in (run / "cpt" / "stable" / "restores.jsonl").read_text().splitlines()]
    assert restores[0]["mode"] == "weights"
    for stage in ("stable", "decay-long", "decay-short", "decay-hybrid"):
        done = json.loads((run / "cpt" / stage / "DONE.json").read_text())
        assert (run / "probes" / f"{stage}.step-{done['step']}" / "DONE.json").exists()
    assert json.loads((run / "scores.json").read_text())["ranking"]
    # the tokenizer is the asset's, byte for byte
    from octo.assets import resolve

    assert (run / "tokenizer" / "tokenizer.json").read_bytes() == \
        (resolve("asset:toy-base") / "tokenizer.json").read_bytes()
    # probe.jobs is how probes run, not a setting of the run directory: a rerun with one job skips everything
    again = _octo_run(run, "--jobs", "1")
    assert again.returncode == 0, again.stderr[-3000:]
    assert (again.stdout + again.stderr).count("already complete, skipping") == 4


def test_jobs_below_one_is_one_sentence(tmp_path):
    res = subprocess.run([sys.executable, "-m", "octo.cli", "run", str(FAST), "--jobs", "0", "--run-dir",
                          str(tmp_path / "r")], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 2 and "--jobs must be at least 1 (got 0)" in res.stderr
    assert "Traceback" not in res.stderr


def test_the_plan_times_the_shipped_base_model(tmp_path):
    """The plan's estimate builds the model from its config: an asset's config is read from the asset."""
    from octo.config import load_recipe
    from octo.plan import measure

    timing, note = measure(load_recipe(FAST, [f"run_dir={tmp_path / 'run'}"]))
    assert timing is not None and note == "", note
    assert timing.train_token_s > 0 and timing.decode_token_s > 0
