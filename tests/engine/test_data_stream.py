"""Streamed sources (``streaming: true``): lazy reading, a seeded shuffle buffer, exact resume, epochs,
checks before training, preview, and a short ``octo cpt`` stage killed and resumed. All data is local."""

from __future__ import annotations

import copy
import json
import re
import shutil

import pytest

from octo.config import SourceConfig
from octo.data import stream as stream_mod
from octo.data.sources import read_source
from octo.data.stream import CHUNK_ROWS, StreamSource
from octo.errors import OctoError
from tests.conftest import QUICKSTART, TINY_OVERRIDES
from tests.engine.poisoned_cpt import scale_loss


def _text(i: int) -> str:
    sums = (f"{(i * 7 + k) % 97} plus {k} is {(i * 7 + k) % 97 + k}." for k in range(i % 5 + 1))
    return f"document {i}: " + " ".join(sums)


def _rows(n: int) -> list[dict]:
    return [{"text": _text(i), "id": i} for i in range(n)]


def _jsonl(path, rows, extra: dict[int, str] | None = None):
    """Rows as JSONL; ``extra`` replaces line i (0-based) by raw text (a malformed row)."""
    lines = [json.dumps(r) for r in rows]
    for i, raw in (extra or {}).items():
        lines[i] = raw
    path.write_text("".join(line + "\n" for line in lines))
    return path


def _ids(stream, n):
    return [stream.next().ids for _ in range(n)]


def _numbers(tok, docs) -> list[int]:
    """The document number of each drawn document ("document <i>: ...")."""
    return [int(re.match(r"document (\d+):", tok.decode(d.ids, skip_special_tokens=True)).group(1)) for d in docs]


def _source(tmp_path, tok, **cfg) -> StreamSource:
    return StreamSource("s", SourceConfig(streaming=True, **cfg), tmp_path, tok, 0)


# --- lazy reading --------------------------------------------------------------------------------------

def test_a_stream_reads_only_what_the_draw_needs(tmp_path, tiny_ctx, monkeypatch):
    """A dataset whose iterator counts the rows it yields: the check reads the first rows only, and K
    documents drawn through a buffer of B read about K + B rows of a 100,000-row stream."""
    import datasets

    read = [0]

    def rows():
        for i in range(100_000):
            read[0] += 1
            yield {"text": _text(i)}

    counted = datasets.IterableDataset.from_generator(rows)
    monkeypatch.setattr(stream_mod, "_open_hf", lambda name, cfg: counted)
    cfg = SourceConfig(path="hf:octo-test/counted", streaming=True, heldout=0, shuffle_buffer=64)
    checked = read_source("s", cfg, tmp_path)
    assert read[0] == stream_mod.CHECK_ROWS + 1  # the checked rows, and one more to see that the stream goes on
    assert len(checked.rows) == stream_mod.CHECK_ROWS
    read[0] = 0
    src = StreamSource("s", cfg, tmp_path, tiny_ctx.tokenizer, 0, read=checked)
    assert read[0] == 0  # nothing is read before the first document is drawn
    stream = src.doc_stream(0)
    docs = [stream.next() for _ in range(300)]
    assert 300 + 64 <= read[0] <= 300 + 64 + CHUNK_ROWS and stream.rows_read == read[0]
    # the buffer never emits a row it has not read: the k-th document is at most row k + B
    assert all(n <= k + 64 for k, n in enumerate(_numbers(tiny_ctx.tokenizer, docs)))


def test_a_local_file_stream_holds_only_the_buffer(tmp_path, tiny_ctx):
    path = _jsonl(tmp_path / "big.jsonl", _rows(5000))
    src = _source(tmp_path, tiny_ctx.tokenizer, path=str(path), heldout=10, shuffle_buffer=32)
    stream = src.doc_stream(0)
    _ids(stream, 100)
    state = stream.state_dict()
    assert stream.rows_read <= 100 + 32 + CHUNK_ROWS and len(state["buffer"]) == 32 - 1
    assert state["next"][0] < path.stat().st_size / 5  # byte offset: a small prefix of the file was read
    assert len(stream.buffer) + len(stream._pending) <= 32 + CHUNK_ROWS


