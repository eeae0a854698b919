"""Data sources: local JSONL / Parquet / text files or Hugging Face datasets, rendered by a template.

A source is read and checked completely before training starts (a streamed one only in its first
rows, :mod:`octo.data.stream`): a missing file, a row without a template field, an invalid or
non-UTF-8 line, an empty document or source is one :class:`OctoError` naming the file and line. With
``on_bad_rows: skip`` malformed rows are left out and counted by reason (``manifest.json``
``data_bad_rows``). ``toy:<name>`` is ``<run>/world/<name>.jsonl``. ``hf:<dataset>`` is read with
``load_from_disk`` (a ``save_to_disk`` directory) or ``load_dataset``; its fingerprint is the name,
split, subset, data_dir and max_docs plus a hash of every row read. ``cpt.long_docs: drop`` leaves
documents longer than ``seq_len`` out and counts them.

Each source is split once, from the seed, into a held-out part (perplexity gates) and a training
part that :class:`DocStream` walks in a seeded order; its state is (epoch, position), so a resumed
run reads exactly the document an uninterrupted run would have read next.
"""

from __future__ import annotations

import hashlib
import json
import random
import zlib
from dataclasses import dataclass
from pathlib import Path

from octo.config import SourceConfig
from octo.data.templates import field_map, lookup, render, top_column
from octo.errors import OctoError


@dataclass
class Document:
    ids: list[int]      # tokens, EOS last
    n_prompt: int       # leading prompt tokens (IF/QA); 0 for raw text


def resolve_path(spec: str, run_dir: Path) -> Path:
    if spec.startswith("toy:"):
        return run_dir / "world" / f"{spec[4:]}.jsonl"
    if spec.startswith("hf:"):
        raise ValueError(f"{spec!r} is a Hugging Face dataset, not a file; read it with read_source()")
    return Path(spec).expanduser()


def is_hf(spec: str) -> bool:
    return spec.startswith("hf:")


class BadRows:
    """Malformed rows of one source file: an error at the first one, or counted by reason (``skip``)."""

    def __init__(self, source: str, path: Path, on_bad_rows: str = "error"):
        self.source = source
        self.path = path
        self.on_bad_rows = on_bad_rows
        self.counts: dict[str, int] = {}
        self.first: str | None = None

    def add(self, reason: str, problem: str) -> None:
        """Record one bad row; ``problem`` names the file and line, e.g. '<path> line 3 is not valid JSON'."""
        if self.on_bad_rows != "skip":
            raise OctoError(f"source '{self.source}': {problem}; fix or remove that row, or set "
                            f"data.sources.{self.source}.on_bad_rows: skip")
        self.counts[reason] = self.counts.get(reason, 0) + 1
        if self.first is None:
            self.first = problem

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(self.counts.items()))
        return (f"source '{self.source}': skipped {self.total} bad rows of {self.path} ({reasons}); "
                f"first: {self.first}")


def read_rows(path: Path, template: str, columns: dict[str, str], source: str,
              on_bad_rows: str = "error") -> list[dict]:
    """All good rows of a source file, each checked to have the template's columns."""
    return load_rows(path, template, columns, source, on_bad_rows)[0]


def load_rows(path: Path, template: str, columns: dict[str, str], source: str,
              on_bad_rows: str = "error") -> tuple[list[dict], BadRows]:
    """Rows of a source file and its bad rows, checked completely before anything trains on them."""
    if not path.exists():
        raise OctoError(f"source '{source}': file {path} does not exist; fix data.sources.{source}.path")
    bad = BadRows(source, path, on_bad_rows)
    rows: list[dict] = []
    kind = file_kind(path, template, source)
    if kind == "jsonl":
        with open(path, "rb") as fh:
            for _start, _end, line, row in jsonl_items(fh, path, bad):
                if row is not None and _check_row(row, columns, f"{path} line {line}", bad):
                    rows.append(row)
    elif kind == "parquet":
        pq = _pyarrow_parquet(source, path)
        try:
            table = pq.read_table(path)
        except Exception as err:  # pyarrow raises ArrowInvalid / OSError subclasses on damaged files
            raise OctoError(f"source '{source}': {path} is not a readable Parquet file "
                            f"({str(err).splitlines()[0] if str(err) else type(err).__name__})") from None
        missing = [c for c in columns.values() if top_column(c, table.column_names) not in table.column_names]
        if missing:
            raise OctoError(f"source '{source}': {path} has no column(s) {', '.join(missing)}; "
                            f"columns are {', '.join(table.column_names)} (map them with 'fields:')")
        for i, row in enumerate(table.to_pylist(), 1):
            if _check_row(row, columns, f"{path} row {i}", bad):
                rows.append(row)
    else:
        with open(path, "rb") as fh:
            rows = [{columns["text"]: doc} for *_, doc in text_items(fh, path, bad) if doc is not None]
    if not rows:
        skipped = f" ({bad.total} bad rows skipped; first: {bad.first})" if bad.total else ""
        raise OctoError(f"source '{source}': {path} holds no documents{skipped}")
    return rows, bad


