"""The package surface: lazy imports, the backend table, the config section, seeds."""

from __future__ import annotations

import subprocess
import sys

import pytest

from octo.errors import ConfigError, OctoError
from octo.rollout import BACKENDS, make_backend
from octo.rollout.base import check_request, mix_seed
from octo.rollout.config import RolloutConfig
from octo.schema import from_dict


def test_import_is_light():
    code = ("import sys, octo.rollout, octo.rollout.serve, octo.rollout.config; "
            "heavy = [m for m in ('torch', 'transformers', 'vllm', 'safetensors') if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_backend_table_points_at_classes():
    import importlib

    assert set(BACKENDS) == {"hf", "vllm-server", "vllm"}
    for name, target in BACKENDS.items():
        module, _, cls = target.partition(":")
        assert getattr(importlib.import_module(module), cls).name == name


def test_unknown_backend():
    with pytest.raises(OctoError, match="unknown rollout backend 'sglang'; choose one of: hf, vllm-server, vllm"):
        make_backend(RolloutConfig(backend="sglang"), tokenizer=None)


def test_vllm_server_needs_servers_or_a_checkpoint_to_start_one():
    with pytest.raises(OctoError, match="no running server and no checkpoint to start one from.*octo serve"):
        make_backend(RolloutConfig(backend="vllm-server"), tokenizer=None)


def test_vllm_backend_without_vllm_says_what_to_do(tmp_path):
    from octo.rollout.vllm_engine import is_vllm_available

    if is_vllm_available():
        pytest.skip("vLLM is installed in this environment")
    with pytest.raises(OctoError, match="needs vLLM installed.*vllm-server"):
        make_backend(RolloutConfig(backend="vllm"), tokenizer=None, model_path=str(tmp_path))


def test_config_from_recipe_dict():
    cfg = from_dict(RolloutConfig, {"backend": "vllm-server", "servers": ["http://127.0.0.1:8000"],
                                    "request_timeout_s": "3.0e+1", "max_retries": 0, "api_key_env": "KEY"})
    assert cfg.request_timeout_s == 30.0 and cfg.max_retries == 0 and cfg.api_key_env == "KEY"
    assert from_dict(RolloutConfig, {}).backend == "hf"


@pytest.mark.parametrize("raw, key, text", [
    ({"servers": ["localhost:8000"]}, "rollout.servers[0]", "http(s) URL"),
    ({"servers": ["http://h:99999"]}, "rollout.servers[0]", "bad port"),
    ({"backend": "sglang"}, "rollout.backend", "must be one of: hf, vllm-server, vllm"),
    ({"max_retries": -1}, "rollout.max_retries", ">= 0"),
    ({"request_timeout_s": 0}, "rollout.request_timeout_s", "> 0"),
    ({"gpu_memory_utilization": 1.5}, "rollout.gpu_memory_utilization", "<= 1"),
])
def test_config_errors_name_the_key(raw, key, text):
    with pytest.raises(ConfigError) as err:
        from_dict(RolloutConfig, raw, "rollout")
    assert err.value.key == key and text in err.value.message


def test_every_config_field_has_help():
    import dataclasses

    for f in dataclasses.fields(RolloutConfig):
        assert f.metadata.get("help"), f.name


def test_mix_seed():
    seeds = [mix_seed(s, i) for s in range(20) for i in range(50)]
    assert len(set(seeds)) == len(seeds)
    assert all(0 <= s < 2**62 for s in seeds)
    assert mix_seed(3, 4) == mix_seed(3, 4)
    assert mix_seed(-5, 0) >= 0


@pytest.mark.parametrize("kwargs, text", [
    (dict(n=0), "n must be"), (dict(max_tokens=0), "max_tokens"), (dict(temperature=-1), "temperature"),
    (dict(top_p=1.5), "top_p"),
])
def test_check_request(kwargs, text):
    args = dict(n=1, max_tokens=4, temperature=1.0, top_p=1.0) | kwargs
    with pytest.raises(ValueError, match=text):
        check_request([[1]], **args)
