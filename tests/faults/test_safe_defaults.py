"""Safe defaults: nothing in a recipe or a checkpoint runs code; servers bind loopback; wandb is opt-in."""

from __future__ import annotations

import subprocess
import sys

import pytest

from octo.errors import OctoError


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # what a malicious pickle does: call something at load
        return (open, (str(self.marker), "w"))


def test_a_checkpoint_state_with_code_in_it_is_refused_not_run(tmp_path):
    import torch

    from octo.cpt.checkpoint import STATE, load_trainer_state

    marker = tmp_path / "pwned"
    torch.save({"step": 1, "evil": _Payload(marker)}, tmp_path / STATE)
    with pytest.raises(OctoError, match="refuses to load"):
        load_trainer_state(tmp_path)
    assert not marker.exists()


def test_a_recipe_with_a_python_tag_is_refused_not_run(tmp_path):
    marker = tmp_path / "pwned"
    recipe = tmp_path / "evil.yaml"
    recipe.write_text(f"name: !!python/object/apply:os.system ['touch {marker}']\n")
    res = subprocess.run([sys.executable, "-m", "octo.cli", "run", str(recipe), "--dry-run"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "not valid YAML" in res.stderr and "Traceback" not in res.stderr
    assert not marker.exists()


def test_octo_serve_binds_loopback_unless_told():
    import argparse

    from octo.rollout.serve import add_serve_arguments

    p = argparse.ArgumentParser()
    add_serve_arguments(p)
    assert p.parse_args(["model"]).host == "127.0.0.1"


def test_wandb_is_off_unless_asked():
    import argparse

    from octo.analysis.cli import add_report_arguments

    p = argparse.ArgumentParser()
    add_report_arguments(p)
    args = p.parse_args(["run"])
    assert not args.wandb and args.wandb_mode == "offline"
