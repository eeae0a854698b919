"""LoRA probes (``probe.lora``) on the toy world: the option, the missing-peft sentence, a probe that trains its
adapters only, and kill -9 + resume that ends where an unbroken probe ends."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from octo.config import parse_recipe
from octo.errors import ConfigError
from octo.probe.grpo import lora_peft_config
from octo.rl_config import ProbeLoraConfig
from tests.conftest import TINY_OVERRIDES
from tests.probe.test_probe import PROBE_OVERRIDES, STEPS, _env, _prepare, _probe_cmd, _rows, kill_past_a_checkpoint

LORA = ["probe.lora.rank=4", "probe.lora.alpha=8.0", "probe.lr=2.0e-3"]


def test_lora_is_off_by_default_and_set_by_key(quickstart_raw):
    assert parse_recipe(copy.deepcopy(quickstart_raw), TINY_OVERRIDES).probe.lora is None
    lora = parse_recipe(copy.deepcopy(quickstart_raw), TINY_OVERRIDES + ["probe.lora.rank=8"]).probe.lora
    assert lora == ProbeLoraConfig(rank=8)
    assert lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert parse_recipe(copy.deepcopy(quickstart_raw), TINY_OVERRIDES + ["probe.lora={}"]).probe.lora.rank == 16
    for bad, key, fragment in (("probe.lora.target_modules=[]", "probe.lora.target_modules", "names no module"),
                               ("probe.lora.dropout=1.0", "probe.lora.dropout", "must be < 1"),
                               ("probe.lora.rank=0", "probe.lora.rank", "must be >= 1")):
        with pytest.raises(ConfigError) as info:
            parse_recipe(copy.deepcopy(quickstart_raw), TINY_OVERRIDES + [bad])
        assert info.value.key == key and fragment in info.value.message


def test_peft_config_carries_the_recipe_values():
    pytest.importorskip("peft")

    cfg = lora_peft_config(ProbeLoraConfig(rank=8, alpha=16.0, dropout=0.05, target_modules=["q_proj", "v_proj"]))
    assert (cfg.r, cfg.lora_alpha, cfg.lora_dropout, set(cfg.target_modules), cfg.task_type) == \
        (8, 16.0, 0.05, {"q_proj", "v_proj"}, "CAUSAL_LM")


def _octo_without_peft(*args: str) -> list[str]:
    """The octo CLI in a Python where ``import peft`` fails (a None entry in sys.modules), as without the package."""
    return [sys.executable, "-c", "import sys; sys.modules['peft'] = None; from octo.cli import main; "
                                  "sys.exit(main(sys.argv[1:]))", *args]


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("lora") / "run"
    return run_dir, _prepare(run_dir, PROBE_OVERRIDES + LORA)


def test_missing_peft_is_one_sentence_and_exit_2(lora_run, tmp_path):
    run_dir, ckpt = lora_run
    out = tmp_path / "no-peft"
    cmd = _octo_without_peft(*_probe_cmd(ckpt, run_dir, PROBE_OVERRIDES + LORA, "--out", str(out))[3:])
    res = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    err = [ln for ln in res.stderr.splitlines() if ln.startswith("octo: error:")]
    assert err == ["octo: error: probe.lora needs the peft package, which is not installed; run "
                   "`pip install 'octo-midtrain[lora]'` (or `pip install peft`), or drop probe.lora"]
    assert not out.exists()   # refused before any work
    # a probe without probe.lora never needs peft: the same Python runs it (to its first checkpoint is enough)
    plain_dir = tmp_path / "plain"
    plain_ckpt = _prepare(plain_dir, PROBE_OVERRIDES)
    res = subprocess.run(_octo_without_peft(*_probe_cmd(plain_ckpt, plain_dir, PROBE_OVERRIDES + ["probe.steps=2"])
                                            [3:]), capture_output=True, text=True, env=_env(), timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]


def _adapter(ckpt_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(ckpt_dir / "adapter_model.safetensors"))


@pytest.mark.slow
def test_lora_probe_trains_only_its_adapters_and_resumes_where_an_unbroken_one_ends(lora_run):
    import torch

    pytest.importorskip("peft")
    run_dir, ckpt = lora_run
    overrides = PROBE_OVERRIDES + LORA
    # the random-init toy model never earns a reward, so every group would have zero spread and no gradient: the
    # random +-1 control reward (seeded, replayed on resume) gives every step a policy gradient
    control = ("--control", "random")
    whole = run_dir / "probes" / "whole"
    res = subprocess.run(_probe_cmd(ckpt, run_dir, overrides, "--out", str(whole), *control), capture_output=True,
                         text=True, env=_env(), timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert [r["step"] for r in _rows(whole / "metrics.jsonl")] == list(range(1, STEPS + 1))
    assert [e["step"] for e in _rows(whole / "evals.jsonl")] == [0, 5, 10]
    assert json.loads((whole / "probe.json").read_text())["lora"]["rank"] == 4
    final = whole / "checkpoints" / f"checkpoint-{STEPS}"
    # a LoRA checkpoint holds the adapter, not a copy of the base model
    assert (final / "adapter_config.json").is_file() and not (final / "model.safetensors").exists()
    adapter = _adapter(final)
    assert adapter and all(".lora_A." in k or ".lora_B." in k for k in adapter)
    assert {k.split(".")[-3] for k in adapter} == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                   "down_proj"}
    # B starts at zero (the probe starts from the checkpoint itself); training moved it
    assert all(float(t.abs().max()) > 0 for k, t in adapter.items() if ".lora_B." in k)
    # the optimizer holds state for the adapter tensors only: the base weights are frozen
    optim = torch.load(final / "optimizer.pt", weights_only=False)
    assert len(optim["state"]) == len(adapter) > 0

    killed = run_dir / "probes" / "killed"
    proc = subprocess.Popen(_probe_cmd(ckpt, run_dir, overrides, "--out", str(killed), *control),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env())
    kill_past_a_checkpoint(proc, killed)
    # a LoRA probe's checkpoint resumes only as a LoRA probe with the same adapter settings
    other = subprocess.run(_probe_cmd(ckpt, run_dir, overrides + ["probe.lora.rank=8"], "--out", str(killed),
                                      *control),
                           capture_output=True, text=True, env=_env(), timeout=300)
    assert other.returncode == 2 and "Traceback" not in other.stderr and "probe.lora" in other.stderr
    res = subprocess.run(_probe_cmd(ckpt, run_dir, overrides, "--out", str(killed), *control), capture_output=True,
                         text=True, env=_env(), timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resuming from checkpoint-" in res.stderr
    assert [r["step"] for r in _rows(killed / "metrics.jsonl")] == list(range(1, STEPS + 1))
    # the resumed probe ends with the adapter, rewards and held-out results of the unbroken one
    resumed = _adapter(killed / "checkpoints" / f"checkpoint-{STEPS}")
    assert resumed.keys() == adapter.keys()
    for k in adapter:
        torch.testing.assert_close(resumed[k], adapter[k], rtol=0, atol=0, msg=k)
    assert [r["reward/mean"] for r in _rows(killed / "metrics.jsonl")] == \
        [r["reward/mean"] for r in _rows(whole / "metrics.jsonl")]
    assert [e["acc"] for e in _rows(killed / "evals.jsonl")] == [e["acc"] for e in _rows(whole / "evals.jsonl")]


@pytest.mark.parametrize("lora", [False, True])
def test_heldout_evaluation_pushes_the_weights_of_the_step_it_evaluates(tiny_recipe, lora):
    """The metrics callback evaluates after optimizer step s, before the rollout of step s+1 syncs: the evaluation
    itself must push step s's weights (a vLLM backend would otherwise score step s-1), and in a LoRA probe it pushes
    the base model holding the adapters, which the backend merges."""
    from types import SimpleNamespace

    from octo.probe.rollouts import ProbeRollouts
    from octo.rollout.hf import HFBackend
    from octo.verifiers import shared_pool
    from tests.rollout.toymodel import build_model, build_tokenizer, make_sentences

    class Recording(HFBackend):
        def update_weights(self, model, *, step=None):
            self.pushed.append((model, step))
            super().update_weights(model, step=step)

    tok = build_tokenizer(make_sentences(200))
    model = build_model(tok)
    trained = model
    if lora:
        pytest.importorskip("peft")
        from peft import get_peft_model

        trained = get_peft_model(model, lora_peft_config(ProbeLoraConfig(rank=2)))
    cfg = tiny_recipe.probe
    ro = ProbeRollouts(cfg, tokenizer=tok, model=model, model_path=None, seed=0, synced_step=4, clip_history=[])
    ro._backend = Recording(cfg.rollout, tokenizer=tok, model=model)
    ro._backend.pushed = []
    trainer = SimpleNamespace(state=SimpleNamespace(global_step=5), model=trained,
                              accelerator=SimpleNamespace(unwrap_model=lambda m: m))
    ro.trainer = trainer
    res = ro.evaluate([{"question": "Ada has 2 cups.", "answer": "2"}], verifier=tiny_recipe.verifier,
                      pool=shared_pool(tiny_recipe.verifier))
    assert res["n"] == 1
    assert ro._backend.pushed == [(model, 5)] and ro._backend.pushed[0][0] is model
    out = ro(["Ada"] * cfg.num_generations, trainer)   # the next rollout, at the same step: nothing to push again
    assert len(out["completion_ids"]) == cfg.num_generations and len(ro._backend.pushed) == 1


def test_a_target_module_the_model_lacks_is_refused_by_name():
    from octo.errors import OctoError
    from octo.probe.grpo import _check_lora_targets
    from tests.rollout.toymodel import build_model, build_tokenizer, make_sentences

    model = build_model(build_tokenizer(make_sentences(50)))
    _check_lora_targets(model, ProbeLoraConfig().target_modules)   # the default fits a Llama
    _check_lora_targets(model, ["self_attn.q_proj"])                 # peft's suffix match
    with pytest.raises(OctoError) as info:
        _check_lora_targets(model, ["q_proj", "qkv_proj"])
    assert str(info.value).startswith("probe.lora.target_modules names qkv_proj, which is no linear module of llama; "
                                      "choose among down_proj, gate_proj, k_proj, lm_head, o_proj, q_proj,")
