"""Tokenizer audit and extension (seed 003: tokenizer fragmentation, vocabulary extension, tau_tok).

    octo tokenizer audit --tokenizer runs/quickstart/tokenizer --data corpus.jsonl --data notes.txt
    octo tokenizer extend --model CKPT --token Kendall --token bootstrap --out CKPT-ext

**Audit** (words matched to their tokens in context by fast-tokenizer offsets): ``tokens_per_word``
(fertility), ``split3_share`` (words covered by >= 3 tokens, seed 003's fragmentation) and the most
fragmented words. **Extension** adds tokens as added tokens (other text tokenizes as before) and
initialises each new input and output row as the mean of its old sub-tokens' rows (seed 003:
e_new = (1/k) sum_i e_{s_i}); the manifest records the new and parent tokenizer hashes and every
added token with its old pieces.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

from octo.errors import OctoError
from octo.runio import user_jsonl

WORD_RE = re.compile(r"\w+|[^\w\s]+")


# --- audit -------------------------------------------------------------------------------------
def _texts(path: Path, field: str) -> list[str]:
    if not path.exists():
        raise OctoError(f"data file {path} does not exist; pass a .jsonl or .txt file")
    if path.suffix == ".jsonl":
        out = []
        for i, row in user_jsonl(path):
            if not isinstance(row, dict) or not isinstance(row.get(field), str):
                raise OctoError(f"{path} line {i} has no text field '{field}'; pass --field NAME")
            out.append(row[field])
        return out
    if path.suffix in (".txt", ".md"):
        return [t for t in path.read_text(encoding="utf-8").split("\n\n") if t.strip()]
    raise OctoError(f"data file {path}: unsupported type '{path.suffix}'; pass a .jsonl or .txt file")


def audit_texts(tokenizer, texts: list[str], *, top: int = 20) -> dict:
    """Fragmentation figures of ``texts`` under ``tokenizer`` (see the module docstring)."""
    words = tokens = split3 = 0
    fragmented: Counter = Counter()
    pieces_of: dict[str, int] = {}
    for text in texts:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = [(a, b) for a, b in enc["offset_mapping"] if b > a]
        j = 0
        for m in WORD_RE.finditer(text):
            ws, we = m.span()
            while j < len(offsets) and offsets[j][1] <= ws:
                j += 1
            k = j
            n = 0
            while k < len(offsets) and offsets[k][0] < we:
                n += 1
                k += 1
            n = max(n, 1)
            words += 1
            tokens += n
            if n >= 3:
                split3 += 1
                fragmented[m.group()] += 1
                pieces_of[m.group()] = n
    return {
        "documents": len(texts), "words": words, "tokens": tokens,
        "tokens_per_word": tokens / words if words else None,
        "split3_share": split3 / words if words else None,
        "fragmented": [{"word": w, "count": c, "pieces": pieces_of[w]} for w, c in fragmented.most_common(top)],
    }


def add_tokenizer_audit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tokenizer", required=True, help="tokenizer or checkpoint directory")
    parser.add_argument("--data", action="append", required=True, metavar="FILE",
                        help="a .jsonl (see --field) or .txt file (documents split at blank lines); repeatable")
    parser.add_argument("--field", default="text", help="text field of .jsonl rows (default: text)")
    parser.add_argument("--top", type=int, default=10, help="fragmented words listed per file (default 10)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def run_tokenizer_audit(args: argparse.Namespace) -> int:
    from octo.model import load_tokenizer, tokenizer_hash

    tok = load_tokenizer(args.tokenizer)
    if not getattr(tok, "is_fast", False):
        raise OctoError(f"tokenizer at {args.tokenizer} is not a fast tokenizer; the audit needs token offsets")
    report = {"tokenizer": str(args.tokenizer), "tokenizer_hash": tokenizer_hash(args.tokenizer), "sources": {}}
    for f in args.data:
        report["sources"][f] = audit_texts(tok, _texts(Path(f), args.field), top=args.top)
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
        return 0
    print(f"tokenizer {args.tokenizer} ({report['tokenizer_hash']})")
    print(f"{'source':40s} {'docs':>6s} {'words':>9s} {'tok/word':>9s} {'split>=3':>9s}")
    for name, r in report["sources"].items():
        tpw = f"{r['tokens_per_word']:.3f}" if r["tokens_per_word"] is not None else "-"
        s3 = f"{r['split3_share']:.2%}" if r["split3_share"] is not None else "-"
        print(f"{name[-40:]:40s} {r['documents']:6d} {r['words']:9d} {tpw:>9s} {s3:>9s}")
        if r["fragmented"]:
            print("  most frequent words split into >= 3 tokens: "
                  + ", ".join(f"{x['word']} ({x['pieces']} pieces, {x['count']}x)" for x in r["fragmented"]))
    return 0


# --- extension ---------------------------------------------------------------------------------
def extend_model(model, tokenizer, new_tokens: list[str]) -> list[dict]:
    """Add ``new_tokens`` in place, rows = mean of old sub-token rows; ``{"token", "id", "pieces"}`` per new one."""
    import torch

    vocab = tokenizer.get_vocab()
    todo, seen = [], set()
    for t in new_tokens:
        if not t or t in vocab or t in seen:
            continue
        seen.add(t)
        pieces = tokenizer(t, add_special_tokens=False)["input_ids"]
        if not pieces:
            raise OctoError(f"token {t!r} has no sub-tokens under the current tokenizer; it cannot be "
                            "initialised from them")
        todo.append((t, pieces))
    if not todo:
        return []
    tokenizer.add_tokens([t for t, _ in todo])
    ids = [tokenizer.convert_tokens_to_ids(t) for t, _ in todo]
    emb = model.get_input_embeddings()
    if max(ids) >= emb.weight.shape[0]:
        model.resize_token_embeddings(max(ids) + 1, mean_resizing=False)
        emb = model.get_input_embeddings()
    head = model.get_output_embeddings()
    tied = head is not None and head.weight.data_ptr() == emb.weight.data_ptr()
    with torch.no_grad():
        for (t, pieces), i in zip(todo, ids):
            emb.weight[i] = emb.weight[pieces].mean(dim=0)
            if head is not None and not tied:
                head.weight[i] = head.weight[pieces].mean(dim=0)
                if getattr(head, "bias", None) is not None:
                    head.bias[i] = head.bias[pieces].mean()
    return [{"token": t, "id": i, "pieces": pieces} for (t, pieces), i in zip(todo, ids)]


def _read_tokens(args: argparse.Namespace) -> list[str]:
    tokens = list(args.token)
    if args.tokens_file:
        path = Path(args.tokens_file)
        if not path.exists():
            raise OctoError(f"token file {path} does not exist; pass a text file with one token per line")
        tokens += [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not tokens:
        raise OctoError("no tokens to add; pass --token TEXT (repeatable) or --tokens-file FILE")
    return tokens


def add_tokenizer_extend_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="checkpoint directory to extend (weights + tokenizer)")
    parser.add_argument("--tokenizer", default=None, help="tokenizer directory (default: the checkpoint's)")
    parser.add_argument("--token", action="append", default=[], help="a token to add (repeatable)")
    parser.add_argument("--tokens-file", default=None, help="a text file with one token per line")
    parser.add_argument("--out", required=True, help="new checkpoint directory (must not exist)")


def run_tokenizer_extend(args: argparse.Namespace) -> int:
    from octo.cpt.checkpoint import save_checkpoint
    from octo.model import (
        load_model,
        load_tokenizer,
        saved_tokenizer_hash,
        tokenizer_hash,
    )

    src, out = Path(args.model), Path(args.out)
    tok_dir = Path(args.tokenizer) if args.tokenizer else src
    if out.exists() and any(out.iterdir()):
        raise OctoError(f"{out} already exists and is not empty; pass a new --out directory")
    tokens = _read_tokens(args)
    tok = load_tokenizer(tok_dir)
    model = load_model(src)
    old_hash = tokenizer_hash(tok_dir)
    added = extend_model(model, tok, tokens)
    if not added:
        raise OctoError("every token given is already in the vocabulary; nothing to add")
    new_hash = saved_tokenizer_hash(tok)
    manifest = {"restore_mode": "weights", "tokenizer_hash": new_hash, "parent": str(src.resolve()),
                "parent_tokenizer_hash": old_hash, "added_tokens": added, "vocab_size": len(tok)}
    save_checkpoint(out, model=model, tokenizer=tok, trainer_state=None, manifest=manifest)
    print(f"added {len(added)} token(s) to {tok_dir} -> {out} (tokenizer {old_hash} -> {new_hash}); "
          f"use data.tokenizer: {out} and model.init: {out} in a recipe", file=sys.stderr)
    return 0
