"""``octo data preview RECIPE [--stage S] [--tokens N] [--samples K]``: what a stage will train on.

    octo data preview recipes/toy/quickstart.yaml --stage decay-long --tokens 100000 --samples 2

Draws N tokens (default 200,000, or the stage's budget if smaller) with the trainer's own packer
(:func:`octo.data.packing.stage_packer`), prints per source the target and realized token share and
the epochs the draw is of its training tokens (a streamed source shows "stream": it is read only as
far as the draw needs), then K packed sequences with document boundaries and, with
``cpt.mask_prompt``, the loss-masked prompt tokens in «».

It never disturbs a run: a run directory already prepared by this recipe is only read (no lock);
otherwise a scratch copy is prepared in a temporary directory and deleted afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import sys
import tempfile
from pathlib import Path

from octo import progress
from octo.config import add_recipe_arguments, dump_recipe, recipe_from_args, stage_order, stage_seed
from octo.errors import OctoError

DEFAULT_TOKENS = 200_000


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer (got {text!r})") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 (got {value})")
    return value


def _count(text: str) -> int:
    return 0 if text.strip() == "0" else _positive(text)


def add_data_preview_arguments(parser: argparse.ArgumentParser) -> None:
    add_recipe_arguments(parser)
    parser.add_argument("--stage", default=None,
                        help="stage whose mixture to draw from (default: the first stage in dependency order)")
    parser.add_argument("--tokens", type=_positive, default=DEFAULT_TOKENS,
                        help=f"tokens to draw (default {DEFAULT_TOKENS:,}, or the stage's budget if smaller)")
    parser.add_argument("--samples", type=_count, default=2, help="packed sequences to print decoded (default 2)")
    parser.add_argument("--max-chars", type=_count, default=600,
                        help="characters shown per document piece of a sample (0: all; default 600)")


def run_data_preview(args: argparse.Namespace) -> int:
    recipe = recipe_from_args(args)
    stages = stage_order(recipe)
    if not stages:
        raise OctoError("the recipe has no cpt.stages to preview; add a stage with a mixture")
    stage = args.stage or stages[0]
    if stage not in recipe.cpt.stages:
        raise OctoError(f"--stage {stage}: no such stage; the recipe's stages are {', '.join(stages)}")
    if args.dry_run:
        sys.stdout.write(dump_recipe(recipe))
        return 0
    progress.quiet_libraries()
    tokens = min(args.tokens, recipe.cpt.stages[stage].tokens)
    with preview_context(recipe) as (ctx, where):
        result = draw(ctx, stage, tokens)
        text = render(ctx, stage, result, where=where, samples=args.samples, max_chars=args.max_chars)
    sys.stdout.write(text)
    return 0


def _prepared(ctx) -> bool:
    """True when ``prepare()`` has finished in the run directory (it writes manifest.json last)."""
    from octo.runio import MANIFEST_FILE, RECIPE_FILE

    world_ok = ctx.recipe.world is None or (ctx.world_dir / "world.json").exists()
    return (world_ok and (ctx.run_dir / RECIPE_FILE).exists() and (ctx.run_dir / MANIFEST_FILE).exists()
            and (ctx.tokenizer_dir / "tokenizer_config.json").exists())


@contextlib.contextmanager
def preview_context(recipe):
    """(RunContext, description): the prepared run directory read-only, or a scratch copy (module docstring)."""
    from octo.context import RunContext
    from octo.reuse import check_run_dir

    ctx = RunContext(recipe)
    reason = "it is not prepared yet"
    if _prepared(ctx):
        try:
            check_run_dir(recipe, write=False)  # compares only: no write, no lock
        except OctoError:
            reason = "it was made by a different recipe"
        else:
            yield ctx, f"{ctx.run_dir} (read only, no lock taken)"
            return
    with tempfile.TemporaryDirectory(prefix="octo-preview-") as tmp:
        progress.info(f"run directory {ctx.run_dir}: {reason}; previewing in a scratch copy that is deleted "
                      "afterwards")
        scratch = RunContext(dataclasses.replace(recipe, run_dir=str(Path(tmp) / "run")))
        scratch.prepare()
        try:
            yield scratch, f"a scratch copy of {ctx.run_dir} ({reason})"
        finally:
            scratch.release()


@dataclasses.dataclass
class Draw:
    """What ``draw`` read: the emitted sequences and the documents in the order the sampler chose them."""

    sequences: list[tuple[list[int], list[int], list[int]]]
    pulled: list[tuple[str, object]]  # (source, Document)
    seen: dict[str, int]              # tokens per source as the trainer's mix/<source> counts them
    shares: dict[str, float]
    streams: dict = dataclasses.field(default_factory=dict)  # source -> its DocStream / StreamDocs


def draw(ctx, stage: str, tokens: int) -> Draw:
    """Draw ``tokens`` (rounded up to whole sequences) from the stage's packer, recording each document."""
    from octo.data.packing import stage_packer

    packer = stage_packer(ctx, stage)
    mixture = packer.mixture
    pulled: list[tuple[str, object]] = []
    inner = mixture.next

    def recording():
        name, doc = inner()
        pulled.append((name, doc))
        return name, doc

    mixture.next = recording  # the packer pulls through this; the sampler itself is untouched
    n_seq = math.ceil(tokens / ctx.recipe.cpt.seq_len)
    sequences = [packer.next_sequence() for _ in range(n_seq)]
    return Draw(sequences, pulled, dict(mixture.seen), mixture.shares(), dict(mixture.streams))


