"""Streamed sources (``streaming: true``): read, rendered and tokenized lazily, shuffled through a buffer.

:class:`StreamDocs` reads an ``hf:`` dataset (``streaming=True``) or a local JSONL / Parquet / text
file in chunks of ``CHUNK_ROWS`` and holds at most ``shuffle_buffer`` documents plus one chunk.
:func:`check_stream` checks the first ``CHECK_ROWS`` rows before training; later rows are checked as
they are read (``on_bad_rows``: stop with file and line, or skip).

Fingerprint (seed 003 nu_data): sha256 of the first ``CHECK_ROWS`` rows and of the reading options
(and a file's size), so a same-size edit further into a file is not detected. Held-out documents are
the first ``heldout`` good ones; an epoch is one pass over the rest. Order is a shuffle buffer as in
``datasets``' ``IterableDataset.shuffle``: the k-th document of epoch e is the entry at
``blake2b(f"{seed}:{e}:{k}") mod len(buffer)``.

Exact resume: :meth:`StreamDocs.state_dict` holds positions (byte offset or row number) of the
buffered rows, never the documents; loading reads those rows again (an ``IterableDataset`` is
re-read from the oldest buffered row with ``skip``).
"""

from __future__ import annotations

import hashlib
import json
import zlib
from array import array
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from octo.config import STREAM_CHECK_ROWS, SourceConfig
from octo.data.sources import (
    BadRows,
    Document,
    SourceRows,
    _check_row,
    _hf_where,
    _one_line,
    _open_hf,
    _pyarrow_parquet,
    check_columns,
    file_kind,
    is_hf,
    jsonl_items,
    resolve_path,
    text_items,
    tokenize_documents,
)
from octo.data.templates import field_map, render
from octo.errors import OctoError

CHECK_ROWS = STREAM_CHECK_ROWS  # rows of a stream checked and hashed before training
CHUNK_ROWS = 256    # rows read, rendered and tokenized together while training

# A stream position: (where the row starts: a byte offset or a row number, rows before it, lines before it).
Cursor = tuple[int, int, int]
START: Cursor = (0, 0, 0)


# --- readers: the rows of a source from a position on ------------------------------------------------

class _Reader:
    """Rows of one source from a position on. ``items`` yields (cursor, cursor after, row or None when
    malformed (recorded in ``bad``), where) for every row; ``rows_at`` reads the rows at given cursors."""

    def items(self, start: Cursor, bad: BadRows):
        raise NotImplementedError

    def rows_at(self, cursors: list[Cursor], bad: BadRows) -> list[tuple[dict | None, str] | None]:
        """(row, where) at each cursor (None where no row starts there): one pass from the first of them."""
        out: list[tuple[dict | None, str] | None] = [None] * len(cursors)
        want = {c[0]: i for i, c in enumerate(cursors)}
        left = len(want)
        if not left:
            return out
        for cur, _after, row, where in self.items(min(cursors), bad):
            i = want.get(cur[0])
            if i is not None:
                out[i] = (row, where)
                left -= 1
                if not left:
                    break
        return out


class _FileReader(_Reader):
    """A JSONL or text file: a position is the byte offset of a row, read back by seeking."""

    def __init__(self, name: str, path: Path, kind: str, text_column: str):
        self.name, self.path, self.kind, self.text_column = name, path, kind, text_column

    def items(self, start: Cursor, bad: BadRows):
        pos, row, line = start
        try:
            fh = open(self.path, "rb")  # noqa: SIM115 - closed by the with below
        except OSError as err:
            raise OctoError(f"source '{self.name}': cannot read {self.path} ({err.strerror or err}); "
                            f"fix data.sources.{self.name}.path") from None
        with fh:
            fh.seek(pos)
            if self.kind == "jsonl":
                for begin, end, ln, obj in jsonl_items(fh, self.path, bad, pos, line):
                    yield (begin, row, ln - 1), (end, row + 1, ln), obj, f"{self.path} line {ln}"
                    row += 1
            else:
                for begin, end, first, last, doc in text_items(fh, self.path, bad, pos, line):
                    obj = None if doc is None else {self.text_column: doc}
                    yield (begin, row, first), (end, row + 1, last), obj, f"{self.path} line {first + 1}"
                    row += 1

    def rows_at(self, cursors, bad):
        out = []
        for cur in cursors:
            item = next(self.items(cur, bad), None)
            out.append(None if item is None or item[0][0] != cur[0] else (item[2], item[3]))
        return out


