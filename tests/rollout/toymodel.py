"""A tiny Llama checkpoint built locally for the rollout tests and benchmark (nothing downloaded).

A byte-level BPE tokenizer trained with ``tokenizers`` on generated sentences, and a
``LlamaForCausalLM`` (head_dim 32, as vLLM needs; untied embeddings unless asked) trained for
a few seconds so that its greedy completions look like sentences and end with EOS.

    from tests.rollout.toymodel import build_checkpoint
    path = build_checkpoint("/tmp/toy")          # model.safetensors, config.json, tokenizer files
"""

from __future__ import annotations

import random
from pathlib import Path

NAMES = ["Ada", "Bo", "Cy", "Dee", "Eli", "Fay", "Gus", "Hal", "Ivy", "Jo"]
THINGS = ["apples", "books", "coins", "pens", "cups", "shells", "cards", "seeds"]
VERBS = ["buys", "finds", "gets", "gives away", "eats", "loses", "sells", "keeps"]
EOS, PAD = "</s>", "<pad>"


def make_sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.sample(NAMES, 2)
        s = f"{a} {rng.choice(VERBS)} {rng.randint(1, 30)} {rng.choice(THINGS)}"
        if rng.random() < 0.5:
            s += f" and {b} {rng.choice(VERBS)} {rng.randint(1, 30)} more"
        out.append(s + ".")
    return out


def build_tokenizer(sentences: list[str], vocab_size: int = 320):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(sentences, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=PAD)


def build_model(tokenizer, *, hidden: int = 64, layers: int = 2, heads: int = 2, seed: int = 0,
                tied: bool = False):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=heads, head_dim=hidden // heads,
        max_position_embeddings=512, tie_word_embeddings=tied, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=None, dtype="float32")
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def train(model, tokenizer, sentences: list[str], *, steps: int, seed: int = 0, lr: float = 3e-3) -> float:
    """Plain next-token training on ``sentence + EOS``; returns the last loss."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    docs = [tokenizer(s, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for s in sentences]
    width = max(len(d) for d in docs)
    ids = torch.full((len(docs), width), tokenizer.pad_token_id)
    labels = torch.full((len(docs), width), -100)
    for i, d in enumerate(docs):
        ids[i, : len(d)] = torch.tensor(d)
        labels[i, : len(d)] = torch.tensor(d)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        idx = torch.randint(0, len(docs), (32,), generator=gen)
        loss = model(input_ids=ids[idx], attention_mask=(labels[idx] != -100).long(), labels=labels[idx]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return float(loss.detach())


def build_checkpoint(out_dir: str | Path, *, train_steps: int = 150, hidden: int = 64, layers: int = 2,
                     heads: int | None = None, seed: int = 0, tied: bool = False) -> Path:
    """Write a trained toy checkpoint (model + tokenizer) to ``out_dir``; return the path.
    ``heads`` defaults to ``hidden // 32`` (head_dim 32); ``tied=True`` shares the input embedding
    with the output head (as Llama-3.2-1B does)."""
    import torch

    out = Path(out_dir)
    sentences = make_sentences(600, seed=seed)
    tokenizer = build_tokenizer(sentences)
    model = build_model(tokenizer, hidden=hidden, layers=layers, heads=heads or hidden // 32, seed=seed, tied=tied)
    with torch.random.fork_rng(devices=[]):
        train(model, tokenizer, sentences, steps=train_steps, seed=seed)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def prompts(tokenizer, k: int, seed: int = 1) -> list[list[int]]:
    """``k`` prompts of different lengths: the first words of fresh sentences."""
    rng = random.Random(seed)
    out = []
    for s in make_sentences(k, seed=seed + 1000):
        words = s.split()
        out.append(tokenizer(" ".join(words[: rng.randint(1, 4)]), add_special_tokens=False)["input_ids"])
    return out
