"""Full-state checkpoints, written atomically, verified on load.

``checkpoints/step-<N>/`` holds the model in HF format with its tokenizer, ``trainer_state.pt``
(optimizer moments, step, RNG and data-sampler state; loaded with ``weights_only=True``) and
``manifest.json`` (step, tokens, stage, restore mode, tokenizer hash, data fingerprints, versions,
every file's size and sha256): seed 003's full training state S = {theta, phi_opt, psi_sched, xi_rng,
tau_tok, nu_data}. It is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

from octo.errors import OctoError
from octo.manifest import package_versions
from octo.runio import STEP_DIR_RE, read_json, write_error, write_json_atomic
from octo.runlock import pid_alive

MANIFEST = "manifest.json"
STATE = "trainer_state.pt"
TMP_PREFIX = ".tmp-"     # a checkpoint being written: .tmp-step-<N>-<pid>
DEL_PREFIX = ".del-"     # a checkpoint being removed: .del-step-<N>-<pid>
STALE_RE = re.compile(r"^\.(?:tmp|del)-step-\d+-(\d+)$")


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_checkpoint(ckpt_dir: Path, *, model, tokenizer, trainer_state: dict | None, manifest: dict) -> Path:
    """Write a checkpoint atomically (:func:`atomic_dir`); returns its final path."""
    import torch

    ckpt_dir = Path(ckpt_dir)
    with atomic_dir(ckpt_dir, "write checkpoint", "earlier checkpoints are intact") as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        if trainer_state is not None:
            # through a Python file object: torch.save into a path hides the OSError of a full disk
            # behind "unexpected pos ..."; with a file object it stays the RuntimeError's context
            with open(tmp / STATE, "wb") as fh:
                torch.save(trainer_state, fh)
        write_file_manifest(tmp, manifest)
    return ckpt_dir


@contextmanager
def atomic_dir(final: Path, what: str, note: str):
    """Build a directory under a temporary name beside ``final`` and rename it when the block completes. On failure the
    temporary directory is removed; a full disk or unwritable path is one OctoError."""
    final = Path(final)
    tmp = final.parent / f"{TMP_PREFIX}{final.name}-{os.getpid()}"
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        yield tmp
        _fsync_dir(tmp)
        if final.exists():
            _remove_dir(final)
        os.replace(tmp, final)
        _fsync_dir(final.parent)
    except Exception as err:
        # torch and safetensors raise no OSError for a full disk; write_error finds the errno behind it
        shutil.rmtree(tmp, ignore_errors=True)
        octo_err = write_error(err, final, what, note)
        if octo_err is None:
            raise
        raise octo_err from None


def _remove_dir(path: Path) -> None:
    """Remove a directory so that it never exists half-deleted under its name: rename, then delete
    (a kill during the delete leaves a ``.del-`` directory, which :func:`remove_stale` clears)."""
    trash = path.parent / f"{DEL_PREFIX}{path.name}-{os.getpid()}"
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def remove_stale(checkpoints_dir: Path, log=print) -> None:
    """Remove what killed writers left in a checkpoints directory: ``.tmp-`` directories of a
    checkpoint being written, ``.del-`` directories being deleted (those of live processes stay)."""
    checkpoints_dir = Path(checkpoints_dir)
    if not checkpoints_dir.exists():
        return
    for d in checkpoints_dir.iterdir():
        m = STALE_RE.match(d.name)
        if m and d.is_dir() and not pid_alive(int(m.group(1))):
            if m.group(0).startswith(TMP_PREFIX):
                log(f"removing {d.name}, a checkpoint whose writer was stopped before it was complete")
            shutil.rmtree(d, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_file_manifest(ckpt_dir: Path, extra: dict) -> None:
    """Write ``manifest.json`` into a checkpoint directory: ``extra``, the package versions, and the
    size and sha256 of every file in it (what :func:`verify_checkpoint` checks at load)."""
    ckpt_dir = Path(ckpt_dir)
    files = {}
    for f in sorted(ckpt_dir.iterdir()):
        if f.is_file() and f.name != MANIFEST:
            files[f.name] = {"size": f.stat().st_size, "sha256": file_digest(f)}
    write_json_atomic(ckpt_dir / MANIFEST, {**extra, "files": files, "versions": package_versions()})


def verify_checkpoint(ckpt_dir: Path) -> str | None:
    """None if every file matches the manifest, else a sentence naming the bad file."""
    ckpt_dir = Path(ckpt_dir)
    if not (ckpt_dir / MANIFEST).exists():
        return f"{ckpt_dir} has no {MANIFEST} (incomplete checkpoint)"
    try:
        manifest = read_json(ckpt_dir / MANIFEST)
    except OctoError as err:
        return str(err)
    for name, meta in manifest.get("files", {}).items():
        f = ckpt_dir / name
        if not f.exists():
            return f"{f} is missing"
        if f.stat().st_size != meta["size"]:
            return f"{f} has {f.stat().st_size} bytes, the manifest says {meta['size']} (truncated or altered)"
        if file_digest(f) != meta["sha256"]:
            return f"{f} does not match its sha256 in the manifest (altered or corrupt)"
    return None


def list_checkpoints(checkpoints_dir: Path) -> list[tuple[int, Path]]:
    checkpoints_dir = Path(checkpoints_dir)
    if not checkpoints_dir.exists():
        return []
    out = []
    for d in checkpoints_dir.iterdir():
        m = STEP_DIR_RE.match(d.name)
        if m and d.is_dir():
            out.append((int(m.group(1)), d))
    return sorted(out)


def latest_good_checkpoint(checkpoints_dir: Path, log=print) -> tuple[int, Path] | None:
    """The newest checkpoint whose files match its manifest; damaged ones are reported and skipped."""
    for step, d in reversed(list_checkpoints(checkpoints_dir)):
        problem = verify_checkpoint(d)
        if problem is None:
            return step, d
        log(f"warning: skipping damaged checkpoint: {problem}; falling back to the previous one")
    return None


def load_trainer_state(ckpt_dir: Path) -> dict:
    import torch

    path = Path(ckpt_dir) / STATE
    if not path.exists():
        raise OctoError(f"{ckpt_dir} is a weights-only checkpoint (no {STATE}); a full-state restore needs "
                        "one, or set the stage's restore: weights")
    try:
        # weights_only: a state file can hold tensors and plain data, never code to run at load
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise OctoError(f"{path} holds objects other than tensors and plain data, which octo refuses to load "
                        "(weights_only=True: loading them could run code); it was not written by octo — "
                        "delete that checkpoint to resume from an earlier one") from None


def prune_checkpoints(checkpoints_dir: Path, keep_last: int, keep: set[int] = frozenset(), *,
                      keep_every: int = 0) -> None:
    """Keep the newest ``keep_last`` checkpoints, the steps in ``keep`` and (``keep_every`` = M > 0) every
    step divisible by M; remove the rest."""
    ckpts = list_checkpoints(checkpoints_dir)
    for step, d in ckpts[:-keep_last] if keep_last > 0 else ckpts:
        if step not in keep and not (keep_every and step % keep_every == 0):
            try:
                _remove_dir(d)
            except OSError:
                shutil.rmtree(d, ignore_errors=True)
