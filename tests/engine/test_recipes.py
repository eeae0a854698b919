"""Every shipped recipe loads and validates; the OctoThinker recipes carry seed 004's numbers exactly."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from octo.config import load_recipe, parse_recipe, stage_order
from octo.errors import OctoError
from tests.conftest import REPO, TINY_OVERRIDES


def _is_recipe(path: Path) -> bool:
    """recipes/ also holds launcher configs (recipes/accelerate/*.yaml); an octo recipe names its run."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    return isinstance(raw, dict) and "name" in raw and "compute_environment" not in raw


RECIPES = sorted(p for p in (REPO / "recipes").rglob("*.yaml") if _is_recipe(p))
OCTO = REPO / "recipes" / "octothinker"

# seed 004 Table 5: the decay-stage mixtures of the three branches (token shares)
DECAY_MIXTURES = {
    "decay-long": {"dclm": 0.05, "if": 0.10, "megamath-web-pro": 0.55, "openr1": 0.15, "am-distilled": 0.15},
    "decay-short": {"dclm": 0.05, "if": 0.10, "megamath-web-pro": 0.55, "megamath-qa": 0.025, "omi2": 0.175,
                    "numina": 0.10},
    "decay-hybrid": {"dclm": 0.05, "if": 0.10, "megamath-web-pro": 0.55, "omi2": 0.10, "numina": 0.10,
                     "openr1": 0.10},
}
DATASETS = {
    "dclm": "hf:mlfoundations/dclm-baseline-1.0", "megamath-web-pro": "hf:LLM360/MegaMath",
    "megamath-qa": "hf:LLM360/MegaMath", "megamath-web-pro-max": "hf:OctoThinker/MegaMath-Web-Pro-Max",
    "if": "hf:allenai/tulu-3-sft-personas-instruction-following", "openr1": "hf:open-r1/OpenR1-Math-220k",
    "am-distilled": "hf:a-m-team/AM-DeepSeek-Distilled-40M", "omi2": "hf:nvidia/OpenMathInstruct-2",
    "numina": "hf:AI-MO/NuminaMath-1.5",
}


def test_recipes_are_found():
    names = {str(p.relative_to(REPO / "recipes")) for p in RECIPES}
    assert {"toy/quickstart.yaml", "octothinker/stable.yaml", "octothinker/decay-long.yaml",
            "octothinker/decay-short.yaml", "octothinker/decay-hybrid.yaml"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: str(p.relative_to(REPO / "recipes")))
def test_every_recipe_validates(path):
    recipe = load_recipe(path)
    assert recipe.cpt.stages or recipe.probe.checkpoints or recipe.name
    for stage in recipe.cpt.stages.values():
        assert sum(stage.mixture.values()) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("branch", [None, "decay-long", "decay-short", "decay-hybrid"])
def test_octothinker_recipes_carry_seed_004(branch):
    path = OCTO / (f"{branch}.yaml" if branch else "stable.yaml")
    r = load_recipe(path)
    assert r.name == "octothinker" and r.run_path == Path("runs/octothinker")  # one run directory for all four
    assert r.model.init != "toy" and r.data.tokenizer == r.model.init
    assert r.cpt.seq_len == 8192 and r.cpt.batch_tokens == 4194304 == 8192 * 512
    assert r.cpt.batch_tokens % (r.cpt.seq_len * r.cpt.micro_batch_size) == 0
    assert r.cpt.mask_prompt is False and r.cpt.long_docs == "split"
    stable = r.cpt.stages["stable"]
    assert (stable.init, stable.tokens, stable.schedule.kind, stable.schedule.lr) == (
        "model", 200_000_000_000, "constant", 3.0e-5)
    assert stage_order(r)[0] == "stable"
    expected = ["stable"] + ([branch] if branch else [])
    assert list(r.cpt.stages) == expected
    if branch:
        d = r.cpt.stages[branch]
        assert d.mixture == DECAY_MIXTURES[branch]
        assert (d.init, d.restore, d.tokens) == ("stable", "full", 20_000_000_000)
        assert (d.schedule.kind, d.schedule.lr, d.schedule.final_lr, d.schedule.warmup_steps) == (
            "cosine", 3.0e-5, 1.5e-5, 0)
    used = {s for st in r.cpt.stages.values() for s in st.mixture}
    assert set(r.data.sources) == used
    for name, src in r.data.sources.items():
        assert src.path == DATASETS[name] and src.streaming and src.max_docs > 0
    templates = {n: s.template for n, s in r.data.sources.items()}
    assert all(templates.get(n, "IF") == "IF" for n in ("if", "openr1", "am-distilled"))
    assert all(templates.get(n, "QA") == "QA" for n in ("omi2", "numina"))
    assert r.data.sources.get("megamath-web-pro") is None or r.data.sources["megamath-web-pro"].data_dir == \
        "megamath-web-pro"


def test_octothinker_decay_recipes_repeat_the_stable_stage_word_for_word():
    stable = yaml.safe_load((OCTO / "stable.yaml").read_text())
    for branch in DECAY_MIXTURES:
        raw = yaml.safe_load((OCTO / f"{branch}.yaml").read_text())
        assert raw["cpt"]["stages"]["stable"] == stable["cpt"]["stages"]["stable"]
        for key in ("name", "seed", "model"):
            assert raw[key] == stable[key]
        for name, src in stable["data"]["sources"].items():
            assert raw["data"]["sources"][name] == src
        rest = {k: v for k, v in raw["cpt"].items() if k != "stages"}
        assert rest == {k: v for k, v in stable["cpt"].items() if k != "stages"}


def test_branch_recipes_share_one_run_directory(tmp_path, quickstart_raw):
    """A recipe that adds stages and sources to a run's recipe is a branch of that run (the decay recipes
    add theirs to stable.yaml's); one that changes a stage both define is refused."""
    from octo.context import RunContext
    from octo.runio import read_json

    run = tmp_path / "run"
    base_raw = copy.deepcopy(quickstart_raw)
    for stage in ("decay-long", "decay-short", "decay-hybrid"):
        del base_raw["cpt"]["stages"][stage]
    base_raw["probe"]["checkpoints"] = ["pretrain"]
    for src in ("if", "qa-omi2", "qa-numina", "long-openr1", "long-am"):
        del base_raw["data"]["sources"][src]
    base = parse_recipe(base_raw, [o for o in TINY_OVERRIDES if ".decay-" not in o] + [f"run_dir={run}"])

    def prepare(recipe):
        ctx = RunContext(recipe)
        ctx.prepare()
        ctx.release()

    prepare(base)
    assert set(read_json(run / "manifest.json")["data_fingerprints"]) == {"web", "mathweb", "qa-megamath"}
    with pytest.raises(OctoError, match=r"differs in: probe\.checkpoints"):  # keys outside stages and sources
        prepare(parse_recipe(copy.deepcopy(quickstart_raw), TINY_OVERRIDES + [f"run_dir={run}"]))
    full = parse_recipe(copy.deepcopy(quickstart_raw),
                        TINY_OVERRIDES + [f"run_dir={run}", "probe.checkpoints=[pretrain]"])
    prepare(full)
    resolved = yaml.safe_load((run / "recipe.resolved.yaml").read_text())
    assert list(resolved["cpt"]["stages"]) == ["pretrain", "stable", "decay-long", "decay-short", "decay-hybrid"]
    assert set(read_json(run / "manifest.json")["data_fingerprints"]) == set(full.data.sources)
    prepare(base)  # the stable-only recipe still fits the grown run
    changed = parse_recipe(copy.deepcopy(quickstart_raw), TINY_OVERRIDES + [
        f"run_dir={run}", "probe.checkpoints=[pretrain]", "cpt.stages.stable.tokens=4096"])
    with pytest.raises(OctoError, match=r"differs in: cpt\.stages\.stable\.tokens"):
        prepare(changed)
    # analysis settings read the runs and change none of them: another one is no other recipe, and the record
    # keeps the latest (what `octo score` reads)
    reread = parse_recipe(copy.deepcopy(quickstart_raw), TINY_OVERRIDES + [
        f"run_dir={run}", "probe.checkpoints=[pretrain]", "analysis.rank_by=readiness", "analysis.combination={}"])
    prepare(reread)
    resolved = yaml.safe_load((run / "recipe.resolved.yaml").read_text())
    assert resolved["analysis"]["rank_by"] == "readiness" and resolved["analysis"]["combination"] == {}


def test_octothinker_probe_recipe_carries_seed_004_rl_setup():
    r = load_recipe(OCTO / "probe.yaml")
    p = r.probe
    assert (p.prompts_per_step, p.num_generations, p.lr, p.beta, p.temperature) == (256, 16, 1.0e-6, 0.0, 1.0)
    assert (p.max_len.kind, p.max_len.stairs) == ("stair", {0: 2048, 200: 4096, 320: 8192})
    assert p.steps > 320 and p.rollout.backend == "vllm" and p.rollout.max_model_len >= 8192 + 512
    assert r.name != "octothinker" and not r.cpt.stages  # its own run directory: never edits the CPT run's recipe