# --- order -----------------------------------------------------------------------------------------------

def test_order_is_seeded_and_every_epoch_is_a_permutation_of_the_training_rows(tmp_path, tiny_ctx):
    tok = tiny_ctx.tokenizer
    path = _jsonl(tmp_path / "d.jsonl", _rows(60))
    src = _source(tmp_path, tok, path=str(path), heldout=4, shuffle_buffer=16)
    assert _numbers(tok, src.heldout) == [0, 1, 2, 3]  # held out: the first documents, never trained on
    stream = src.doc_stream(0)
    first, second = _numbers(tok, [stream.next() for _ in range(56)]), _numbers(tok, [stream.next() for _ in range(56)])
    assert sorted(first) == sorted(second) == list(range(4, 60))
    assert first != sorted(first) and first != second and stream.epoch == 1
    assert [d.ids for d in (stream.next(),)] and stream.epoch == 2
    again = src.doc_stream(0)
    assert _numbers(tok, [again.next() for _ in range(56)]) == first  # the same seed: the same order
    other = src.doc_stream(1)
    assert _numbers(tok, [other.next() for _ in range(56)]) != first
    in_order = _source(tmp_path, tok, path=str(path), heldout=4, shuffle_buffer=1).doc_stream(0)
    assert _numbers(tok, [in_order.next() for _ in range(60)]) == list(range(4, 60)) + [4, 5, 6, 7]


def test_a_stream_never_trains_on_a_copy_of_a_held_out_document(tmp_path, tiny_ctx):
    tok = tiny_ctx.tokenizer
    rows = _rows(20)
    rows[10] = dict(rows[1])  # the source repeats held-out document 1 and training document 12 verbatim
    rows[15] = dict(rows[12])
    src = _source(tmp_path, tok, path=str(_jsonl(tmp_path / "d.jsonl", rows)), heldout=4, shuffle_buffer=4)
    stream = src.doc_stream(0)
    drawn = _numbers(tok, [stream.next() for _ in range(15)])
    assert sorted(drawn) == sorted([i for i in range(4, 20) if i != 10 and i != 15] + [12])
    assert stream.dropped_heldout == 1 and 1 not in drawn


def test_max_docs_bounds_every_epoch(tmp_path, tiny_ctx):
    tok = tiny_ctx.tokenizer
    path = _jsonl(tmp_path / "d.jsonl", _rows(30))
    stream = _source(tmp_path, tok, path=str(path), heldout=2, max_docs=12, shuffle_buffer=4).doc_stream(0)
    drawn = _numbers(tok, [stream.next() for _ in range(30)])
    assert [sorted(drawn[i:i + 10]) for i in (0, 10, 20)] == [list(range(2, 12))] * 3
    assert stream.epoch == 2 and stream.rows_read == 30


# --- exact resume ----------------------------------------------------------------------------------------

def _make(kind, tmp_path):
    """(SourceConfig fields) of a 40-row source of the given kind, built locally."""
    rows = _rows(40)
    if kind == "jsonl-skip":  # malformed rows skipped, one inside the checked prefix and one after it
        path = _jsonl(tmp_path / "d.jsonl", rows, {5: "{not json", 27: '{"body": "no text"}'})
        return {"path": str(path), "on_bad_rows": "skip"}
    if kind == "text":
        path = tmp_path / "d.txt"
        path.write_text("\n\n".join(r["text"] for r in rows) + "\n")
        return {"path": str(path)}
    if kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet", row_group_size=7)
        return {"path": str(tmp_path / "d.parquet")}
    import datasets

    if kind == "hf-saved":  # a Dataset.save_to_disk directory: rows read back by index
        datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
        return {"path": f"hf:{tmp_path / 'saved'}"}
    (tmp_path / "files").mkdir()  # load_dataset(<folder>, streaming=True): an IterableDataset, re-read and skipped
    _jsonl(tmp_path / "files" / "train.jsonl", rows)
    return {"path": f"hf:{tmp_path / 'files'}"}