class _ParquetReader(_Reader):
    """A Parquet file read a batch at a time: a position is a row number."""

    def __init__(self, name: str, path: Path, columns: dict[str, str]):
        pq = _pyarrow_parquet(name, path)
        self.name, self.path = name, path
        try:
            self.file = pq.ParquetFile(path)
        except Exception as err:  # noqa: BLE001 - pyarrow raises ArrowInvalid / OSError subclasses
            raise OctoError(f"source '{name}': {path} is not a readable Parquet file ({_one_line(err)})") from None
        check_columns(name, str(path), self.file.schema_arrow.names, columns, f"data.sources.{name}.fields")

    def items(self, start: Cursor, bad: BadRows):
        meta = self.file.metadata
        group, first = 0, 0
        while group < meta.num_row_groups and first + meta.row_group(group).num_rows <= start[0]:
            first += meta.row_group(group).num_rows
            group += 1
        if group == meta.num_row_groups:
            return
        i = first
        for batch in self.file.iter_batches(batch_size=CHUNK_ROWS, row_groups=list(range(group, meta.num_row_groups))):
            for obj in batch.to_pylist():
                if i >= start[0]:
                    yield (i, i, i), (i + 1, i + 1, i + 1), obj, f"{self.path} row {i + 1}"
                i += 1


class _HFReader(_Reader):
    """An ``hf:`` dataset: a position is a row number. The dataset is opened on first use."""

    def __init__(self, name: str, cfg: SourceConfig, columns: dict[str, str]):
        self.name, self.cfg, self.columns = name, cfg, columns
        self._ds = None

    def dataset(self):
        if self._ds is None:
            ds = _open_hf(self.name, self.cfg)
            names = getattr(ds, "column_names", None)
            if names:
                check_columns(self.name, _hf_where(self.cfg), names, self.columns,
                              f"data.sources.{self.name}.fields")
            self._ds = ds
        return self._ds

    def items(self, start: Cursor, bad: BadRows):
        ds = self.dataset()
        i = start[0]
        rows = iter(ds.skip(i) if i else ds)
        while True:
            try:
                obj = next(rows)
            except StopIteration:
                return
            except Exception as err:  # noqa: BLE001 - a stream that breaks off (network, damaged shard)
                raise OctoError(f"source '{self.name}': reading {_hf_where(self.cfg)} failed at row {i + 1} "
                                f"({_one_line(err)}); rerun when the dataset is reachable") from None
            yield (i, i, i), (i + 1, i + 1, i + 1), obj, f"{self.cfg.path} row {i + 1}"
            i += 1

    def rows_at(self, cursors, bad):
        import datasets

        ds = self.dataset()
        if not isinstance(ds, datasets.Dataset):  # an IterableDataset: re-read and skip (module docstring)
            return super().rows_at(cursors, bad)
        n = len(ds)
        idx = [c[0] for c in cursors]
        picked = ds.select([i for i in idx if i < n]) if idx else []
        found = iter(picked)
        return [(next(found), f"{self.cfg.path} row {i + 1}") if i < n else None for i in idx]


def open_reader(name: str, cfg: SourceConfig, run_dir: Path) -> _Reader:
    """The reader of a streamed source; a missing file or an unsupported type is an :class:`OctoError`."""
    columns = field_map(cfg.template, cfg.fields)
    if is_hf(cfg.path):
        return _HFReader(name, cfg, columns)
    path = resolve_path(cfg.path, run_dir)
    if not path.exists():
        raise OctoError(f"source '{name}': file {path} does not exist; fix data.sources.{name}.path")
    kind = file_kind(path, cfg.template, name)
    if kind == "parquet":
        return _ParquetReader(name, path, columns)
    return _FileReader(name, path, kind, columns.get("text", "text"))


def _label(cfg: SourceConfig, run_dir: Path) -> str:
    return _hf_where(cfg) if is_hf(cfg.path) else str(resolve_path(cfg.path, run_dir))


# --- the check before training -----------------------------------------------------------------------

