"""VerifierConfig / RewardConfig: documented fields, validation through octo.schema.from_dict."""

from __future__ import annotations

import dataclasses

import pytest

from octo.errors import ConfigError
from octo.schema import from_dict, iter_fields, to_dict
from octo.verifiers import RewardConfig, VerifierConfig


@pytest.mark.parametrize("cls", [VerifierConfig, RewardConfig])
def test_every_field_has_help_and_defaults_roundtrip(cls):
    for key, f, _ in iter_fields(cls):
        assert f.metadata.get("help"), key
    assert from_dict(cls, to_dict(cls())) == cls()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cls().__setattr__("weights" if cls is RewardConfig else "workers", 3)


@pytest.mark.parametrize("cls, data, key, msg", [
    (VerifierConfig, {"extract": ["boxed", "magic"]}, "verifier.extract[1]", "must be one of"),
    (VerifierConfig, {"extract": []}, "verifier.extract", "at least one"),
    (VerifierConfig, {"timeout_s": 0}, "verifier.timeout_s", "must be > 0"),
    (VerifierConfig, {"workers": 0}, "verifier.workers", "must be >= 1"),
    (VerifierConfig, {"extract_by_task": {"gsm8k": []}}, "verifier.extract_by_task.gsm8k", "at least one"),
    (VerifierConfig, {"strip_units": "yes"}, "verifier.strip_units", "true or false"),
    (VerifierConfig, {"speed": 1}, "verifier.speed", "unknown key"),
    (RewardConfig, {"weights": {"speed": 1.0}}, "verifier.weights.speed", "unknown reward component"),
    (RewardConfig, {"repetition": "both"}, "verifier.repetition", "must be one of"),
    (RewardConfig, {"overlong_buffer": 1.5}, "verifier.overlong_buffer", "must be <= 1"),
])
def test_bad_values_name_the_key(cls, data, key, msg):
    with pytest.raises(ConfigError) as info:
        from_dict(cls, data, "verifier")
    assert info.value.key == key and msg in info.value.message


def test_recipe_values():
    v = from_dict(VerifierConfig, {"extract": ["hash", "boxed"], "timeout_s": "2e0", "workers": 4,
                                   "extract_by_task": {"math": ["boxed"]}})
    assert v.extract == ["hash", "boxed"] and v.timeout_s == 2.0 and v.extract_by_task == {"math": ["boxed"]}
    r = from_dict(RewardConfig, {"correct": 1.0, "wrong": -1.0, "weights": {"correctness": 1.0, "format": 0.5}})
    assert r.weight("format") == 0.5 and r.weight("overlong") == 0.0
