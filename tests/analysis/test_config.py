"""AnalysisConfig: documented fields, validation, the recipe's analysis section, the import boundary."""

from __future__ import annotations

import ast
import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from octo.analysis.config import COMPONENTS, DETECTORS, AnalysisConfig, load_analysis_config
from octo.errors import ConfigError, OctoError
from octo.schema import from_dict, iter_fields

ANALYSIS = Path(__file__).resolve().parents[2] / "analysis"


def test_every_field_has_help_text():
    for key, field, _ in iter_fields(AnalysisConfig):
        assert len(field.metadata.get("help", "")) > 15, key


def test_every_detector_has_a_penalty_and_every_component_a_weight():
    cfg = from_dict(AnalysisConfig, {})
    assert set(cfg.weights) == set(COMPONENTS)
    assert set(cfg.event_penalty) == set(DETECTORS)


def test_partial_weights_keep_the_other_defaults():
    cfg = from_dict(AnalysisConfig, {"weights": {"learning": 2.0}, "event_penalty": {"collapse": 0.3}})
    assert cfg.weights == {"learning": 2.0, "start": 1.0, "stability": 1.0, "length": 1.0, "control": 1.0}
    assert cfg.event_penalty["collapse"] == 0.3 and cfg.event_penalty["kl_blowup"] == 0.05
    assert AnalysisConfig(weights={"learning": 2.0}).weights == cfg.weights        # built in Python too


@pytest.mark.parametrize("raw,key", [
    ({"weights": {"speed": 1.0}}, "analysis.weights.speed"),
    ({"weights": {"learning": -1.0}}, "analysis.weights.learning"),
    ({"weights": {c: 0.0 for c in COMPONENTS}}, "analysis.weights"),
    ({"event_penalty": {"oops": 0.1}}, "analysis.event_penalty.oops"),
    ({"gate_weights": {"style": 1.0}}, "analysis.gate_weights.style"),
    ({"bootstrap": 10}, "analysis.bootstrap"),
    ({"ci_level": 1.5}, "analysis.ci_level"),
    ({"collapse_drawdown": 0}, "analysis.collapse_drawdown"),
    ({"unknown": 1}, "analysis.unknown"),
])
def test_bad_values_name_the_key(raw, key):
    with pytest.raises(ConfigError) as err:
        from_dict(AnalysisConfig, raw, "analysis")
    assert err.value.key == key


def test_the_recipe_carries_the_analysis_section(quickstart_raw):
    from octo.config import dump_recipe, parse_recipe

    recipe = parse_recipe(copy.deepcopy(quickstart_raw), ["analysis.weights.learning=2", "analysis.bootstrap=500"])
    assert recipe.analysis.weights["learning"] == 2.0 and recipe.analysis.weights["start"] == 1.0
    assert recipe.analysis.bootstrap == 500
    resolved = yaml.safe_load(dump_recipe(recipe))
    assert from_dict(AnalysisConfig, resolved["analysis"]) == recipe.analysis     # round trip via the run dir


def test_load_analysis_config(tmp_path):
    assert load_analysis_config(tmp_path) == AnalysisConfig()                      # no recipe file
    (tmp_path / "recipe.resolved.yaml").write_text(yaml.safe_dump({"name": "x"}))
    assert load_analysis_config(tmp_path) == AnalysisConfig()                      # no analysis key
    (tmp_path / "recipe.resolved.yaml").write_text(yaml.safe_dump({"analysis": {"kl_max": 2.0}}))
    cfg = load_analysis_config(tmp_path, ["analysis.seed=7"])
    assert cfg.kl_max == 2.0 and cfg.seed == 7
    assert load_analysis_config(None, ["analysis.kl_max=3.0"]).kl_max == 3.0
    (tmp_path / "recipe.resolved.yaml").write_text("analysis: {kl_max: [\n")
    with pytest.raises(OctoError, match="not valid YAML at line"):
        load_analysis_config(tmp_path)


FORBIDDEN = ("torch", "transformers", "trl", "vllm", "octo.cpt", "octo.probe", "octo.data", "octo.config",
             "octo.pipeline", "octo.context", "octo.rollout", "octo.verifiers", "octo.model", "octo.accuracy")


def test_analysis_sources_import_only_leaf_modules():
    for path in sorted(ANALYSIS.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not any(name == f or name.startswith(f + ".") for f in FORBIDDEN), (path.name, name)
                if name.startswith("octo.") and not name.startswith("octo.analysis"):
                    assert name in ("octo.errors", "octo.schema", "octo.runio"), (path.name, name)
                if name.split(".")[0] == "matplotlib":        # only inside plots.py's functions
                    assert path.name == "plots.py" and node not in tree.body, (path.name, name)


def test_importing_and_scoring_loads_no_heavy_module(tmp_path):
    """Importing octo.analysis (and its CLI) and scoring a run pulls in neither torch nor matplotlib."""
    code = (
        "import sys\n"
        "import octo.analysis, octo.analysis.cli\n"
        "from tests.analysis.synth import RunBuilder\n"
        f"b = RunBuilder({str(tmp_path / 'run')!r}, analysis={{'bootstrap': 100}})\n"
        "b.probe('a.step-1', 'clean', rng_seed=1, steps=20, eval_every=10, n=40, k=2)\n"
        "octo.analysis.score_run(b.root)\n"
        f"bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'trl', 'matplotlib', 'wandb') "
        f"or any(m == f or m.startswith(f + '.') for f in {FORBIDDEN!r})]\n"
        "print(sorted(bad))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[2])
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_every_setting_is_documented():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "analysis.md").read_text()
    settings = doc.split("## Settings")[1]
    for key, _, _ in iter_fields(AnalysisConfig):
        assert f"`{key}`" in settings, key
