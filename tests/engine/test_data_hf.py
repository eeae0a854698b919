"""Hugging Face dataset sources (``path: hf:...``), built locally: no network, no Hub."""

from __future__ import annotations

import json

import pytest

from octo.config import SourceConfig, parse_recipe
from octo.data.sources import LoadedSource, read_source
from octo.errors import ConfigError, OctoError

IF_FIELDS = {"query": "prompt", "content": "messages.-1.content"}


def _rows(n, start=0):
    return [{"prompt": f"Write {i} words.", "id": i,
             "messages": [{"role": "user", "content": f"Write {i} words."},
                          {"role": "assistant", "content": f"Here are {i} words."}]}
            for i in range(start, start + n)]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A Dataset.save_to_disk directory, a DatasetDict one, and a folder of JSONL data files."""
    import datasets

    datasets.disable_progress_bars()
    root = tmp_path_factory.mktemp("hf")
    datasets.Dataset.from_list(_rows(12)).save_to_disk(str(root / "ds"))
    datasets.DatasetDict({"train": datasets.Dataset.from_list(_rows(6)),
                          "test": datasets.Dataset.from_list(_rows(3, 100))}).save_to_disk(str(root / "dd"))
    (root / "files").mkdir()
    (root / "files" / "train.jsonl").write_text("".join(json.dumps({"text": f"document {i}"}) + "\n"
                                                        for i in range(9)))
    return root


def test_save_to_disk_directory_with_nested_fields(saved, tiny_ctx):
    cfg = SourceConfig(path=f"hf:{saved / 'ds'}", template="IF", fields=IF_FIELDS, heldout=2)
    src = LoadedSource("if", cfg, saved, tiny_ctx.tokenizer, 0)
    assert len(src.train) == 10 and len(src.heldout) == 2
    tok = tiny_ctx.tokenizer
    texts = sorted(tok.decode(d.ids[:-1]) for d in src.train + src.heldout)
    assert texts[0] == "User:Write 0 words.\nAssistant:Here are 0 words."
    assert all(tok.decode(d.ids[:d.n_prompt]).endswith("Assistant:") for d in src.train)


def test_dataset_dict_split_and_data_file_folder_streaming_with_max_docs(saved):
    test = read_source("s", SourceConfig(path=f"hf:{saved / 'dd'}", split="test", template="IF",
                                         fields=IF_FIELDS), saved)
    assert [r["id"] for r in test.rows] == [100, 101, 102]
    with pytest.raises(OctoError, match="has no split 'dev'; its splits are train, test"):
        read_source("s", SourceConfig(path=f"hf:{saved / 'dd'}", split="dev"), saved)
    full = read_source("s", SourceConfig(path=f"hf:{saved / 'files'}"), saved)
    assert [r["text"] for r in full.rows] == [f"document {i}" for i in range(9)]
    streamed = read_source("s", SourceConfig(path=f"hf:{saved / 'files'}", streaming=True, max_docs=4), saved)
    assert [r["text"] for r in streamed.rows] == [f"document {i}" for i in range(4)]
    capped = read_source("s", SourceConfig(path=f"hf:{saved / 'files'}", max_docs=4), saved)
    assert capped.rows == streamed.rows and capped.fingerprint == streamed.fingerprint


def test_fingerprint_names_the_dataset_and_hashes_the_rows(saved, tmp_path):
    import datasets

    base = SourceConfig(path=f"hf:{saved / 'ds'}", template="IF", fields=IF_FIELDS)
    fp = read_source("s", base, saved).fingerprint
    assert read_source("s", base, saved).fingerprint == fp  # deterministic
    assert read_source("s", SourceConfig(**{**vars(base), "max_docs": 5}), saved).fingerprint != fp
    rows = _rows(12)
    rows[7]["messages"][1]["content"] = "changed"
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "ds2"))
    assert read_source("s", SourceConfig(**{**vars(base), "path": f"hf:{tmp_path / 'ds2'}"}),
                       saved).fingerprint != fp


def test_errors_are_one_sentence_before_training(saved, tmp_path):
    import datasets

    datasets.Dataset.from_list([{"text": "  "}, {"text": ""}]).save_to_disk(str(tmp_path / "blank"))
    datasets.Dataset.from_list([{"text": "ok"}, {"text": None}, {"text": "fine"}]).save_to_disk(
        str(tmp_path / "holes"))
    cases = [
        (SourceConfig(path="hf:octo-test/no-such-dataset-anywhere"), "could not load the Hugging Face dataset"),
        (SourceConfig(path=f"hf:{saved / 'ds'}", template="IF", fields={"query": "question"}),
         "has no column(s) question, content; its columns are prompt, id, messages"),
        (SourceConfig(path=f"hf:{saved / 'ds'}", template="IF", fields={"query": "prompt",
                                                                       "content": "messages.5.content"}),
         "row 1 has no field 'messages.5.content'"),
        (SourceConfig(path=f"hf:{tmp_path / 'blank'}"), "row 1 is an empty document"),
        (SourceConfig(path=f"hf:{tmp_path / 'blank'}", on_bad_rows="skip"), "holds no documents (2 bad rows"),
    ]
    for cfg, fragment in cases:
        with pytest.raises(OctoError) as info:
            read_source("s", cfg, tmp_path)
        msg = str(info.value)
        assert fragment in msg and "\n" not in msg, (cfg.path, msg)
    offline = str(pytest.raises(OctoError, read_source, "s", cases[0][0], tmp_path).value)
    assert "HF_DATASETS_OFFLINE=1" in offline and "save_to_disk" in offline
    holes = read_source("s", SourceConfig(path=f"hf:{tmp_path / 'holes'}", on_bad_rows="skip"), tmp_path)
    assert [r["text"] for r in holes.rows] == ["ok", "fine"] and holes.bad.counts == {"missing_field": 1}


@pytest.mark.parametrize("source,key,fragment", [
    ({"path": "data.jsonl", "split": "test"}, "split", "applies only to Hugging Face sources"),
    ({"path": "hf:x/y", "max_docs": -1}, "max_docs", ">= 0"),
    # streaming is for hf: datasets and local files (tests/engine/test_data_stream.py), not toy sources
    ({"path": "toy:web", "streaming": True}, "streaming", "not to toy-world sources"),
    ({"path": "data.jsonl", "shuffle_buffer": 10}, "shuffle_buffer", "applies only to streamed sources"),
    ({"path": "hf:x/y", "streaming": True, "shuffle_buffer": 0}, "shuffle_buffer", ">= 1"),
])
def test_recipe_checks_hf_fields(quickstart_raw, source, key, fragment):
    import copy

    raw = copy.deepcopy(quickstart_raw)
    raw["data"]["sources"]["web"] = source
    with pytest.raises(ConfigError) as info:
        parse_recipe(raw)
    assert info.value.key == f"data.sources.web.{key}" and fragment in str(info.value)


def test_prepare_reads_an_hf_source_once_and_fingerprints_it(saved, tiny_recipe, monkeypatch):
    import dataclasses

    from octo.context import RunContext
    from octo.data import sources
    from octo.runio import read_json

    recipe = dataclasses.replace(tiny_recipe, data=dataclasses.replace(
        tiny_recipe.data, sources={**tiny_recipe.data.sources,
                                   "if": SourceConfig(path=f"hf:{saved / 'ds'}", template="IF", fields=IF_FIELDS,
                                                      heldout=2)}))
    opened = []
    real = sources._open_hf
    monkeypatch.setattr(sources, "_open_hf", lambda *a: opened.append(a) or real(*a))
    ctx = RunContext(recipe)
    ctx.prepare()
    try:
        fp = read_json(ctx.run_dir / "manifest.json")["data_fingerprints"]["if"]
        assert fp == read_source("if", recipe.data.sources["if"], ctx.run_dir).fingerprint
        opened.clear()
        assert len(ctx.source("if").train) == 10 and opened == []  # the rows read by prepare are reused
    finally:
        ctx.release()