def check_stream(name: str, cfg: SourceConfig, run_dir: Path) -> SourceRows:
    """Good rows, the position after each, bad rows and fingerprint of a stream's first ``CHECK_ROWS`` rows."""
    columns = field_map(cfg.template, cfg.fields)
    reader = open_reader(name, cfg, run_dir)
    if isinstance(reader, _HFReader):
        reader.dataset()  # an unknown dataset or column: an error now, before any row
    bad = BadRows(name, Path(cfg.path) if is_hf(cfg.path) else resolve_path(cfg.path, run_dir), cfg.on_bad_rows)
    limit = min(CHECK_ROWS, cfg.max_docs) if cfg.max_docs else CHECK_ROWS
    digest = hashlib.sha256()
    rows: list[dict] = []
    after: list[Cursor] = []
    items = reader.items(START, bad)
    n = 0
    for _cur, aft, row, where in items:
        n += 1
        digest.update(b"\0malformed" if row is None else
                      json.dumps(row, sort_keys=True, default=str, ensure_ascii=False).encode())
        digest.update(b"\n")
        if row is not None and _check_row(row, columns, where, bad):
            rows.append(row)
            after.append(aft)
        if n == limit:
            break
    bounded = bool(cfg.max_docs) and cfg.max_docs <= CHECK_ROWS
    whole = n < limit or bounded or next(items, None) is None
    label = _label(cfg, run_dir)
    if not rows:
        skipped = f" ({bad.total} bad rows skipped; first: {bad.first})" if bad.total else ""
        where = "" if whole else f" in its first {n} rows"
        raise OctoError(f"source '{name}': {label} holds no documents{where}{skipped}")
    how: dict = {"template": cfg.template, "fields": cfg.fields, "on_bad_rows": cfg.on_bad_rows,
                 "max_docs": cfg.max_docs}
    if is_hf(cfg.path):  # the keys of an hf: source read whole, so a short stream fingerprints the same
        how.update({"dataset": cfg.path[3:], "split": cfg.split, "subset": cfg.subset, "data_dir": cfg.data_dir})
    else:
        how.update({"streaming": True, "size": resolve_path(cfg.path, run_dir).stat().st_size})
    if not whole:
        how["hashed_rows"] = CHECK_ROWS
    digest.update(json.dumps(how, sort_keys=True).encode())
    return SourceRows(rows, bad, digest.hexdigest()[:16], after=after)


# --- the source and its document stream --------------------------------------------------------------