@pytest.mark.parametrize("kind", ["jsonl-skip", "text", "parquet", "hf-saved", "hf-iterable"])
def test_resume_mid_stream_draws_exactly_the_uninterrupted_documents(kind, tmp_path, tiny_ctx, monkeypatch):
    import io

    import torch

    monkeypatch.setattr(stream_mod, "CHECK_ROWS", 20)  # a stream that goes on past its checked rows
    monkeypatch.setattr(stream_mod, "CHUNK_ROWS", 5)   # states saved between chunks and inside one
    fields = _make(kind, tmp_path)
    tok = tiny_ctx.tokenizer
    # long_docs: drop as well (the documents are 20 to 67 tokens), so the stream leaves some out
    src = _source(tmp_path, tok, heldout=3, shuffle_buffer=8, **fields)
    src.max_len = 60
    ref_stream = src.doc_stream(7)
    ref = _ids(ref_stream, 130)  # about four epochs
    assert ref_stream.epoch >= 3 and ref_stream.dropped_long > 0
    assert all(len(ids) <= 60 for ids in ref)
    mid_chunk = 0
    for k in (0, 1, 2, 13, 29, 30, 31, 70):
        first = src.doc_stream(7)
        assert _ids(first, k) == ref[:k]
        mid_chunk += bool(first._pending)  # rows read and tokenized ahead of the buffer: not in the state
        state = json.loads(json.dumps(first.state_dict()))  # survives JSON and torch.save(weights_only) alike
        buf = io.BytesIO()
        torch.save(first.state_dict(), buf)
        buf.seek(0)
        assert torch.load(buf, weights_only=True) == state
        resumed = StreamSource("s", src.cfg, tmp_path, tok, 0, max_len=60).doc_stream(7)
        resumed.load_state_dict(state)
        assert _ids(resumed, 130 - k) == ref[k:], (kind, k)
    assert mid_chunk >= 2


def test_a_changed_source_or_a_whole_source_state_is_one_sentence(tmp_path, tiny_ctx):
    path = _jsonl(tmp_path / "d.jsonl", _rows(40))
    src = _source(tmp_path, tiny_ctx.tokenizer, path=str(path), heldout=0, shuffle_buffer=8)
    stream = src.doc_stream(0)
    _ids(stream, 20)
    state = stream.state_dict()
    with pytest.raises(OctoError, match="read whole, before it was streamed"):
        src.doc_stream(0).load_state_dict({"epoch": 0, "pos": 3})
    path.write_text("".join(json.dumps({"text": f"other {i}"}) + "\n" for i in range(5)))  # shorter now
    with pytest.raises(OctoError) as info:
        src.doc_stream(0).load_state_dict(state)
    assert "the source changed since the checkpoint" in str(info.value) and "\n" not in str(info.value)


# --- checks before training, fingerprints --------------------------------------------------------------

def test_errors_are_one_line_and_only_the_first_rows_are_checked(tmp_path, tiny_ctx, monkeypatch):
    import datasets

    monkeypatch.setattr(stream_mod, "CHECK_ROWS", 10)
    datasets.Dataset.from_list([{"body": "x"}] * 3).save_to_disk(str(tmp_path / "nocol"))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([{"body": "x"}]), tmp_path / "nocol.parquet")
    (tmp_path / "empty.jsonl").write_text("\n")
    (tmp_path / "data.csv").write_text("a,b\n")
    cases = [
        ({"path": str(tmp_path / "missing.jsonl")}, "does not exist"),
        ({"path": str(_jsonl(tmp_path / "nofield.jsonl", [{"body": "x"}]))}, "line 1 has no field 'text'"),
        ({"path": str(_jsonl(tmp_path / "badjson.jsonl", _rows(3), {1: "{nope"}))}, "line 2 is not valid JSON"),
        ({"path": str(tmp_path / "nocol.parquet")}, "has no column(s) text; its columns are body"),
        ({"path": f"hf:{tmp_path / 'nocol'}"}, "has no column(s) text; its columns are body"),
        ({"path": "hf:octo-test/no-such-dataset-anywhere"}, "could not load the Hugging Face dataset"),
        ({"path": str(tmp_path / "empty.jsonl")}, "holds no documents"),
        ({"path": str(_jsonl(tmp_path / "allbad.jsonl", [{"body": "x"}] * 30)), "on_bad_rows": "skip"},
         "holds no documents in its first 10 rows (10 bad rows skipped"),
        ({"path": str(tmp_path / "data.csv")}, "unsupported type"),
    ]
    for fields, fragment in cases:
        with pytest.raises(OctoError) as info:
            read_source("s", SourceConfig(streaming=True, **fields), tmp_path)
        assert fragment in str(info.value) and "\n" not in str(info.value), (fields, str(info.value))
    # a malformed row past the checked rows: the check passes, the stream stops there with its line
    late = _jsonl(tmp_path / "late.jsonl", _rows(40), {29: "{broken"})
    src = _source(tmp_path, tiny_ctx.tokenizer, path=str(late), heldout=0, shuffle_buffer=4)
    with pytest.raises(OctoError, match=r"late\.jsonl line 30 is not valid JSON"):
        _ids(src.doc_stream(0), 40)