def _segments(result: Draw, k: int, seq_len: int):
    """Pieces of documents in sequence ``k``: (doc index, source, start, end, doc length)."""
    pos = k * seq_len
    out = []
    offset = 0
    for i, (name, doc) in enumerate(result.pulled):  # documents laid end to end, as the packer lays them
        n = len(doc.ids)
        lo, hi = max(pos, offset), min(pos + seq_len, offset + n)
        if lo < hi:
            out.append((i, name, lo - offset, hi - offset, n))
        offset += n
        if offset >= pos + seq_len:
            break
    return out


def _clip(text: str, max_chars: int) -> str:
    if not max_chars or len(text) <= max_chars:
        return text
    head = max_chars * 2 // 3
    tail = max_chars - head
    return f"{text[:head]} … [{len(text) - max_chars} characters not shown] … {text[-tail:]}"


def render(ctx, stage: str, result: Draw, *, where: str, samples: int, max_chars: int) -> str:
    recipe = ctx.recipe
    cfg = recipe.cpt
    scfg = cfg.stages[stage]
    tok = ctx.tokenizer
    drawn = sum(result.seen.values())
    lines = [
        f"stage '{stage}' of recipe '{recipe.name}', from {where}",
        (f"drew {drawn:,} tokens ({len(result.sequences):,} sequences of {cfg.seq_len}) with seed "
         f"{stage_seed(recipe, stage)}; long_docs: {cfg.long_docs}; mask_prompt: {'on' if cfg.mask_prompt else 'off'}"),
        "",
    ]
    docs_drawn: dict[str, int] = {}
    for name, _ in result.pulled:
        docs_drawn[name] = docs_drawn.get(name, 0) + 1
    header = ["source", "target", "realized", "tokens drawn", "docs drawn", "docs train", "held-out",
              "train tokens", "epochs"]
    drop = cfg.long_docs == "drop"
    if drop:
        header.append("dropped long")
    rows = [header]
    streamed = []
    for name, share in scfg.mixture.items():
        if share <= 0:
            continue
        src = ctx.source(name)
        seen = result.seen.get(name, 0)
        row = [name, f"{share:.3f}", f"{result.shares.get(name, 0.0):.4f}", f"{seen:,}",
               f"{docs_drawn.get(name, 0):,}"]
        if getattr(src, "streamed", False):
            stream = result.streams.get(name)
            row += ["stream", f"{len(src.heldout):,}", "-", "-"]
            if drop:
                row.append(f"{stream.dropped_long:,}" if stream is not None else "-")
            if stream is not None:
                copies = (f"; left out {stream.dropped_heldout:,} copies of held-out documents"
                          if stream.dropped_heldout else "")
                streamed.append(f"{name}: streamed, read {stream.rows_read:,} rows so far (epoch {stream.epoch}, "
                                f"shuffle buffer {src.cfg.shuffle_buffer:,} documents{copies})")
        else:
            train_tokens = sum(len(d.ids) for d in src.train)
            row += [f"{len(src.train):,}", f"{len(src.heldout):,}", f"{train_tokens:,}",
                    f"{seen / max(1, train_tokens):.2f}"]
            if drop:
                row.append(f"{src.dropped_long:,}")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    lines.append("")
    lines.append("realized: share of the tokens drawn (the trainer's mix/<source>); epochs: tokens drawn / the "
                 "source's training tokens")
    lines += streamed
    if cfg.mask_prompt:
        lines.append("«…»: tokens with label -100 (the prompt of IF/QA documents and each document's first token)")
    for k in range(min(samples, len(result.sequences))):
        ids, _pos, labels = result.sequences[k]
        segs = _segments(result, k, cfg.seq_len)
        lines.append("")
        lines.append(f"=== sequence {k + 1} of {len(result.sequences)}: {len(ids)} tokens, {len(segs)} document "
                     f"pieces, {sum(1 for x in labels if x == -100)} tokens with label -100 ===")
        at = 0
        for i, name, lo, hi, n in segs:
            notes = []
            if lo > 0:
                notes.append(f"continues from the previous sequence at token {lo}")
            if hi < n:
                notes.append("continues in the next sequence")
            doc = result.pulled[i][1]
            if doc.n_prompt:
                notes.append(f"prompt {doc.n_prompt} tokens")
            note = f" · {'; '.join(notes)}" if notes else ""
            lines.append(f"--- document {i + 1} · {name} · tokens {lo}-{hi} of {n}{note} ---")
            piece_ids = ids[at:at + hi - lo]
            piece_lab = labels[at:at + hi - lo]
            at += hi - lo
            lines.append(_clip(_decode_marked(tok, piece_ids, piece_lab, cfg.mask_prompt), max_chars))
    return "\n".join(lines) + "\n"


def _decode_marked(tok, ids: list[int], labels: list[int], mark: bool) -> str:
    """Decoded tokens; with ``mark``, runs of loss-masked tokens (label -100) wrapped in «»."""
    if not mark:
        return tok.decode(ids, skip_special_tokens=False)
    out, run, masked = [], [], None
    for t, lab in zip(ids, labels):
        m = lab == -100
        if masked is not None and m != masked:
            text = tok.decode(run, skip_special_tokens=False)
            out.append(f"«{text}»" if masked else text)
            run = []
        run.append(t)
        masked = m
    if run:
        text = tok.decode(run, skip_special_tokens=False)
        out.append(f"«{text}»" if masked else text)
    return "".join(out)
