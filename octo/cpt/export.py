"""``octo export CHECKPOINT OUT``: a weights-only copy of a checkpoint, for serving or a new experiment.

    octo export runs/quickstart/cpt/decay-long/checkpoints/step-30 exports/decay-long

OUT gets the checkpoint's model and tokenizer byte for byte and a ``manifest.json`` with
``restore_mode: weights`` (seed 003's R_weights = {theta}: a stage that starts from it starts a fresh
optimizer) naming its origin and every file's sha256. It is written under a temporary name and
renamed, so OUT either does not exist or is complete.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from octo.errors import OctoError

# what a full-state checkpoint holds beyond the weights, the config and the tokenizer
NOT_EXPORTED = {"trainer_state.pt", "manifest.json"}


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="checkpoint directory (cpt/<stage>/checkpoints/step-<N>)")
    parser.add_argument("out", help="directory to create (it must not exist, or be empty)")


def run_export(args: argparse.Namespace) -> int:
    out = export_checkpoint(Path(args.checkpoint), Path(args.out))
    print(out)
    return 0


def export_checkpoint(ckpt: Path, out: Path) -> Path:
    """Write the weights-only export of ``ckpt`` to ``out``; returns ``out``."""
    from octo.cpt.checkpoint import (
        MANIFEST,
        atomic_dir,
        verify_checkpoint,
        write_file_manifest,
    )
    from octo.runio import read_json

    if not (ckpt.is_dir() and (ckpt / "config.json").is_file() and (ckpt / MANIFEST).is_file()):
        raise OctoError(f"{ckpt} is not an octo checkpoint (a directory with config.json and {MANIFEST}); pass a "
                        "cpt/<stage>/checkpoints/step-<N> directory")
    problem = verify_checkpoint(ckpt)
    if problem is not None:
        raise OctoError(f"cannot export a damaged checkpoint: {problem}; export an earlier checkpoint")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OctoError(f"{out} already exists and is not an empty directory; choose a new output path or remove it")
    source = read_json(ckpt / MANIFEST)
    with atomic_dir(out, "write the export", "nothing was written") as tmp:
        for f in sorted(ckpt.iterdir()):
            if f.is_file() and f.name not in NOT_EXPORTED:
                shutil.copy2(f, tmp / f.name)
        keep = ("stage", "step", "tokens", "lr", "seed", "tokenizer_hash", "data_fingerprints", "mixture")
        write_file_manifest(tmp, {
            "restore_mode": "weights",
            "exported_from": str(ckpt.resolve()),
            "source_restore_mode": source.get("restore_mode"),
            **{k: source[k] for k in keep if k in source},
        })
    return out
