"""Full-state checkpoints, written atomically, verified on load.

A checkpoint directory ``checkpoints/step-<N>/`` holds

- ``model.safetensors`` + ``config.json`` + ``generation_config.json`` (HF format: loads with
  ``AutoModelForCausalLM.from_pretrained``), the tokenizer files,
- ``trainer_state.pt``: optimizer moments, step, RNG states, data-sampler state
  (loaded with ``torch.load(weights_only=True)``: no arbitrary pickle from a checkpoint),
- ``manifest.json``: step, tokens, stage, restore mode, tokenizer hash, data fingerprints,
  package versions and the size and sha256 of every file.

Together these are seed 003's full training state S = {theta, phi_opt, psi_sched, xi_rng,
tau_tok, nu_data}. The directory is written under a temporary name and renamed when
complete, so a crash mid-write never leaves a directory that looks like a checkpoint.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
from pathlib import Path

from octo.errors import OctoError
from octo.runio import read_json, write_json_atomic

STEP_RE = re.compile(r"^step-(\d+)$")
MANIFEST = "manifest.json"
STATE = "trainer_state.pt"


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for pkg in ("octo-midtrain", "torch", "transformers", "trl", "accelerate", "tokenizers", "math-verify"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def save_checkpoint(ckpt_dir: Path, *, model, tokenizer, trainer_state: dict | None, manifest: dict) -> Path:
    """Write a checkpoint atomically; returns its final path."""
    import torch

    ckpt_dir = Path(ckpt_dir)
    tmp = ckpt_dir.parent / f".tmp-{ckpt_dir.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        tmp.mkdir(parents=True)
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        if trainer_state is not None:
            torch.save(trainer_state, tmp / STATE)
        files = {}
        for f in sorted(tmp.iterdir()):
            if f.is_file():
                files[f.name] = {"size": f.stat().st_size, "sha256": file_digest(f)}
        write_json_atomic(tmp / MANIFEST, {**manifest, "files": files, "versions": package_versions()})
        _fsync_dir(tmp)
        if ckpt_dir.exists():
            shutil.rmtree(ckpt_dir)
        os.replace(tmp, ckpt_dir)
        _fsync_dir(ckpt_dir.parent)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OctoError(f"cannot write checkpoint {ckpt_dir} ({err.strerror}); the previous checkpoint is "
                        "intact: free space or fix permissions, then rerun the same command to resume") from None
    return ckpt_dir


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
        m = STEP_RE.match(d.name)
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
    return torch.load(path, map_location="cpu", weights_only=True)


def prune_checkpoints(checkpoints_dir: Path, keep_last: int, keep: set[int] = frozenset()) -> None:
    """Keep the newest ``keep_last`` checkpoints and the steps in ``keep``; remove the rest."""
    ckpts = list_checkpoints(checkpoints_dir)
    for step, d in ckpts[:-keep_last] if keep_last > 0 else ckpts:
        if step not in keep:
            shutil.rmtree(d, ignore_errors=True)