def file_kind(path: Path, template: str, source: str) -> str:
    """'jsonl', 'parquet' or 'text' by the file's suffix; an unsupported type is an :class:`OctoError`."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return "jsonl"
    if suffix == ".parquet":
        return "parquet"
    if suffix in (".txt", ".text", ".md"):
        if template != "raw":
            raise OctoError(f"source '{source}': text files hold raw documents; set template: raw")
        return "text"
    raise OctoError(f"source '{source}': {path} has an unsupported type {suffix!r}; use .jsonl, .parquet or .txt")


def _pyarrow_parquet(source: str, path: Path):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise OctoError(f"source '{source}': reading {path} needs pyarrow; pip install pyarrow") from None
    return pq


def check_columns(source: str, what: str, names, columns: dict[str, str], how: str) -> None:
    """One :class:`OctoError` when a template column is not among a table's column ``names``."""
    missing = [c for c in columns.values() if top_column(c, names) not in names]
    if missing:
        raise OctoError(f"source '{source}': {what} has no column(s) {', '.join(missing)}; its columns are "
                        f"{', '.join(names)} (map them with {how})")


def jsonl_items(fh, path: Path, bad: BadRows, offset: int = 0, line: int = 0):
    """(start, end, line, row) of each non-blank line of a JSONL file opened in binary mode at byte
    ``offset`` (after ``line`` lines): byte offsets of the line, its 1-based number, and the parsed
    object, or None for a malformed line (recorded in ``bad``, which raises in error mode)."""
    for raw in fh:
        line += 1
        start, offset = offset, offset + len(raw)
        if not raw.strip():
            continue
        where = f"{path} line {line}"
        try:
            row = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as err:
            bad.add("not_utf8", f"{where} is not UTF-8 (byte {err.start + 1} of the line)")
            row = None
        except json.JSONDecodeError as err:
            bad.add("invalid_json", f"{where} is not valid JSON ({err.msg} at column {err.colno})")
            row = None
        else:
            if not isinstance(row, dict):
                bad.add("not_object", f"{where} is not a JSON object")
                row = None
        yield start, offset, line, row


def text_items(fh, path: Path, bad: BadRows, offset: int = 0, line: int = 0):
    """(start, end, lines before, lines after, document) of each blank-line-separated block of a text file
    opened in binary mode at byte ``offset`` (after ``line`` lines); a non-UTF-8 block's document is None."""
    block: list[str] = []
    broken: str | None = None
    start = first = None
    for raw in fh:
        line += 1
        at, offset = offset, offset + len(raw)
        content = raw.removesuffix(b"\n").removesuffix(b"\r")  # as text mode reads \r\n
        if not content:
            if start is not None:
                doc = _text_block(block, broken, bad)
                if doc != "":
                    yield start, offset, first, line, doc
            block, broken, start = [], None, None
            continue
        if start is None:
            start, first = at, line - 1
        try:
            block.append(content.decode("utf-8"))
        except UnicodeDecodeError as err:
            if broken is None:
                broken = f"{path} line {line} is not UTF-8 (byte {err.start + 1} of the line)"
    if start is not None:
        doc = _text_block(block, broken, bad)
        if doc != "":
            yield start, offset, first, line, doc


def _text_block(block: list[str], broken: str | None, bad: BadRows) -> str | None:
    """The document of a block: None when it is not UTF-8 (recorded in ``bad``), "" when only white space."""
    if broken is not None:
        bad.add("not_utf8", broken)
        return None
    return "\n".join(block).strip()


def _check_row(row: dict, columns: dict[str, str], where: str, bad: BadRows) -> bool:
    """True when ``row`` can be rendered; otherwise records why in ``bad`` (which raises in error mode)."""
    for slot, col in columns.items():
        value = lookup(row, col)
        if value is None:
            fields = ", ".join(k for k, v in row.items() if v is not None) or "(none)"
            bad.add("missing_field", f"{where} has no field '{col}' (template slot '{slot}'); "
                                     f"its fields are {fields}")
            return False
        if not isinstance(value, (str, int, float)):
            bad.add("not_text", f"{where} field '{col}' is not text")
            return False
    if all(not str(lookup(row, c)).strip() for c in columns.values()):
        bad.add("empty", f"{where} is an empty document")
        return False
    return True


