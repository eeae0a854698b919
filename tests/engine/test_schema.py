"""Recipe validation: unknown keys, wrong types, bad values, overrides; every field documented."""

from __future__ import annotations

import copy

import pytest

from octo.config import Recipe, parse_recipe
from octo.errors import ConfigError
from octo.schema import apply_overrides, iter_fields


def _err(raw, overrides=()):
    with pytest.raises(ConfigError) as info:
        parse_recipe(raw, list(overrides))
    return info.value


def test_quickstart_validates(quickstart_raw):
    r = parse_recipe(copy.deepcopy(quickstart_raw))
    assert r.cpt.stages["decay-long"].mixture["long-openr1"] == 0.15
    assert r.cpt.stages["stable"].schedule.kind == "constant"


@pytest.mark.parametrize("overrides,key,fragment", [
    (["bogus=1"], "bogus", "unknown key; allowed keys here: name, seed"),
    (["cpt.seq_len=abc"], "cpt.seq_len", "must be an integer"),
    (["cpt.seq_len=8"], "cpt.seq_len", "must be >= 16"),
    (["probe.loss_type=ppo"], "probe.loss_type", "must be one of: grpo, dapo, dr_grpo, bnpo"),
    (["probe.mask_truncated_completions=3"], "probe.mask_truncated_completions", "true or false"),
    (["cpt.stages.stable.mixture.web=0.5"], "cpt.stages.stable.mixture", "must sum to 1"),
    (["cpt.stages.stable.mixture.nosuch=0.0"], "cpt.stages.stable.mixture.nosuch", "is not a source"),
    (["cpt.stages.stable.init=nowhere"], "cpt.stages.stable.init", "must be random, model or a stage name"),
    (["cpt.stages.pretrain.init=stable"], "cpt.stages.pretrain.init", "cycle"),
    (["probe.checkpoints=[nosuch]"], "probe.checkpoints[0]", "is not a stage"),
    (["model.num_heads=8"], "model.num_heads", "head_dim"),
    (["cpt.batch_tokens=1000"], "cpt.batch_tokens", "multiple of seq_len"),
    (["probe.prompt_template=hello"], "probe.prompt_template", "{question}"),
    (["probe.max_len.stairs={}"], "probe.max_len.stairs", "at least one step"),
    (["cpt.optimizer.betas=[0.9]"], "cpt.optimizer.betas", "two numbers"),
])
def test_bad_values_name_the_key(quickstart_raw, overrides, key, fragment):
    err = _err(copy.deepcopy(quickstart_raw), overrides)
    assert err.key == key
    assert fragment in str(err)
    assert "\n" not in str(err)


def test_missing_required_key():
    err = _err({"cpt": {}})
    assert err.key == "name" and "required" in str(err)


def test_float_accepts_yaml_exponent_strings(quickstart_raw):
    r = parse_recipe(copy.deepcopy(quickstart_raw), ["probe.lr=3e-5"])  # PyYAML reads 3e-5 as a string
    assert r.probe.lr == pytest.approx(3e-5)


def test_toy_sources_need_a_world(quickstart_raw):
    raw = copy.deepcopy(quickstart_raw)
    del raw["world"]
    assert _err(raw).key == "world"


def test_overrides_create_and_replace():
    raw = {"a": {"b": 1}}
    apply_overrides(raw, ["a.b=2", "a.c.d=x", "e=[1, 2]"])
    assert raw == {"a": {"b": 2, "c": {"d": "x"}}, "e": [1, 2]}
    with pytest.raises(ConfigError):
        apply_overrides(raw, ["novalue"])
    with pytest.raises(ConfigError):
        apply_overrides(raw, ["a.b.c=1"])  # a.b is a number, not a mapping


def test_every_recipe_field_has_help():
    missing = [key for key, f, _ in iter_fields(Recipe) if not f.metadata.get("help")]
    assert missing == []
