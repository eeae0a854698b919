"""Version binding on restore (seed 003: a checkpoint is bound to tau_tok and nu_data).

Restoring a checkpoint with another tokenizer would feed ids to the wrong embedding rows, and resuming
on changed data would point the sampler state at other documents. Both are refused with one sentence
unless ``--allow-mismatch tokenizer`` / ``--allow-mismatch data`` is passed; an override is recorded in
``cpt/<stage>/restores.jsonl`` and in every later checkpoint's manifest (``restore_overrides``). The
tokenizer is checked on every restore of a checkpoint with an octo manifest; data only on a resume.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from octo.errors import OctoError

MISMATCH_KINDS = ("tokenizer", "data")
RESTORES_FILE = "restores.jsonl"


def add_mismatch_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--allow-mismatch", action="append", default=[], choices=MISMATCH_KINDS,
                        help="restore a checkpoint although its tokenizer (or, on resume, its data) differs "
                             "from the run's (checkpoint version binding); recorded in cpt/<stage>/restores.jsonl")


def _manifest(ckpt: Path) -> dict | None:
    from octo.runio import read_json

    path = Path(ckpt) / "manifest.json"
    if not path.exists():
        return None
    data = read_json(path)
    return data if isinstance(data, dict) else None


def check_restore(ctx, stage: str, ckpt: Path, *, event: str, mode: str, check_data: bool,
                  record: bool = True) -> list[dict]:
    """Check ``ckpt`` against the run's tokenizer (and data); record the restore (``record``: rank 0); overrides."""
    from octo.runio import JsonlWriter

    allow = set(getattr(ctx, "allow_mismatch", ()) or ())
    manifest = _manifest(ckpt)
    where = _rel(ctx, ckpt)
    now_tok = ctx.tokenizer_version
    overrides: list[dict] = []
    row = {"event": event, "checkpoint": where, "mode": mode, "tokenizer_hash": now_tok}
    if manifest is None or "tokenizer_hash" not in manifest:
        row["bound"] = False  # a plain Hugging Face directory carries no versions to check
    else:
        row["bound"] = True
        row["checkpoint_tokenizer_hash"] = manifest["tokenizer_hash"]
        if manifest["tokenizer_hash"] != now_tok:
            if "tokenizer" not in allow:
                raise OctoError(
                    f"stage '{stage}': checkpoint {where} was trained with tokenizer {manifest['tokenizer_hash']} "
                    f"but this run's tokenizer is {now_tok}, so token ids would map to the wrong embeddings; "
                    "use the checkpoint's tokenizer (data.tokenizer) or pass --allow-mismatch tokenizer to "
                    "restore anyway (it is recorded)")
            overrides.append({"kind": "tokenizer", "checkpoint": manifest["tokenizer_hash"], "run": now_tok})
        if check_data:
            saved = manifest.get("data_fingerprints") or {}
            changed = {}
            for name, fp in sorted(saved.items()):
                if name in ctx.recipe.data.sources:
                    now = ctx.source(name).fingerprint
                    if now != fp:
                        changed[name] = (fp, now)
            if changed:
                if "data" not in allow:
                    names = ", ".join(changed)
                    raise OctoError(
                        f"stage '{stage}': the data of source(s) {names} changed since checkpoint {where} was "
                        "written, so resuming would not read the documents an uninterrupted run reads; restore "
                        "the original files, or pass --allow-mismatch data to resume anyway (it is recorded)")
                overrides += [{"kind": "data", "source": n, "checkpoint": a, "run": b}
                              for n, (a, b) in changed.items()]
    row["overrides"] = overrides
    if not record:
        return overrides
    with JsonlWriter(ctx.stage_dir(stage) / RESTORES_FILE) as w:
        w.write(row)
    if overrides:
        from octo import progress

        kinds = ", ".join(sorted({o["kind"] for o in overrides}))
        progress.info(f"stage {stage}: restoring {where} despite a {kinds} mismatch (--allow-mismatch); "
                      f"recorded in cpt/{stage}/{RESTORES_FILE}")
    return overrides


def _rel(ctx, path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(ctx.run_dir.resolve()))
    except ValueError:
        return str(path)


def recorded_overrides(ctx, stage: str) -> list[dict]:
    """Every override recorded for ``stage`` so far (goes into later checkpoint manifests)."""
    from octo.runio import read_jsonl

    path = ctx.stage_dir(stage) / RESTORES_FILE
    if not path.exists():
        return []
    return [o for r in read_jsonl(path) for o in (r.get("overrides") or [])]
