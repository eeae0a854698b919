"""The embedded ``hf`` backend: batched generation with a KV cache on a transformers model.

It generates with the model object it is given (the probe's live training model), so ``update_weights``
with that object costs nothing. Its own decoding loop rather than ``model.generate``: the distribution
must be exactly ``softmax(logits / T)`` (top-p optional) with each token's log-probability, as TRL's GRPO
recomputes it, while ``generate`` merges the checkpoint's ``generation_config.json`` (``top_k=50``,
penalties) into every call; randomness comes from a private ``torch.Generator`` seeded per call; and it
is the probe's hot loop. Prompts are left-padded with ``position_ids = cumsum(mask) - 1``, so a padded
batch computes the same logits as each prompt alone; sequences are cut at EOS, and once a quarter of a chunk
(``config.batch_size``) has ended the ended rows leave the forward batch, with the sampled tokens unchanged
(``HFBackend._compact``). After the prefill, a Llama model's decoding steps run in octo's own step with the KV
cache in buffers allocated once per chunk (octo.rollout.llama_decode: the same logits bit for bit, checked at each
chunk's first step); any other model's through its forward (``TransformersStep``).
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Any

from octo import progress
from octo.errors import OctoError
from octo.rollout.base import Completion, ContextClosing, check_request
from octo.rollout.config import RolloutConfig


def _eos_ids(tokenizer: Any, model: Any) -> list[int]:
    ids: set[int] = set()
    if getattr(tokenizer, "eos_token_id", None) is not None:
        ids.add(int(tokenizer.eos_token_id))
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if gen_eos is not None:
        ids.update(int(i) for i in (gen_eos if isinstance(gen_eos, (list, tuple)) else [gen_eos]))
    return sorted(ids)


def top_p_filter(scaled_logits, top_p: float):
    """Nucleus sampling as vLLM's ``apply_top_k_top_p``: -inf for a token once the mass above it reaches ``top_p``."""
    import torch

    sorted_logits, order = scaled_logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs
    drop_sorted = mass_before >= top_p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return scaled_logits.masked_fill(drop, float("-inf"))