def test_fingerprint_is_the_first_rows_and_how_the_source_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr(stream_mod, "CHECK_ROWS", 10)
    rows = _rows(30)
    path = _jsonl(tmp_path / "d.jsonl", rows)

    def fp(**extra):
        return read_source("s", SourceConfig(path=str(path), streaming=True, **extra), tmp_path).fingerprint

    base = fp()
    assert fp() == base and fp(max_docs=20) != base and fp(shuffle_buffer=5) == base  # order is not data
    edited = copy.deepcopy(rows)
    edited[3]["text"] = edited[3]["text"].replace("document", "Document")  # same size, inside the first rows
    _jsonl(path, edited)
    assert fp() != base
    edited = copy.deepcopy(rows)
    edited[25]["text"] = edited[25]["text"].replace("document", "Document")  # same size, past them: not seen
    _jsonl(path, edited)
    assert fp() == base
    _jsonl(path, rows + _rows(1))  # a file that grew
    assert fp() != base


def test_recipe_and_cli_errors_exit_2_before_training(tmp_path, capsys):
    from octo.cli import main

    sets = [a for o in TINY_OVERRIDES for a in ("--set", o)]
    missing = tmp_path / "missing.jsonl"
    argv = ["cpt", str(QUICKSTART), *sets, "--run-dir", str(tmp_path / "run"), "--stage", "pretrain",
            "--set", f"data.sources.big.path={missing}", "--set", "data.sources.big.streaming=true"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"octo: error: source 'big': file {missing} does not exist; fix data.sources.big.path"
    assert not (tmp_path / "run" / "cpt").exists()


# --- octo data preview, octo cpt ----------------------------------------------------------------------------

def test_preview_reads_a_bounded_prefix_of_a_stream(tmp_path, capsys):
    from octo.cli import main

    rows = _rows(5000)
    rows[100:110] = [dict(r) for r in rows[:10]]  # the 10 rows after the 100 held-out ones repeat 10 of them
    path = _jsonl(tmp_path / "big.jsonl", rows)
    sets = [a for o in TINY_OVERRIDES for a in ("--set", o)]
    argv = ["data", "preview", str(QUICKSTART), *sets, "--run-dir", str(tmp_path / "run"), "--stage", "pretrain",
            "--tokens", "2048", "--samples", "1", "--set", f"data.sources.big.path={path}",
            "--set", "data.sources.big.streaming=true", "--set", "data.sources.big.shuffle_buffer=16",
            "--set", "cpt.stages.pretrain.mixture={web: 0.5, big: 0.5}"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    row = next(line.split() for line in out.splitlines() if line.startswith("big "))
    assert row[5:9] == ["stream", "100", "-", "-"] and abs(float(row[2]) - 0.5) < 0.05
    read = int(re.search(r"big: streamed, read ([\d,]+) rows", out).group(1).replace(",", ""))
    # held-out skip, drawn, buffer, one chunk, and the copies of held-out documents left out
    assert 100 + 10 + 16 < read <= 100 + int(row[4]) + 16 + CHUNK_ROWS + 10
    assert "documents; left out 10 copies of held-out documents)" in out


STEPS = 8


def _stream_ctx(base_ctx, quickstart_raw, run_dir, data):
    """A prepared tiny run whose pretrain stage reads a streamed JSONL and a toy source (world and
    tokenizer copied from ``base_ctx``, as tests/engine/test_stability.py does)."""
    from octo.config import parse_recipe
    from octo.context import RunContext

    run_dir.mkdir(parents=True)
    for name in ("world", "tokenizer"):
        shutil.copytree(base_ctx.run_dir / name, run_dir / name)
    shutil.copy2(base_ctx.run_dir / "manifest.json", run_dir / "manifest.json")
    raw = copy.deepcopy(quickstart_raw)
    raw["data"]["sources"]["stream"] = {"path": str(data), "streaming": True, "shuffle_buffer": 32, "heldout": 8}
    recipe = parse_recipe(raw, TINY_OVERRIDES + [
        "cpt.threads=1", f"cpt.stages.pretrain.tokens={STEPS * 512}", "cpt.gates.problems=0",
        "cpt.stages.pretrain.mixture={stream: 0.6, web: 0.4}", "cpt.stages.pretrain.save_every=3",
        "cpt.stages.pretrain.keep_last=5", f"run_dir={run_dir}"])
    ctx = RunContext(recipe)
    ctx.prepare()
    return ctx


def test_cpt_stage_on_a_stream_killed_and_resumed_repeats_the_loss_sequence(tmp_path, tiny_ctx, quickstart_raw,
                                                                            monkeypatch):
    from octo.cpt import trainer
    from octo.cpt.checkpoint import load_trainer_state
    from octo.runio import read_json, read_jsonl

    data = _jsonl(tmp_path / "stream.jsonl", _rows(3000))

    def run(ctx):
        trainer.run_stage(ctx, "pretrain")
        return [{k: v for k, v in r.items() if k not in ("time/step", "tokens_per_s")}
                for r in read_jsonl(ctx.stage_dir("pretrain") / "metrics.jsonl")]

    ref_ctx = _stream_ctx(tiny_ctx, quickstart_raw, tmp_path / "ref", data)
    ref = run(ref_ctx)
    ref_ctx.release()
    assert len(ref) == STEPS and all(abs(r["mix/stream"] - 0.6) < 0.1 for r in ref[2:])
    assert ref[-1]["loss"] < ref[0]["loss"]
    fp = read_json(ref_ctx.run_dir / "manifest.json")["data_fingerprints"]["stream"]
    assert fp == ref_ctx.source("stream").fingerprint
    state = load_trainer_state(ref_ctx.stage_dir("pretrain") / "checkpoints" / f"step-{STEPS}")
    sampler = state["packer"]["mixture"]["streams"]["stream"]
    assert len(sampler["buffer"]) == 31 and sampler["next"][1] < 3000 // 5  # read lazily: a prefix of the file
    gates = read_jsonl(ref_ctx.stage_dir("pretrain") / "gates.jsonl")
    assert "ppl/stream" in gates[0]  # the stream's held-out documents feed the perplexity gate

    ctx = _stream_ctx(tiny_ctx, quickstart_raw, tmp_path / "killed", data)

    def interrupt_at_5(step):
        if step == 5:
            raise KeyboardInterrupt  # after the checkpoint of step 3, before step 5's update
        return 1.0

    scale_loss(interrupt_at_5, monkeypatch.setattr)
    with pytest.raises(KeyboardInterrupt):
        trainer.run_stage(ctx, "pretrain")
    monkeypatch.undo()
    assert len(read_jsonl(ctx.stage_dir("pretrain") / "metrics.jsonl")) == 4
    ctx.release()
    from octo.context import RunContext

    again = RunContext(ctx.recipe)  # a fresh context, as a rerun of `octo cpt` makes
    again.prepare()
    try:
        assert run(again) == ref  # the resumed stage read exactly the documents of the uninterrupted one
    finally:
        again.release()
