"""A probe's TRL checkpoints (``probes/<id>/checkpoints/checkpoint-<N>``): which one a probe resumes from.

transformers' Trainer writes a checkpoint in place (not under a temporary name) and rotates old ones
by deleting files, so a probe killed at the wrong moment leaves directories with some files only.
A checkpoint counts when every file is there, ``trainer_state.json`` (written last, not atomically)
parses and names its step, and octo's manifest (sizes and hashes, written after the Trainer's files)
verifies.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from octo import progress
from octo.cpt.checkpoint import MANIFEST, verify_checkpoint

CKPT_RE = re.compile(r"^checkpoint-(\d+)$")

# What the Trainer writes into checkpoint-<N>/ before trainer_state.json (any one of each tuple: the weights may be
# sharded; a LoRA probe's checkpoint holds only its adapter, which peft writes as adapter_model.safetensors with
# adapter_config.json, the base weights being the probed checkpoint's), and octo's manifest after them
# (ProbeMetricsCallback.on_save).
_CKPT_FILES = (("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "adapter_model.safetensors"),
               ("config.json", "adapter_config.json"), ("optimizer.pt",), ("scheduler.pt",), (MANIFEST,))


def probe_checkpoint_complete(d: Path, step: int) -> bool:
    """True when a TRL checkpoint-<N> directory was written to the end (its files are not hashed here).

    A kill during the write of trainer_state.json leaves a truncated file, and resuming from it would
    fail on every rerun, so it must parse and name step N.
    """
    if not all(any((d / f).is_file() for f in names) for names in _CKPT_FILES):
        return False
    try:
        state = json.loads((d / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(state, dict) and state.get("global_step") == step


def _numbered(ckpt_root: Path) -> list[tuple[int, Path]]:
    if not ckpt_root.is_dir():
        return []
    return [(int(m.group(1)), d) for d in ckpt_root.iterdir() if (m := CKPT_RE.match(d.name)) and d.is_dir()]


def has_complete_checkpoint(ckpt_root: Path) -> bool:
    """Whether a probe has a complete checkpoint to resume from (its files are verified only at resume)."""
    return any(probe_checkpoint_complete(d, step) for step, d in _numbered(ckpt_root))


def latest_probe_checkpoint(ckpt_root: Path, *, remove_partial: bool = False) -> tuple[int, Path] | None:
    """The newest complete checkpoint whose files verify; with ``remove_partial``, incomplete ones are deleted
    (resume only: the Trainer would otherwise write into, or rotate by mtime among, half-written directories)."""
    found = []
    for step, d in _numbered(ckpt_root):
        if probe_checkpoint_complete(d, step):
            problem = verify_checkpoint(d)
            if problem is None:
                found.append((step, d))
            else:  # kept for inspection; resume falls back to an older one
                progress.info(f"warning: skipping damaged probe checkpoint: {problem}; "
                              "falling back to the previous one")
        elif remove_partial:
            progress.info(f"removing incomplete probe checkpoint {d.name} (the probe was stopped while writing it)")
            shutil.rmtree(d, ignore_errors=True)
    return max(found) if found else None
