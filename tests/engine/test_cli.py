"""CLI: exit codes and one-line errors, --print-recipe writes nothing."""

from __future__ import annotations

import subprocess
import sys

import yaml

from tests.conftest import QUICKSTART


def octo(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "octo.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def test_help_lists_commands():
    res = octo("--help")
    assert res.returncode == 0
    for cmd in ("run", "cpt", "probe"):
        assert cmd in res.stdout


def test_print_recipe_prints_resolved_recipe_and_writes_nothing(tmp_path):
    """octo run --print-recipe: the resolved YAML (--dry-run says the plan: tests/engine/test_plan.py)."""
    run_dir = tmp_path / "never"
    res = octo("run", QUICKSTART, "--print-recipe", "--set", "probe.steps=3", "--run-dir", run_dir)
    assert res.returncode == 0, res.stderr
    resolved = yaml.safe_load(res.stdout)
    assert resolved["probe"]["steps"] == 3 and resolved["run_dir"] == str(run_dir)
    assert resolved["verifier"]["timeout_s"] > 0          # defaults are filled in
    assert not run_dir.exists()


def test_bad_recipe_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(QUICKSTART.read_text().replace("loss_type: dapo", "loss_type: ppo"))
    for args in (["run", bad], ["run", tmp_path / "missing.yaml"], ["cpt", QUICKSTART, "--set", "cpt.seq_len=x"],
                 ["cpt", QUICKSTART, "--stage", "nosuch", "--dry-run"]):
        res = octo(*args)
        assert res.returncode == 2, (args, res.stderr)
        lines = [line for line in res.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("octo: error:"), res.stderr
        assert "Traceback" not in res.stderr


def test_invalid_yaml_names_the_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nprobe: [unclosed\n")
    res = octo("run", bad)
    assert res.returncode == 2 and "not valid YAML at line" in res.stderr


def test_unknown_command_is_exit_2():
    assert octo("frobnicate").returncode == 2


def test_cpt_frees_the_stages_cyclic_objects_before_it_destroys_the_process_group():
    """Under FSDP a stage's sharded model outlives the stage in reference cycles; octo cpt collects them, then
    waits for every rank, then destroys the group (a model freed at interpreter exit, after the group, aborted a
    finished 2-process run with SIGABRT)."""
    import gc

    from octo.cpt.cli import _end_process_group

    order = []

    class World:   # accelerate's PartialState, as octo cpt uses it
        def wait_for_everyone(self):
            order.append("barrier")

        def destroy_process_group(self):
            order.append("destroy")

    class Cyclic:
        def __init__(self):
            self.me = self

        def __del__(self):
            order.append("freed")

    gc.collect()
    gc.disable()   # only the collection under test may free it
    try:
        Cyclic()
        _end_process_group(World())
    finally:
        gc.enable()
    assert order == ["freed", "barrier", "destroy"]
