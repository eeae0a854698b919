"""Data sources: local JSONL / Parquet / text files rendered by a template.

A source is read and checked completely before any training starts: a missing file, a
row without a template field, an invalid line or an empty source is one :class:`OctoError`
naming the file (and line). ``toy:<name>`` resolves to ``<run>/world/<name>.jsonl``.

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


def read_rows(path: Path, template: str, columns: dict[str, str], source: str) -> list[dict]:
    """All rows of a source file, each checked to have the template's columns."""
    if not path.exists():
        raise OctoError(f"source '{source}': file {path} does not exist; fix data.sources.{source}.path")
    suffix = path.suffix.lower()
    rows: list[dict] = []
    if suffix in (".jsonl", ".json"):
        with open(path, "rb") as fh:
            for i, raw in enumerate(fh, 1):
                if not raw.strip():
                    continue
                try:
                    row = json.loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError) as err:
                    kind = "not UTF-8" if isinstance(err, UnicodeDecodeError) else "not valid JSON"
                    raise OctoError(f"source '{source}': {path} line {i} is {kind}; fix or remove that line") from None
                if not isinstance(row, dict):
                    raise OctoError(f"source '{source}': {path} line {i} is not a JSON object")
                _check_row(row, columns, f"{path} line {i}", source)
                rows.append(row)
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        missing = [c for c in columns.values() if c not in table.column_names]
        if missing:
            raise OctoError(f"source '{source}': {path} has no column(s) {', '.join(missing)}; "
                            f"columns are {', '.join(table.column_names)} (map them with 'fields:')")
        for i, row in enumerate(table.to_pylist(), 1):
            _check_row(row, columns, f"{path} row {i}", source)
            rows.append(row)
    elif suffix in (".txt", ".text", ".md"):
        if template != "raw":
            raise OctoError(f"source '{source}': text files hold raw documents; set template: raw")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise OctoError(f"source '{source}': {path} is not UTF-8 text") from None
        rows = [{columns["text"]: d.strip()} for d in text.split("\n\n") if d.strip()]
    else:
        raise OctoError(f"source '{source}': {path} has an unsupported type {suffix!r}; "
                        "use .jsonl, .parquet or .txt")
    if not rows:
        raise OctoError(f"source '{source}': {path} holds no documents")
    return rows


def _check_row(row: dict, columns: dict[str, str], where: str, source: str) -> None:
    for slot, col in columns.items():
        value = row.get(col)
        if value is None:
            raise OctoError(f"source '{source}': {where} has no field '{col}' (template slot '{slot}'); "
                            f"its fields are {', '.join(row) or '(none)'}")
        if not isinstance(value, (str, int, float)):
            raise OctoError(f"source '{source}': {where} field '{col}' is not text")
    if all(not str(row[c]).strip() for c in columns.values()):
        raise OctoError(f"source '{source}': {where} is an empty document; remove it")


def fingerprint(path: Path, cfg: SourceConfig) -> str:
    """Data version (seed 003 nu_data): content hash of the file plus how it is rendered."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    h.update(json.dumps({"template": cfg.template, "fields": cfg.fields}, sort_keys=True).encode())
    return h.hexdigest()[:16]


class LoadedSource:
    """A source read from disk, tokenized, split into training and held-out documents."""

    def __init__(self, name: str, cfg: SourceConfig, run_dir: Path, tokenizer, seed: int):
        self.name = name
        self.cfg = cfg
        self.path = resolve_path(cfg.path, run_dir)
        columns = field_map(cfg.template, cfg.fields)
        rows = read_rows(self.path, cfg.template, columns, name)
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
