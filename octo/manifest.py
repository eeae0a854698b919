"""``manifest.json`` of a run directory: package versions, git commit, seeds, tokenizer hash, data fingerprints
and the bad rows skipped (seed 003: what a result is bound to)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from octo.runio import MANIFEST_FILE, read_json, write_json_atomic


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for pkg in ("octo-midtrain", "torch", "transformers", "trl", "accelerate", "tokenizers", "math-verify"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def git_commit() -> str | None:
    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return res.stdout.strip() or None if res.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def write_manifest(run_dir: Path, *, name: str, seed: int, tokenizer_hash: str, fingerprints: dict[str, str],
                   bad_rows: dict[str, dict[str, int]]) -> None:
    write_json_atomic(Path(run_dir) / MANIFEST_FILE, {
        "name": name, "seed": seed, "git_commit": git_commit(), "versions": package_versions(),
        "tokenizer_hash": tokenizer_hash, "data_fingerprints": fingerprints, "data_bad_rows": bad_rows,
    })


def update_manifest(run_dir: Path, **fields) -> None:
    """Rewrite manifest.json with ``fields`` changed (atomically)."""
    path = Path(run_dir) / MANIFEST_FILE
    write_json_atomic(path, {**read_json(path), **fields})