class StreamSource:
    """A streamed source: :class:`~octo.data.sources.LoadedSource`'s attributes that need not read it all."""

    streamed = True

    def __init__(self, name: str, cfg: SourceConfig, run_dir: Path, tokenizer, seed: int, *,
                 read: SourceRows | None = None, max_len: int | None = None):
        """``read``: the result of :func:`check_stream` if the run context already checked the source;
        ``max_len``: leave training documents longer than this many tokens out (``cpt.long_docs: drop``)."""
        self.name, self.cfg, self.run_dir, self.tokenizer, self.max_len = name, cfg, Path(run_dir), tokenizer, max_len
        self.columns = field_map(cfg.template, cfg.fields)
        if read is None:
            read = check_stream(name, cfg, run_dir)
        self.fingerprint = read.fingerprint
        self.bad_rows: dict[str, int] = dict(read.bad.counts)
        n_held = min(cfg.heldout, len(read.rows) // 2)
        self.heldout: list[Document] = (self.tokenize(read.rows[:n_held]) if n_held else [])
        self.heldout_ids = frozenset(tuple(d.ids) for d in self.heldout)  # never trained on, also when repeated
        self.train_start: Cursor = tuple(read.after[n_held - 1]) if n_held else START
        self.label = _label(cfg, run_dir)

    def tokenize(self, rows: list[dict]) -> list[Document]:
        return tokenize_documents(self.tokenizer, [render(self.cfg.template, r, self.columns) for r in rows])

    def reader(self) -> _Reader:
        return open_reader(self.name, self.cfg, self.run_dir)

    def doc_stream(self, seed: int) -> StreamDocs:
        """The training documents in the seeded buffer order a stage reads them."""
        return StreamDocs(self, seed)


@dataclass
class _Entry:
    cursor: Cursor
    ids: array        # token ids, 4 bytes each (a list of Python ints takes ~9 times the memory)
    n_prompt: int


def _pick(seed: int, epoch: int, k: int, n: int) -> int:
    """Index of the k-th document of an epoch in a buffer of n (module docstring)."""
    h = hashlib.blake2b(f"{seed}:{epoch}:{k}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") % n


class StreamDocs:
    """Training documents of a streamed source, read lazily through a seeded shuffle buffer, epoch
    after epoch; the same ``next`` / ``state_dict`` / ``load_state_dict`` as
    :class:`~octo.data.sources.DocStream` (module docstring: order, epochs, exact resume)."""

    def __init__(self, source: StreamSource, seed: int):
        self.source = source
        self.name = source.name
        self.seed = (seed << 32) ^ zlib.crc32(f"order:{source.name}".encode())
        self.size = source.cfg.shuffle_buffer
        self.epoch = 0
        self.drawn = 0                    # documents drawn in this epoch
        self.buffer: list[_Entry] = []
        self.rows_read = 0                # rows read from the source by this object (all epochs)
        self.dropped_long = 0             # documents longer than max_len left out (all epochs)
        self.dropped_heldout = 0          # copies of held-out documents left out (all epochs)
        self.bad = BadRows(source.name, Path(source.label), source.cfg.on_bad_rows)
        self._reader: _Reader | None = None
        self._pending: deque[_Entry] = deque()  # read and tokenized, not yet in the buffer
        self._restart(source.train_start)

    def _restart(self, at: Cursor, *, done: bool = False) -> None:
        self._after = tuple(at)           # position after the last row read
        self._items = None
        self._done = done                 # the epoch's rows are all read
        self._pending.clear()

    def _read_chunk(self) -> None:
        """Read up to CHUNK_ROWS rows, tokenize the good ones together, queue them."""
        if self._reader is None:
            self._reader = self.source.reader()
        if self._items is None:
            self._items = self._reader.items(self._after, self.bad)
        cfg, skipped = self.source.cfg, self.bad.total
        got: list[tuple[Cursor, dict]] = []
        while len(got) < CHUNK_ROWS:
            if cfg.max_docs and self._after[1] >= cfg.max_docs:
                self._done = True
                break
            item = next(self._items, None)
            if item is None:
                self._done = True
                break
            cur, self._after, row, where = item
            self.rows_read += 1
            if row is not None and _check_row(row, self.source.columns, where, self.bad):
                got.append((cur, row))
        if self._done:
            self._items = None
        if skipped == 0 and self.bad.total:
            from octo import progress

            progress.info(f"source '{self.name}': skipping malformed rows while streaming (on_bad_rows: skip); "
                          f"first: {self.bad.first}")
        if not got:
            return
        docs = self.source.tokenize([r for _, r in got])
        max_len = self.source.max_len
        for (cur, _), doc in zip(got, docs):
            if max_len is not None and len(doc.ids) > max_len:
                self.dropped_long += 1
                continue
            if tuple(doc.ids) in self.source.heldout_ids:
                self.dropped_heldout += 1
                continue
            self._pending.append(_Entry(cur, array("i", doc.ids), doc.n_prompt))

    def _fill(self) -> None:
        while len(self.buffer) < self.size:
            if self._pending:
                self.buffer.append(self._pending.popleft())
            elif self._done:
                return
            else:
                self._read_chunk()

    def next(self) -> Document:
        self._fill()
        if not self.buffer:
            if self.drawn == 0:
                longer = (f" of at most seq_len={self.source.max_len} tokens (cpt.long_docs: drop)"
                          if self.source.max_len is not None else "")
                raise OctoError(f"source '{self.name}': {self.source.label} has no training document{longer} "
                                f"after its {len(self.source.heldout)} held-out documents; lower heldout, raise "
                                "max_docs or cpt.seq_len, or set cpt.long_docs: split")
            self.epoch += 1
            self.drawn = 0
            self._restart(self.source.train_start)
            self._fill()
            if not self.buffer:
                raise OctoError(f"source '{self.name}': {self.source.label} holds no training document any more "
                                f"in epoch {self.epoch}; the source changed while the stage was reading it")
        i = _pick(self.seed, self.epoch, self.drawn, len(self.buffer))
        entry = self.buffer[i]
        self.buffer[i] = self.buffer[-1]
        self.buffer.pop()
        self.drawn += 1
        return Document(entry.ids.tolist(), entry.n_prompt)

    def state_dict(self) -> dict:
        """Epoch, documents drawn in it, the position of the next row to read, whether the epoch's rows
        are all read, and the positions of the buffered rows in buffer order (plain lists of ints)."""
        nxt = self._pending[0].cursor if self._pending else self._after
        return {"epoch": self.epoch, "drawn": self.drawn, "next": list(nxt),
                "done": self._done and not self._pending, "buffer": [list(e.cursor) for e in self.buffer]}

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state``: the buffered rows are read again (module docstring) and tokenized."""
        if "buffer" not in state:
            raise OctoError(f"source '{self.name}': the checkpoint's data-sampler state was written when this "
                            "source was read whole, before it was streamed; restart the stage (delete its "
                            "checkpoints) or resume it with the octo version that wrote it")
        self.epoch, self.drawn = int(state["epoch"]), int(state["drawn"])
        self._restart(tuple(int(x) for x in state["next"]), done=bool(state["done"]))
        cursors = [tuple(int(x) for x in c) for c in state["buffer"]]
        if self._reader is None:
            self._reader = self.source.reader()
        scratch = BadRows(self.name, Path(self.source.label), "skip")  # rows already counted when first read
        found = self._reader.rows_at(cursors, scratch)
        rows = []
        for cur, item in zip(cursors, found):
            if item is None or item[0] is None or not _check_row(item[0], self.source.columns, item[1], scratch):
                raise OctoError(f"source '{self.name}': the row at position {cur[0]} of {self.source.label} that "
                                "the checkpoint's shuffle buffer holds is gone or no longer a good row; the "
                                "source changed since the checkpoint was written - restore it to resume")
            rows.append(item[0])
        docs = self.source.tokenize(rows) if rows else []
        self.buffer = [_Entry(c, array("i", d.ids), d.n_prompt) for c, d in zip(cursors, docs)]
