"""benchmarks/toyworld_rl.py's recipe handling: ``--set`` overrides reach the bench recipe (the controls at
validation.yaml's 4 layers are measured that way), a bad override is one argparse line and exit 2 before anything
is written, and the page's parameter count is read from the saved weights. The benchmark's runs themselves take
most of an hour of two cores, so they are not a test."""

from __future__ import annotations

import subprocess
import sys

import torch
import yaml
from safetensors.torch import save_file

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import toyworld_rl  # noqa: E402


def test_overrides_reach_the_bench_recipe_and_its_early_stage_stays(tmp_path):
    path = toyworld_rl.bench_recipe(tmp_path / "run", ["model.num_layers=4", "probe.steps=7"])
    r = yaml.safe_load(path.read_text())
    assert r["model"]["num_layers"] == 4 and r["probe"]["steps"] == 7
    assert r["run_dir"] == str(tmp_path / "run")
    early = r["cpt"]["stages"]["early"]
    assert early["init"] == "random" and early["tokens"] == toyworld_rl.EARLY_STEPS * r["cpt"]["batch_tokens"]
    plain = yaml.safe_load(toyworld_rl.bench_recipe(tmp_path / "plain").read_text())
    assert plain["model"]["num_layers"] == yaml.safe_load(
        (REPO / "recipes/toy/scratch.yaml").read_text())["model"]["num_layers"]


def test_a_bad_override_is_one_line_and_exit_2(tmp_path):
    for bad, words in (("model.num_layers=0", "must be >= 1"), ("model.num_layer=4", "unknown key"),
                       ("probe", "KEY=VALUE")):
        p = subprocess.run([sys.executable, str(REPO / "benchmarks/toyworld_rl.py"), "--run-dir",
                            str(tmp_path / "run"), "--set", bad], capture_output=True, text=True, cwd=REPO)
        assert p.returncode == 2, p.stderr
        last = p.stderr.strip().splitlines()[-1]
        assert last.startswith("toyworld_rl.py: error:") and words in last
        assert "Traceback" not in p.stderr
    assert not list(tmp_path.iterdir())
    # a page in a folder that does not exist would fail only after the runs: refused first
    p = subprocess.run([sys.executable, str(REPO / "benchmarks/toyworld_rl.py"), "--run-dir", str(tmp_path / "run"),
                        "--doc", str(tmp_path / "no" / "page.md")], capture_output=True, text=True, cwd=REPO)
    assert p.returncode == 2 and "its folder does not exist" in p.stderr.strip().splitlines()[-1]
    assert "Traceback" not in p.stderr and not list(tmp_path.iterdir())


def test_parameter_count_is_read_from_the_weights(tmp_path):
    save_file({"a": torch.zeros(3, 5), "b": torch.zeros(7)}, str(tmp_path / "model.safetensors"))
    save_file({"c": torch.zeros(2, 2, 2)}, str(tmp_path / "model-2.safetensors"))
    assert toyworld_rl._param_count(tmp_path) == 15 + 7 + 8


def test_the_page_names_the_command_that_regenerates_it():
    """Defaults are left out; seeds, overrides and a page other than docs/toyworld.md are named (not --run-dir,
    which is this machine's)."""
    import argparse

    def ns(**kw):
        base = dict(seeds=[0, 1, 2], control_seeds=[0], full_seeds=[0], set=[], doc=str(REPO / "docs/toyworld.md"),
                    run_dir="/somewhere")
        return argparse.Namespace(**{**base, **kw})

    assert toyworld_rl.command_line(ns()) == "python benchmarks/toyworld_rl.py"
    assert toyworld_rl.command_line(ns(full_seeds=[], set=["model.num_layers=4"],
                                       doc=str(REPO / "docs/toyworld-4layers.md"))) == (
        "python benchmarks/toyworld_rl.py --full-seeds --set model.num_layers=4 --doc docs/toyworld-4layers.md")
    assert toyworld_rl.command_line(ns(seeds=[3], doc="/tmp/x.md")) == \
        "python benchmarks/toyworld_rl.py --seeds 3 --doc /tmp/x.md"


def test_regenerating_a_page_keeps_its_hand_written_part(tmp_path):
    """The pilot runs and notes below the generated tables are written by hand, on docs/toyworld.md only: the
    benchmark keeps a page's own part and gives a new page a pointer to that one, so nothing drifts."""
    page = tmp_path / "page.md"
    assert toyworld_rl.page_tail(page) == toyworld_rl.TAIL_POINTER          # no page yet
    own = "## How the design was chosen (pilots)\n\n- a pilot\n\n## Notes\n\n- n\n"
    page.write_text("# generated\n\n| table |\n\n" + own)
    assert toyworld_rl.page_tail(page) == own
    page.write_text("# generated\n\n| table |\n")
    assert toyworld_rl.page_tail(page) == toyworld_rl.TAIL_POINTER          # a page without that part
    shipped = toyworld_rl.page_tail(REPO / "docs" / "toyworld.md")
    assert shipped.startswith("## How the design was chosen (pilot runs") and "## Notes" in shipped
    assert "[docs/toyworld.md](toyworld.md)" in toyworld_rl.page_tail(REPO / "docs" / "toyworld-5layers.md")