def fingerprint(path: Path, cfg: SourceConfig) -> str:
    """Data version (seed 003 nu_data): content hash of the file plus how it is rendered."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    how: dict = {"template": cfg.template, "fields": cfg.fields}
    if cfg.on_bad_rows != "error":  # skipping changes what is trained on; "error" keeps old fingerprints
        how["on_bad_rows"] = cfg.on_bad_rows
    if cfg.max_docs:  # likewise: only a cap changes the fingerprint
        how["max_docs"] = cfg.max_docs
    h.update(json.dumps(how, sort_keys=True).encode())
    return h.hexdigest()[:16]


def _one_line(err: BaseException, limit: int = 240) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _hf_where(cfg: SourceConfig) -> str:
    parts = [f"split {cfg.split}"]
    if cfg.subset:
        parts.append(f"subset {cfg.subset}")
    if cfg.data_dir:
        parts.append(f"data_dir {cfg.data_dir}")
    return f"{cfg.path} ({', '.join(parts)})"


def _open_hf(source: str, cfg: SourceConfig):
    """The dataset object of an ``hf:`` source (a Dataset or an IterableDataset)."""
    try:
        import datasets
    except ImportError:
        raise OctoError(f"source '{source}': reading {cfg.path} needs the datasets library; "
                        "pip install datasets") from None
    datasets.disable_progress_bars()  # octo prints its own progress
    spec = cfg.path[3:]
    local = Path(spec).expanduser()
    saved = local.is_dir() and any((local / f).exists() for f in ("state.json", "dataset_dict.json"))
    what = _hf_where(cfg)
    try:
        if saved:
            ds = datasets.load_from_disk(str(local))
            if isinstance(ds, datasets.DatasetDict):
                if cfg.split not in ds:
                    raise OctoError(f"source '{source}': {local} has no split '{cfg.split}'; its splits are "
                                    f"{', '.join(ds)} (set data.sources.{source}.split)")
                ds = ds[cfg.split]
            return ds
        return datasets.load_dataset(spec, cfg.subset or None, data_dir=cfg.data_dir or None, split=cfg.split,
                                     streaming=cfg.streaming)
    except OctoError:
        raise
    except Exception as err:  # noqa: BLE001 - datasets raises many types (DatasetNotFoundError, ConnectionError...)
        raise OctoError(f"source '{source}': could not load the Hugging Face dataset {what} ({_one_line(err)}); "
                        f"check data.sources.{source}.path / subset / split, or download it while online (the "
                        "cache is then used with HF_DATASETS_OFFLINE=1), or point path at hf:<dir> saved with "
                        "Dataset.save_to_disk") from None


def load_hf_rows(source: str, cfg: SourceConfig, columns: dict[str, str]) -> tuple[list[dict], BadRows, str]:
    """Good rows of an ``hf:`` source (at most ``max_docs`` read), its bad rows and its fingerprint."""
    ds = _open_hf(source, cfg)
    what = _hf_where(cfg)
    names = getattr(ds, "column_names", None)
    if names:
        check_columns(source, what, names, columns, f"data.sources.{source}.fields")
    bad = BadRows(source, Path(cfg.path), cfg.on_bad_rows)
    digest = hashlib.sha256()
    rows: list[dict] = []
    i = 0
    try:
        for i, row in enumerate(ds, 1):
            if cfg.max_docs and i > cfg.max_docs:
                break
            digest.update(json.dumps(row, sort_keys=True, default=str, ensure_ascii=False).encode())
            digest.update(b"\n")
            if _check_row(row, columns, f"{cfg.path} row {i}", bad):
                rows.append(row)
    except OctoError:
        raise
    except Exception as err:  # noqa: BLE001 - a stream that breaks off (network, damaged shard)
        raise OctoError(f"source '{source}': reading {what} failed at row {i + 1} ({_one_line(err)}); "
                        "rerun when the dataset is reachable, or lower max_docs") from None
    if not rows:
        skipped = f" ({bad.total} bad rows skipped; first: {bad.first})" if bad.total else ""
        raise OctoError(f"source '{source}': {what} holds no documents{skipped}")
    how = {"dataset": cfg.path[3:], "split": cfg.split, "subset": cfg.subset, "data_dir": cfg.data_dir,
           "max_docs": cfg.max_docs, "template": cfg.template, "fields": cfg.fields,
           "on_bad_rows": cfg.on_bad_rows}
    digest.update(json.dumps(how, sort_keys=True).encode())
    return rows, bad, digest.hexdigest()[:16]


@dataclass
class SourceRows:
    """The checked rows of one source, its bad rows and its data version (seed 003 nu_data). For a streamed source, the
    good rows of its checked first rows, and in ``after`` the stream position just past each of them
    (:func:`octo.data.stream.check_stream`)."""

    rows: list[dict]
    bad: BadRows
    fingerprint: str
    after: list[tuple[int, int, int]] | None = None


def read_source(name: str, cfg: SourceConfig, run_dir: Path) -> SourceRows:
    """Read and check every row of a source (file or ``hf:``), capped at ``max_docs`` rows; of a
    streamed source (``streaming: true``), only its first rows."""
    if cfg.streaming:
        from octo.data.stream import check_stream

        return check_stream(name, cfg, run_dir)
    columns = field_map(cfg.template, cfg.fields)
    if is_hf(cfg.path):
        rows, bad, fp = load_hf_rows(name, cfg, columns)
        return SourceRows(rows, bad, fp)
    path = resolve_path(cfg.path, run_dir)
    rows, bad = load_rows(path, cfg.template, columns, name, cfg.on_bad_rows)
    if cfg.max_docs:
        rows = rows[:cfg.max_docs]
    return SourceRows(rows, bad, fingerprint(path, cfg))


class LoadedSource:
    """A source read from disk, tokenized, split into training and held-out documents."""

    def __init__(self, name: str, cfg: SourceConfig, run_dir: Path, tokenizer, seed: int, *,
                 read: SourceRows | None = None, max_len: int | None = None):
        """``read``: the rows if already read (an hf: source read by the run context's check);
        ``max_len``: leave training documents longer than this many tokens out (``cpt.long_docs: drop``)."""
        if cfg.streaming:
            raise ValueError(f"source {name!r} is streamed; load it with octo.data.stream.StreamSource")
        self.name = name
        self.cfg = cfg
        columns = field_map(cfg.template, cfg.fields)
        if read is None:
            read = read_source(name, cfg, run_dir)
        rows = read.rows
        self.bad_rows: dict[str, int] = dict(read.bad.counts)
        self.fingerprint = read.fingerprint
        n_held = min(cfg.heldout, len(rows) // 2)
        rng = random.Random((seed << 32) ^ zlib.crc32(f"heldout:{name}".encode()))
        held = set(rng.sample(range(len(rows)), n_held))
        rendered = [render(cfg.template, r, columns) for r in rows]
        docs = tokenize_documents(tokenizer, rendered)
        self.heldout = [d for i, d in enumerate(docs) if i in held]
        # a held-out document is never trained on, also where the source repeats it verbatim
        seen = {tuple(d.ids) for d in self.heldout}
        train = [d for i, d in enumerate(docs) if i not in held]
        self.train = [d for d in train if tuple(d.ids) not in seen]
        self.dropped_heldout = len(train) - len(self.train)  # training copies of held-out documents left out
        if not self.train:
            raise OctoError(f"source '{name}': no training documents left after holding out {n_held}"
                            + (f" (and {self.dropped_heldout} copies of them)" if self.dropped_heldout else ""))
        self.dropped_long = 0  # training documents longer than max_len left out
        if max_len is not None:
            kept = [d for d in self.train if len(d.ids) <= max_len]
            self.dropped_long = len(self.train) - len(kept)
            if not kept:
                raise OctoError(f"source '{name}': all {len(self.train)} training documents are longer than "
                                f"seq_len={max_len} tokens; raise cpt.seq_len or set cpt.long_docs: split")
            self.train = kept

    def doc_stream(self, seed: int) -> DocStream:
        """The training documents in the seeded order a stage reads them."""
        return DocStream(self.train, seed, self.name)


def tokenize_documents(tokenizer, rendered: list[tuple[str, str]]) -> list[Document]:
    prompts = [p for p, _ in rendered]
    responses = [r for _, r in rendered]
    p_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"] if any(prompts) else [[] for _ in prompts]
    r_ids = tokenizer(responses, add_special_tokens=False)["input_ids"]
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    eos = tokenizer.eos_token_id
    return [Document(bos + p + r + [eos], len(bos) + len(p)) for p, r in zip(p_ids, r_ids)]


class DocStream:
    """Training documents of one source in a seeded order, epoch after epoch."""

    def __init__(self, docs: list[Document], seed: int, name: str):
        self.docs = docs
        self.seed = (seed << 32) ^ zlib.crc32(f"order:{name}".encode())
        self.epoch = 0
        self.pos = 0
        self._order = self._make_order()

    def _make_order(self) -> list[int]:
        order = list(range(len(self.docs)))
        random.Random(self.seed + self.epoch).shuffle(order)
        return order

    def next(self) -> Document:
        if self.pos >= len(self._order):
            self.epoch += 1
            self.pos = 0
            self._order = self._make_order()
        doc = self.docs[self._order[self.pos]]
        self.pos += 1
        return doc

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        if "pos" not in state:
            raise OctoError("the checkpoint's data-sampler state was written for a streamed source, but the "
                            "recipe reads it whole now; set streaming: true again to resume that stage")
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        self._order = self._make_order()
