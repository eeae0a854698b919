"""Models and tokenizers: the toy tokenizer and tiny Llama, loading, hashing.

Every checkpoint octo writes is a plain Hugging Face directory: ``AutoModelForCausalLM
.from_pretrained(dir)`` and ``AutoTokenizer.from_pretrained(dir)`` load it, and vLLM can
serve it (head_dim >= 32, untied embeddings — tied ones reload silently wrong in vLLM).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from octo.config import ModelConfig
from octo.errors import OctoError

EOS = "<|endoftext|>"
PAD = "<|pad|>"
ADDED_TOKENS = ["<think>", "</think>", "\\boxed{"]


def train_toy_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: str | Path):
    """Byte-level BPE trained on the toy world; single-digit tokens make arithmetic learnable (shared/FACTS.md)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[EOS, PAD], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), min_frequency=2)
    tok.train_from_iterator(texts, trainer=trainer)
    tok.add_tokens(ADDED_TOKENS)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=PAD)
    fast.padding_side = "left"
    fast.save_pretrained(str(out_dir))
    return fast


def load_tokenizer(path: str | Path):
    from transformers import AutoTokenizer

    path = Path(path)
    if not path.exists():
        raise OctoError(f"tokenizer directory {path} does not exist")
    tok = AutoTokenizer.from_pretrained(str(path))
    if tok.eos_token_id is None:
        raise OctoError(f"tokenizer at {path} has no EOS token; octo packs documents with EOS between them")
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def tokenizer_hash(path: str | Path) -> str:
    """sha256 of the tokenizer's vocabulary and added tokens (the version bound into manifests, seed 003)."""
    path = Path(path)
    tj = path / "tokenizer.json"
    if tj.exists():
        data = json.loads(tj.read_text(encoding="utf-8"))
        canon = json.dumps({"model": data.get("model"), "added": data.get("added_tokens"),
                            "pre": data.get("pre_tokenizer")}, sort_keys=True)
        return hashlib.sha256(canon.encode()).hexdigest()[:16]
    h = hashlib.sha256()
    for f in sorted(path.glob("*")):
        if f.suffix in (".json", ".model", ".txt") and f.name != "config.json":
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def saved_tokenizer_hash(tokenizer) -> str:
    """:func:`tokenizer_hash` of the directory ``tokenizer.save_pretrained`` would write (for a tokenizer
    held in memory, e.g. before it goes into a new checkpoint's manifest)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        return tokenizer_hash(tmp)


def build_toy_model(cfg: ModelConfig, tokenizer, seed: int):
    """A fresh tiny Llama (untied embeddings, head_dim = hidden / heads)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    vocab = len(tokenizer)
    vocab = (vocab + 63) // 64 * 64
    config = LlamaConfig(
        vocab_size=vocab, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads, head_dim=cfg.hidden_size // cfg.num_heads,
        max_position_embeddings=cfg.max_position, rms_norm_eps=1e-5, rope_theta=10000.0,
        tie_word_embeddings=False, bos_token_id=None, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, attn_implementation=cfg.attn_implementation,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = None
    return model


def load_model(path: str | Path, *, attn_implementation: str = "sdpa"):
    from transformers import AutoModelForCausalLM

    path = Path(path)
    if not (path / "config.json").exists():
        raise OctoError(f"{path} is not a Hugging Face checkpoint directory (no config.json)")
    try:
        return AutoModelForCausalLM.from_pretrained(str(path), attn_implementation=attn_implementation,
                                                    dtype="float32")
    except OSError as err:
        raise OctoError(f"cannot load the model at {path}: {err}") from None

