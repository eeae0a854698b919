"""Small models shipped with octo, named in a recipe as ``asset:<name>`` (``model.init``, ``data.tokenizer``).

``toy-base`` is the toy world's base model: the ``pretrain`` stage of recipes/toy/scratch.yaml (world v2, seed 0),
exported weights-only with its tokenizer. The quickstart starts from it, as a real user starts from a
pretrained base model, instead of pretraining from random init for three minutes. ``scripts/build-toy-base.sh``
rebuilds it and rewrites ``SHA256SUMS``; every use checks the files against those sums, so a changed or
truncated asset is one clear error, not a silently different experiment.
"""

from __future__ import annotations

from pathlib import Path

from octo.errors import OctoError

ASSETS_DIR = Path(__file__).resolve().parent
PREFIX = "asset:"
SUMS_FILE = "SHA256SUMS"
_verified: set[str] = set()


def asset_names() -> list[str]:
    return sorted(p.name for p in ASSETS_DIR.iterdir() if (p / "config.json").exists() or
                  (p / "tokenizer_config.json").exists())


def pinned_sums() -> dict[str, str]:
    """``<asset>/<file>`` -> sha256, from SHA256SUMS (``sha256sum`` format, paths relative to this folder)."""
    sums = {}
    for line in (ASSETS_DIR / SUMS_FILE).read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.lstrip("*")] = digest
    return sums


def check_name(spec: str) -> str | None:
    """None when ``spec`` is not an asset reference or names a shipped asset; otherwise what is wrong."""
    if not spec.startswith(PREFIX):
        return None
    name = spec[len(PREFIX):]
    if name in asset_names():
        return None
    return f"'{spec}' is not a shipped asset; shipped: " + ", ".join(PREFIX + n for n in asset_names())


def resolve(spec: str | Path) -> Path:
    """The local directory of ``spec``: an ``asset:<name>`` after checking every file's sha256, else the path."""
    spec = str(spec)
    if not spec.startswith(PREFIX):
        return Path(spec)
    problem = check_name(spec)
    if problem:
        raise OctoError(problem)
    name = spec[len(PREFIX):]
    path = ASSETS_DIR / name
    if name not in _verified:
        pins = {k.split("/", 1)[1]: v for k, v in pinned_sums().items() if k.startswith(name + "/")}
        files = {p.name for p in path.iterdir() if p.is_file()}
        if not pins or set(pins) != files:
            raise OctoError(f"asset {name} in {path} does not match its SHA256SUMS file list; rebuild it with "
                            "scripts/build-toy-base.sh or reinstall octo")
        from octo.cpt.checkpoint import file_digest

        bad = sorted(f for f, digest in pins.items() if file_digest(path / f) != digest)
        if bad:
            raise OctoError(f"asset {name} in {path}: the sha256 of {', '.join(bad)} differs from the one pinned in "
                            f"{ASSETS_DIR / SUMS_FILE}; rebuild it with scripts/build-toy-base.sh or reinstall octo")
        _verified.add(name)
    return path
