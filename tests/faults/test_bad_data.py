"""Bad data never trains silently: malformed rows of a file source either stop the run before any
training with one line naming the file and line, or (``on_bad_rows: skip``) are left out and
counted by reason in manifest.json (``data_bad_rows``) and on stderr."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from octo.config import SourceConfig, dump_recipe, parse_recipe
from octo.context import RunContext
from octo.data.sources import LoadedSource, load_rows
from octo.data.templates import field_map
from octo.errors import ConfigError, OctoError
from octo.reuse import check_run_dir
from octo.runio import MANIFEST_FILE, RECIPE_FILE
from tests.conftest import QUICKSTART, REPO, TINY_OVERRIDES

GOOD = [{"text": f"good document number {i}"} for i in range(6)]


def _jsonl(rows: list) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in rows)


# name -> (file name, content, template, line/row of the bad row, reason, message fragment)
CASES = {
    "invalid_json": ("d.jsonl", _jsonl(GOOD[:2] + [b'{"text": "cut off'] + GOOD[2:]), "raw", "line 3",
                     "invalid_json", "is not valid JSON"),
    "missing_field": ("d.jsonl", _jsonl(GOOD[:4] + [{"body": "no text field"}] + GOOD[4:]), "raw", "line 5",
                      "missing_field", "has no field 'text'"),
    "missing_template_field": ("d.jsonl", _jsonl([{"query": f"q{i}", "content": f"a{i}"} for i in range(6)]
                                                 + [{"query": "q without an answer"}]), "IF", "line 7",
                               "missing_field", "has no field 'content'"),
    "non_utf8_jsonl": ("d.jsonl", _jsonl(GOOD[:1] + ['{"text": "caf'.encode() + b'\xe9"}'] + GOOD[1:]), "raw",
                       "line 2", "not_utf8", "is not UTF-8"),
    "empty_document": ("d.jsonl", _jsonl(GOOD[:3] + [{"text": "   "}] + GOOD[3:]), "raw", "line 4", "empty",
                       "is an empty document"),
    "not_an_object": ("d.jsonl", _jsonl(GOOD[:3] + [["a", "list"]] + GOOD[3:]), "raw", "line 4", "not_object",
                      "is not a JSON object"),
    "non_utf8_text": ("d.txt", b"\n\n".join([r["text"].encode() for r in GOOD[:3]]
                                            + [b"a document\nwith a bad \xff byte"]
                                            + [r["text"].encode() for r in GOOD[3:]]), "raw", "line 8",
                      "not_utf8", "is not UTF-8"),
}


def _write_case(tmp_path: Path, case: str) -> tuple[Path, SourceConfig, str, str, str]:
    fname, content, template, where, reason, fragment = CASES[case]
    path = tmp_path / fname
    path.write_bytes(content)
    return path, SourceConfig(path=str(path), template=template, heldout=2), where, reason, fragment


@pytest.mark.parametrize("case", list(CASES))
def test_bad_row_is_one_line_naming_file_and_line(tmp_path, case):
    path, cfg, where, _reason, fragment = _write_case(tmp_path, case)
    with pytest.raises(OctoError) as info:
        load_rows(path, cfg.template, field_map(cfg.template, cfg.fields), "s", cfg.on_bad_rows)
    msg = str(info.value)
    assert f"{path} {where} " in msg and fragment in msg, msg
    assert "on_bad_rows: skip" in msg and "\n" not in msg


@pytest.mark.parametrize("case", list(CASES))
def test_skip_loads_the_good_rows_and_counts_the_bad(tmp_path, tiny_ctx, case):
    path, cfg, where, reason, _fragment = _write_case(tmp_path, case)
    cfg.on_bad_rows = "skip"
    rows, bad = load_rows(path, cfg.template, field_map(cfg.template, cfg.fields), "s", "skip")
    assert len(rows) == 6 and bad.counts == {reason: 1}
    assert f"{path} {where}" in bad.summary() and "skipped 1 bad rows" in bad.summary()
    src = LoadedSource("s", cfg, tmp_path, tiny_ctx.tokenizer, 0)
    assert len(src.train) + len(src.heldout) == 6 and src.bad_rows == {reason: 1}
    texts = {tiny_ctx.tokenizer.decode(d.ids[:-1]) for d in src.train + src.heldout}
    assert not any("\ufffd" in t or not t.strip() for t in texts)


def test_parquet_missing_column_and_null_values(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"body": ["a", "b"]}), path)
    for mode in ("error", "skip"):  # a missing column is the whole file's problem: never skipped
        with pytest.raises(OctoError, match=r"d\.parquet has no column\(s\) text; columns are body") as info:
            load_rows(path, "raw", {"text": "text"}, "p", mode)
        assert "\n" not in str(info.value)
    pq.write_table(pa.table({"text": ["one", None, "three", ""]}), path)
    with pytest.raises(OctoError, match=r"d\.parquet row 2 has no field 'text'"):
        load_rows(path, "raw", {"text": "text"}, "p", "error")
    rows, bad = load_rows(path, "raw", {"text": "text"}, "p", "skip")
    assert [r["text"] for r in rows] == ["one", "three"] and bad.counts == {"missing_field": 1, "empty": 1}
    path.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(OctoError, match="is not a readable Parquet file"):
        load_rows(path, "raw", {"text": "text"}, "p", "error")


def test_a_source_with_only_bad_rows_is_an_error_even_with_skip(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"{oops\n" + _jsonl([{"text": ""}]))
    with pytest.raises(OctoError, match=r"holds no documents \(2 bad rows skipped; first: .* line 1 is not valid"):
        load_rows(path, "raw", {"text": "text"}, "s", "skip")


def test_on_bad_rows_is_validated(quickstart_raw):
    with pytest.raises(ConfigError, match=r"data\.sources\.web\.on_bad_rows': must be one of: error, skip"):
        parse_recipe(copy.deepcopy(quickstart_raw), ["data.sources.web.on_bad_rows=maybe"])


def _file_recipe(raw: dict, tmp_path: Path, data: Path, mode: str):
    return parse_recipe(copy.deepcopy(raw), TINY_OVERRIDES + [
        f"run_dir={tmp_path / 'run'}", f"data.sources.web.path={data}", f"data.sources.web.on_bad_rows={mode}",
        "data.sources.web.heldout=2"])


def test_skipped_rows_go_into_the_manifest_and_stderr_once(tmp_path, quickstart_raw, capsys):
    data = tmp_path / "web.jsonl"
    data.write_bytes(_jsonl(GOOD[:2] + [b"{not json", {"body": "x"}, b"{also not json"] + GOOD[2:]))
    ctx = RunContext(_file_recipe(quickstart_raw, tmp_path, data, "skip"))
    try:
        ctx.prepare()
        err = capsys.readouterr().err
        assert err.count("source 'web': skipped 3 bad rows") == 1
        assert "(invalid_json: 2, missing_field: 1)" in err and f"{data} line 3 is not valid JSON" in err
        manifest = json.loads((ctx.run_dir / MANIFEST_FILE).read_text())
        assert manifest["data_bad_rows"] == {"web": {"invalid_json": 2, "missing_field": 1}}
        src = ctx.source("web")
        assert len(src.train) + len(src.heldout) == 6
        assert "skipped" not in capsys.readouterr().err  # loading for training does not say it again
    finally:
        ctx.release()


def test_bad_rows_stop_prepare_before_anything_is_built(tmp_path, quickstart_raw):
    data = tmp_path / "web.jsonl"
    data.write_bytes(_jsonl(GOOD + [{"text": ""}]))
    ctx = RunContext(_file_recipe(quickstart_raw, tmp_path, data, "error"))
    try:
        with pytest.raises(OctoError, match=rf"source 'web': {data} line 7 is an empty document"):
            ctx.prepare()
    finally:
        ctx.release()
    assert not (ctx.run_dir / "tokenizer").exists() and not (ctx.run_dir / MANIFEST_FILE).exists()


def test_cli_bad_data_is_exit_2_one_line_before_training(tmp_path):
    data = tmp_path / "web.jsonl"
    data.write_bytes(_jsonl(GOOD[:3] + [b'{"text": "\xff\xfe"}'] + GOOD[3:]))
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "octo.cli", "cpt", str(QUICKSTART), "--run-dir", str(run_dir),
           "--set", f"data.sources.web.path={data}"]
    for o in TINY_OVERRIDES:
        cmd += ["--set", o]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(REPO))
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr[-3000:]
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("octo: error: source 'web':"), res.stderr
    assert f"{data} line 4 is not UTF-8" in lines[0] and "Traceback" not in res.stderr
    assert not (run_dir / "cpt").exists() and not (run_dir / "world").exists()  # nothing built, nothing trained


def test_run_made_before_on_bad_rows_existed_is_still_accepted(tiny_recipe):
    """recipe.resolved.yaml of an older octo lacks sources' on_bad_rows: at its default that is not an edit."""
    run = tiny_recipe.run_path
    old = yaml.safe_load(dump_recipe(tiny_recipe))
    for src in old["data"]["sources"].values():
        del src["on_bad_rows"]
    run.mkdir(parents=True)
    (run / RECIPE_FILE).write_text(yaml.safe_dump(old, sort_keys=False))
    check_run_dir(tiny_recipe)  # accepted
    for src in old["data"]["sources"].values():
        src["on_bad_rows"] = "skip"
    (run / RECIPE_FILE).write_text(yaml.safe_dump(old, sort_keys=False))
    with pytest.raises(OctoError, match="on_bad_rows"):
        check_run_dir(tiny_recipe)