class HFBackend(ContextClosing):
    """Generation on a transformers causal LM, in process. See the module docstring."""

    name = "hf"

    def __init__(self, config: RolloutConfig, *, tokenizer: Any, model: Any = None, model_path: str | None = None):
        if model is None:
            model = self._load(model_path)
        self.config = config
        self.tokenizer = tokenizer
        self.model = model
        self.eos_ids = _eos_ids(tokenizer, model)
        pad = getattr(tokenizer, "pad_token_id", None)
        self.pad_id = int(pad if pad is not None else (self.eos_ids[0] if self.eos_ids else 0))
        self._logits_to_keep = "logits_to_keep" in inspect.signature(model.forward).parameters
        # octo's own decoding step where the model allows it (see _stepper)
        # (off for good once a chunk's check finds it differs from the model's forward: _note_fallback)
        self._fused = config.decoder == "auto"

    @staticmethod
    def _load(model_path: str | None):
        if model_path is None:
            raise OctoError("rollout backend 'hf' needs a model or a checkpoint directory; pass model= or "
                            "model_path= to make_backend")
        path = Path(model_path)
        if not (path / "config.json").is_file():
            raise OctoError(f"rollout backend 'hf': {path} is not a model checkpoint directory (no config.json); "
                            f"point it at a saved checkpoint")
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(path).eval()

    # -- protocol ---------------------------------------------------------------------------------

    def generate(self, prompts: list[list[int]], *, n: int, max_tokens: int, temperature: float = 1.0,
                 top_p: float = 1.0, seed: int | None = None) -> list[list[Completion]]:
        import torch

        check_request(prompts, n=n, max_tokens=max_tokens, temperature=temperature, top_p=top_p)
        if not prompts:
            return []
        device = next(self.model.parameters()).device
        gen = torch.Generator(device=device)
        if seed is None:
            gen.seed()
        else:
            gen.manual_seed(int(seed) & ((1 << 63) - 1))
        seqs = [list(p) for p in prompts for _ in range(n)]
        rows: list[tuple[list[int], list[float], bool]] = []
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                for start in range(0, len(seqs), self.config.batch_size):
                    rows.extend(self._generate_chunk(seqs[start:start + self.config.batch_size], device=device,
                                                     max_tokens=max_tokens, temperature=temperature,
                                                     top_p=top_p, gen=gen))
        finally:
            if was_training:
                self.model.train()
        texts = self.tokenizer.batch_decode([r[0] for r in rows], skip_special_tokens=True)
        flat = [Completion(token_ids=ids, text=text, logprobs=lps, finish_reason="stop" if eos else "length")
                for (ids, lps, eos), text in zip(rows, texts)]
        return [flat[i * n:(i + 1) * n] for i in range(len(prompts))]

    def update_weights(self, model: Any, *, step: int | None = None) -> None:
        """No-op for the model object this backend generates with; otherwise copy its weights in."""
        if model is self.model:
            return
        self.model.load_state_dict(model.state_dict())

    def close(self) -> None:
        pass


    # -- decoding ---------------------------------------------------------------------------------

    def _generate_chunk(self, seqs: list[list[int]], *, device, max_tokens: int, temperature: float,
                        top_p: float, gen) -> list[tuple[list[int], list[float], bool]]:
        import torch

        batch = len(seqs)
        width = max(len(s) for s in seqs)
        ids = torch.full((batch, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((batch, width), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
            mask[i, width - len(s):] = 1
        ids, mask = ids.to(device), mask.to(device)
        positions = (mask.cumsum(-1) - 1).clamp_(min=0)
        eos = torch.tensor(self.eos_ids, dtype=torch.long, device=device)
        tokens = torch.full((batch, max_tokens), self.pad_id, dtype=torch.long, device=device)
        logps = torch.zeros((batch, max_tokens), dtype=torch.float32, device=device)
        lengths = torch.full((batch,), max_tokens, dtype=torch.long, device=device)
        stopped = torch.zeros(batch, dtype=torch.bool, device=device)
        extra = {"logits_to_keep": 1} if self._logits_to_keep else {}

        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **extra)
        step = self._stepper(out, capacity=width + max_tokens)
        logits = out.logits[:, -1, :]
        rows = torch.arange(batch, device=device)   # the chunk's rows still generating, in the cache's order
        for t in range(max_tokens):
            logits = logits.float()
            if len(rows) < batch:   # finished rows: a uniform row, drawn and discarded (see _compact)
                logits = logits.new_zeros((batch, logits.shape[-1])).index_copy_(0, rows, logits)
            if temperature == 0:
                logprobs = logits.log_softmax(-1)
                tok = logits.argmax(-1)
            else:
                scaled = logits / temperature
                if top_p < 1.0:
                    scaled = top_p_filter(scaled, top_p)
                logprobs = scaled.log_softmax(-1)
                tok = torch.multinomial(logprobs.exp(), 1, generator=gen).squeeze(1)
            tok = tok.masked_fill(stopped, self.pad_id)
            tokens[:, t] = tok
            logps[:, t] = logprobs.gather(1, tok[:, None]).squeeze(1)
            hit = ~stopped & torch.isin(tok, eos)
            lengths[hit] = t + 1
            stopped |= hit
            if t == max_tokens - 1 or bool(stopped.all()):
                break
            rows, mask, positions = self._compact(rows, stopped, mask, positions, step)
            mask = torch.cat([mask, torch.ones((len(rows), 1), dtype=mask.dtype, device=device)], dim=1)
            positions = positions[:, -1:] + 1
            logits = step(tok[rows, None], mask, positions)[:, -1, :]
        self._note_fallback(step)

        tokens, logps, lengths, stopped = tokens.tolist(), logps.tolist(), lengths.tolist(), stopped.tolist()
        return [(tokens[i][:lengths[i]], logps[i][:lengths[i]], stopped[i]) for i in range(batch)]

    def _stepper(self, out, *, capacity: int):
        """The chunk's decoding step after the prefill ``out``: octo's own for a Llama model (``rollout.decoder:
        auto``, octo.rollout.llama_decode), checked at its first step against the model's forward; else that
        forward."""
        from octo.rollout.llama_decode import LlamaDecoder, dynamic_layers, unsupported

        step = TransformersStep(self.model, out)
        # asked at every chunk: peft may have put adapters into the model since the backend was made
        if self._fused and dynamic_layers(step.cache_obj) and unsupported(self.model) is None:
            return LlamaDecoder(self.model, step.cache_obj, capacity, check=step)
        return step

    def _note_fallback(self, step) -> None:
        # a chunk that fell back turns octo's step off, so no later chunk makes a LlamaDecoder or says this again
        if getattr(step, "verified", None) is False and self._fused:
            progress.info("rollout hf: octo's Llama decoding step did not match the model's forward bit for bit; "
                          "decoding with the model's forward (set probe.rollout.decoder: transformers to skip "
                          "the check)")
            self._fused = False

    @staticmethod
    def _compact(rows, stopped, mask, positions, step):
        """Drop finished rows from the forward batch (their cache rows, mask and positions) once a quarter of it
        has finished: a finished row's tokens are cut at its EOS, so computing it is waste, and at the probe's
        lengths (most answers end long before the limit, a few run to it) about half the decoding work is.

        The sampled tokens stay those of the uncompacted batch: the sampler still draws one token for every row
        of the chunk (a finished row from a uniform distribution, then discarded), so the generator's stream, and
        each live row's draw from it, is unchanged. A cache that cannot drop rows (a static cache, a linear-attention
        layer: see ``selectable``) is left whole."""
        live = ~stopped[rows]
        if int(live.sum()) > 0.75 * len(rows) or not step.can_select():
            return rows, mask, positions
        keep = live.nonzero().squeeze(1)
        step.select(keep)
        return rows[keep], mask[keep], positions[keep]


class TransformersStep:
    """A decoding step through the model's own forward, carrying its KV cache from call to call."""

    def __init__(self, model, out):
        self.model = model
        self.cache = cache_kwargs(model, out)

    @property
    def cache_obj(self):
        return next(iter(self.cache.values()))

    def __call__(self, tokens, mask, positions):
        out = self.model(input_ids=tokens, attention_mask=mask, position_ids=positions, use_cache=True, **self.cache)
        self.cache = cache_kwargs(self.model, out)
        return out.logits

    def can_select(self) -> bool:
        return selectable(self.cache_obj)

    def select(self, keep) -> None:
        self.cache_obj.batch_select_indices(keep)


def selectable(cache) -> bool:
    """Whether ``cache`` can drop batch rows in place: a transformers ``Cache`` whose every layer implements
    ``batch_select_indices`` (a dynamic, sliding-window or quantized layer; not a static or linear-attention one,
    whose cache object has the method but whose layers raise)."""
    layers = getattr(cache, "layers", None)
    return callable(getattr(cache, "batch_select_indices", None)) and layers is not None and \
        all(callable(getattr(layer, "batch_select_indices", None)) for layer in layers)


def cache_kwargs(model, out) -> dict:
    """The KV cache of ``out`` as the next forward call's keyword: ``cache`` where the model's forward takes it
    (transformers >= 5.2x, which deprecates ``past_key_values`` with a FutureWarning per call site), else
    ``past_key_values`` (older 5.x)."""
    return {(name := _cache_keyword(type(model))): getattr(out, name)}


@functools.lru_cache(maxsize=None)
def _cache_keyword(model_class) -> str:
    return "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"
