"""``octo export CHECKPOINT OUT``: weights-only, loads with transformers, identical logits; user errors exit 2."""

from __future__ import annotations

import json

import pytest

from octo.cli import main


@pytest.fixture
def checkpoint(tmp_path, tiny_ctx):
    import torch

    from octo.cpt.checkpoint import save_checkpoint
    from octo.model import build_toy_model

    model = build_toy_model(tiny_ctx.recipe.model, tiny_ctx.tokenizer, seed=3)
    manifest = {"stage": "stable", "step": 4, "tokens": 2048, "restore_mode": "full", "seed": 0,
                "tokenizer_hash": tiny_ctx.manifest["tokenizer_hash"], "data_fingerprints": {"web": "abc"}}
    return save_checkpoint(tmp_path / "ckpts" / "step-4", model=model, tokenizer=tiny_ctx.tokenizer,
                           trainer_state={"step": 4, "optimizer": {"t": torch.ones(2)}}, manifest=manifest)


def test_export_is_weights_only_and_gives_identical_logits(tmp_path, checkpoint, capsys):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from octo.cpt.checkpoint import verify_checkpoint

    out = tmp_path / "export"
    assert main(["export", str(checkpoint), str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    names = {p.name for p in out.iterdir()}
    assert "trainer_state.pt" not in names
    assert {"model.safetensors", "config.json", "tokenizer.json", "manifest.json"} <= names
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["restore_mode"] == "weights" and manifest["source_restore_mode"] == "full"
    assert manifest["exported_from"] == str(checkpoint.resolve())
    assert (manifest["stage"], manifest["step"]) == ("stable", 4)
    assert set(manifest["files"]) == names - {"manifest.json"} and verify_checkpoint(out) is None
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    ids = torch.tensor([[5, 17, 42, 99, 3, 250]])
    with torch.no_grad():
        a = AutoModelForCausalLM.from_pretrained(out).eval()(ids).logits
        b = AutoModelForCausalLM.from_pretrained(checkpoint).eval()(ids).logits
    assert torch.equal(a, b)
    assert AutoTokenizer.from_pretrained(out).encode("2 + 3 = 5") == AutoTokenizer.from_pretrained(checkpoint).encode(
        "2 + 3 = 5")
    # an empty directory is a valid target
    (tmp_path / "empty").mkdir()
    assert main(["export", str(checkpoint), str(tmp_path / "empty")]) == 0


def test_export_errors_are_one_sentence_and_exit_2(tmp_path, checkpoint, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    not_ckpt = tmp_path / "not-a-checkpoint"
    not_ckpt.mkdir()
    damaged = checkpoint.parent / "step-5"
    import shutil

    shutil.copytree(checkpoint, damaged)
    (damaged / "model.safetensors").write_bytes(b"x")
    cases = [
        ([str(not_ckpt), str(tmp_path / "a")], "is not an octo checkpoint"),
        ([str(tmp_path / "missing"), str(tmp_path / "b")], "is not an octo checkpoint"),
        ([str(checkpoint), str(out)], "already exists and is not an empty directory"),
        ([str(damaged), str(tmp_path / "c")], "cannot export a damaged checkpoint"),
    ]
    for argv, words in cases:
        assert main(["export", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("octo: error: ") and words in err and "\n" not in err, err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert not any((tmp_path / n).exists() for n in ("a", "b", "c"))
