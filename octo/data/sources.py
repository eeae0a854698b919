"""Data sources: local JSONL / Parquet / text files rendered by a template.

A source is read and checked completely before any training starts (``RunContext.prepare``
checks every file source): a missing file, a row without a template field, an invalid or
non-UTF-8 line, an empty document or an empty source is one :class:`OctoError` naming the
file (and line). A source with ``on_bad_rows: skip`` leaves malformed rows out instead and
counts them by reason (``manifest.json`` ``data_bad_rows``); nothing is skipped silently.
``toy:<name>`` resolves to ``<run>/world/<name>.jsonl`` (generated, always clean).

Each source is split once, deterministically from the seed, into a held-out part (for
perplexity gates) and a training part. :class:`DocStream` walks the training part in a
seeded order, epoch after epoch; its state (epoch, position) is two integers, so a resumed
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
from octo.data.templates import field_map, render
from octo.errors import OctoError


@dataclass
class Document:
    ids: list[int]      # tokens, EOS last
    n_prompt: int       # leading prompt tokens (IF/QA); 0 for raw text


def resolve_path(spec: str, run_dir: Path) -> Path:
    if spec.startswith("toy:"):
        return run_dir / "world" / f"{spec[4:]}.jsonl"
    if spec.startswith("hf:"):
        raise OctoError(f"source path {spec!r}: Hugging Face datasets are not supported yet; "
                        "export the dataset to a local .jsonl or .parquet file and point the source at it")
    return Path(spec).expanduser()


class BadRows:
    """Malformed rows of one source file: an error at the first one, or counted by reason (``skip``).

    Reasons: ``invalid_json``, ``not_utf8``, ``not_object``, ``missing_field``, ``not_text``, ``empty``.
    A skipped row is never silent: the counts go into ``manifest.json`` (``data_bad_rows``) and
    :meth:`summary` is printed once by the run context.
    """

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
    """Rows of a source file and its bad rows, checked completely before anything trains on them.

    With ``on_bad_rows='error'`` the first malformed row raises one :class:`OctoError` naming the
    file and line; with ``'skip'`` malformed rows are left out and counted in the returned
    :class:`BadRows`. A missing file, a Parquet file without a template column, an unsupported
    type or a source with no good row is always an error.
    """
    if not path.exists():
        raise OctoError(f"source '{source}': file {path} does not exist; fix data.sources.{source}.path")
    bad = BadRows(source, path, on_bad_rows)
    suffix = path.suffix.lower()
    rows: list[dict] = []
    if suffix in (".jsonl", ".json"):
        with open(path, "rb") as fh:
            for i, raw in enumerate(fh, 1):
                if not raw.strip():
                    continue
                where = f"{path} line {i}"
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    bad.add("not_utf8", f"{where} is not UTF-8 (byte {err.start + 1} of the line)")
                    continue
                try:
                    row = json.loads(text)
                except json.JSONDecodeError as err:
                    bad.add("invalid_json", f"{where} is not valid JSON ({err.msg} at column {err.colno})")
                    continue
                if not isinstance(row, dict):
                    bad.add("not_object", f"{where} is not a JSON object")
                    continue
                if _check_row(row, columns, where, bad):
                    rows.append(row)
    elif suffix == ".parquet":
        try:
            import pyarrow.parquet as pq

            table = pq.read_table(path)
        except ImportError:
            raise OctoError(f"source '{source}': reading {path} needs pyarrow; pip install pyarrow") from None
        except Exception as err:  # pyarrow raises ArrowInvalid / OSError subclasses on damaged files
            raise OctoError(f"source '{source}': {path} is not a readable Parquet file "
                            f"({str(err).splitlines()[0] if str(err) else type(err).__name__})") from None
        missing = [c for c in columns.values() if c not in table.column_names]
        if missing:
            raise OctoError(f"source '{source}': {path} has no column(s) {', '.join(missing)}; "
                            f"columns are {', '.join(table.column_names)} (map them with 'fields:')")
        for i, row in enumerate(table.to_pylist(), 1):
            if _check_row(row, columns, f"{path} row {i}", bad):
                rows.append(row)
    elif suffix in (".txt", ".text", ".md"):
        if template != "raw":
            raise OctoError(f"source '{source}': text files hold raw documents; set template: raw")
        rows = [{columns["text"]: doc} for doc in _text_documents(path, bad)]
    else:
        raise OctoError(f"source '{source}': {path} has an unsupported type {suffix!r}; "
                        "use .jsonl, .parquet or .txt")
    if not rows:
        skipped = f" ({bad.total} bad rows skipped; first: {bad.first})" if bad.total else ""
        raise OctoError(f"source '{source}': {path} holds no documents{skipped}")
    return rows, bad


def _text_documents(path: Path, bad: BadRows) -> list[str]:
    """Documents of a text file: blocks separated by an empty line; a block with bytes that are
    not UTF-8 is a bad row (named by the line of the bad bytes)."""
    docs: list[str] = []
    block: list[str] = []
    broken: str | None = None

    def flush() -> None:
        nonlocal block, broken
        if broken is not None:
            bad.add("not_utf8", broken)
        elif block and "\n".join(block).strip():
            docs.append("\n".join(block).strip())
        block, broken = [], None

    with open(path, "rb") as fh:
        for i, raw in enumerate(fh, 1):
            line = raw.removesuffix(b"\n").removesuffix(b"\r")  # as text mode reads \r\n
            if not line:
                flush()
                continue
            try:
                block.append(line.decode("utf-8"))
            except UnicodeDecodeError as err:
                if broken is None:
                    broken = f"{path} line {i} is not UTF-8 (byte {err.start + 1} of the line)"
    flush()
    return docs


def _check_row(row: dict, columns: dict[str, str], where: str, bad: BadRows) -> bool:
    """True when ``row`` can be rendered; otherwise records why in ``bad`` (which raises in error mode)."""
    for slot, col in columns.items():
        value = row.get(col)
        if value is None:
            fields = ", ".join(k for k, v in row.items() if v is not None) or "(none)"
            bad.add("missing_field", f"{where} has no field '{col}' (template slot '{slot}'); "
                                     f"its fields are {fields}")
            return False
        if not isinstance(value, (str, int, float)):
            bad.add("not_text", f"{where} field '{col}' is not text")
            return False
    if all(not str(row[c]).strip() for c in columns.values()):
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
    h.update(json.dumps(how, sort_keys=True).encode())
    return h.hexdigest()[:16]


class LoadedSource:
    """A source read from disk, tokenized, split into training and held-out documents."""

    def __init__(self, name: str, cfg: SourceConfig, run_dir: Path, tokenizer, seed: int):
        self.name = name
        self.cfg = cfg
        self.path = resolve_path(cfg.path, run_dir)
        columns = field_map(cfg.template, cfg.fields)
        rows, bad = load_rows(self.path, cfg.template, columns, name, cfg.on_bad_rows)
        self.bad_rows: dict[str, int] = dict(bad.counts)
        self.fingerprint = fingerprint(self.path, cfg)
        n_held = min(cfg.heldout, len(rows) // 2)
        rng = random.Random((seed << 32) ^ zlib.crc32(f"heldout:{name}".encode()))
        held = set(rng.sample(range(len(rows)), n_held))
        rendered = [render(cfg.template, r, columns) for r in rows]
        docs = tokenize_documents(tokenizer, rendered)
        self.train = [d for i, d in enumerate(docs) if i not in held]
        self.heldout = [d for i, d in enumerate(docs) if i in held]
        if not self.train:
            raise OctoError(f"source '{name}': no training documents left after holding out {n_held}")


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
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        self._order = self._make_order()
