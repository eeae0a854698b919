"""The ``hf`` backend's decoding step for Llama-architecture models, without transformers' per-call machinery.

At a probe's sizes a decoding step is mostly overhead: transformers' ``DynamicCache`` concatenates every layer's
keys and values onto a new tensor at every step (a copy of the whole cache, which grows with the answer), and
each forward call goes through mask building, output capturing and deprecation wrappers. :class:`LlamaDecoder`
runs the same step on the same parameters with the same torch operations in the same order (RMSNorm in float32,
rotary embedding, SDPA with transformers' mask and grouped-query rules), but writes keys and values into buffers
allocated once per chunk. The logits are bitwise those of ``model.forward``: every ``LlamaDecoder`` compares its
first step with the model's own forward and, if a single bit differs (another transformers version, a kernel
swapped in), hands the rest of the chunk to the model's forward and says so (``verified``).

:func:`unsupported` says why a model cannot take this path (another architecture, another attention
implementation, rotary scaling, a LoRA or quantized layer, ...); the backend then calls ``model.forward`` at every
step, as ``rollout.decoder: transformers`` always does.
"""

from __future__ import annotations

import os
from typing import Any

_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")
_MLP = ("gate_proj", "up_proj", "down_proj")


def unsupported(model: Any) -> str | None:
    """Why ``model`` cannot be decoded by :class:`LlamaDecoder`, or None when it can."""
    import torch

    cfg = getattr(model, "config", None)
    if type(model).__name__ != "LlamaForCausalLM" or getattr(cfg, "model_type", None) != "llama":
        return f"{type(model).__name__} is not a LlamaForCausalLM"
    if getattr(cfg, "_attn_implementation", None) != "sdpa":
        return f"attention implementation {getattr(cfg, '_attn_implementation', None)!r} is not sdpa"
    rope = getattr(cfg, "rope_parameters", None) or {}
    if rope.get("rope_type", "default") != "default":
        return f"rotary embedding {rope.get('rope_type')!r} is not the default"
    if getattr(cfg, "hidden_act", None) != "silu":
        return f"activation {getattr(cfg, 'hidden_act', None)!r} is not silu"
    inner = getattr(model, "model", None)
    layers = list(getattr(inner, "layers", []))
    if not layers or type(getattr(inner, "embed_tokens", None)) is not torch.nn.Embedding:
        return "no decoder layers or token embedding where a LlamaForCausalLM has them"
    linears = [model.lm_head] + [getattr(layer.self_attn, n) for layer in layers for n in _PROJECTIONS] + \
              [getattr(layer.mlp, n) for layer in layers for n in _MLP]
    if any(type(m) is not torch.nn.Linear for m in linears):
        return "a projection is not a plain torch.nn.Linear (LoRA adapters, a quantized layer)"
    norms = [inner.norm] + [n for layer in layers for n in (layer.input_layernorm, layer.post_attention_layernorm)]
    if any(type(n).__name__ != "LlamaRMSNorm" for n in norms):
        return "a norm is not LlamaRMSNorm"
    if model.lm_head.weight.device.type not in ("cpu", "cuda"):
        return f"device {model.lm_head.weight.device.type} (only cpu and cuda follow transformers' sdpa rules here)"
    return None


def dynamic_layers(cache: Any) -> bool:
    """Whether every layer of ``cache`` is a plain growing one (keys and values of every position so far)."""
    layers = getattr(cache, "layers", None)
    return bool(layers) and all(type(layer).__name__ == "DynamicLayer" and getattr(layer, "keys", None) is not None
                                for layer in layers)


def _rms_norm(norm, x):
    # LlamaRMSNorm.forward, operation for operation
    import torch

    dtype = x.dtype
    h = x.to(torch.float32)
    variance = h.pow(2).mean(-1, keepdim=True)
    h = h * torch.rsqrt(variance + norm.variance_epsilon)
    return norm.weight * h.to(dtype)


def _rotate_half(x):
    import torch

    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class LlamaDecoder:
    """One chunk's decoding steps after the prefill (see the module docstring).

    ``cache`` is the prefill's ``DynamicCache``; ``capacity`` the longest sequence the chunk can reach (prompt width
    + max tokens). ``check`` is the model's own step on that cache (octo.rollout.hf's ``TransformersStep``): the
    first call compares the two and keeps the model's step for the chunk if they differ."""

    def __init__(self, model, cache, capacity: int, check=None):
        inner = model.model
        self.model = model
        self.layers = list(inner.layers[: model.config.num_hidden_layers])
        self.length = int(cache.layers[0].keys.shape[2])
        self.keys, self.values = [], []
        for layer in cache.layers:
            for src, dst in ((layer.keys, self.keys), (layer.values, self.values)):
                buf = src.new_empty((src.shape[0], src.shape[1], capacity, src.shape[3]))
                buf[:, :, :self.length] = src
                dst.append(buf)
        self.force_gqa = os.environ.get("TRANSFORMERS_SDPA_FORCE_GQA", "0") == "1"
        self.check = check
        self.verified: bool | None = None

    # -- the step --------------------------------------------------------------------------------

    def __call__(self, tokens, mask, positions):
        """Logits ``(batch, 1, vocab)`` of ``tokens`` ``(batch, 1)`` at ``positions`` ``(batch, 1)``, ``mask`` the
        attention mask of every position so far including this one."""
        if self.verified is False:
            return self.check(tokens, mask, positions)
        logits = self._step(tokens, mask, positions)
        if self.verified is None and self.check is not None:
            import torch

            ref = self.check(tokens, mask, positions)
            self.verified = bool(torch.equal(logits, ref))
            if not self.verified:
                return ref
            self.check = None   # its cache is one step behind from now on: never used again
        return logits

    def _step(self, tokens, mask, positions):
        import torch
        import torch.nn.functional as F

        inner = self.model.model
        x = F.embedding(tokens, inner.embed_tokens.weight)
        rotary = inner.rotary_emb
        freqs = positions[..., None].float() * rotary.inv_freq.to(device=x.device, dtype=torch.float)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos = (emb.cos() * rotary.attention_scaling).to(x.dtype).unsqueeze(1)
        sin = (emb.sin() * rotary.attention_scaling).to(x.dtype).unsqueeze(1)
        # transformers' sdpa mask for one query: none when nothing is padded, else the boolean padding mask
        attn_mask = None if bool(mask.all()) else mask.bool()[:, None, None, :]
        batch, at = tokens.shape[0], self.length
        for i, layer in enumerate(self.layers):
            attn = layer.self_attn
            h = _rms_norm(layer.input_layernorm, x)
            shape = (batch, 1, -1, attn.head_dim)
            q = F.linear(h, attn.q_proj.weight, attn.q_proj.bias).view(shape).transpose(1, 2)
            k = F.linear(h, attn.k_proj.weight, attn.k_proj.bias).view(shape).transpose(1, 2)
            v = F.linear(h, attn.v_proj.weight, attn.v_proj.bias).view(shape).transpose(1, 2)
            q = (q * cos) + (_rotate_half(q) * sin)
            k = (k * cos) + (_rotate_half(k) * sin)
            self.keys[i][:, :, at:at + 1] = k
            self.values[i][:, :, at:at + 1] = v
            k, v = self.keys[i][:, :, :at + 1], self.values[i][:, :, :at + 1]
            o = self._attention(attn, q, k, v, attn_mask)
            x = x + F.linear(o.reshape(batch, 1, -1).contiguous(), attn.o_proj.weight, attn.o_proj.bias)
            h = _rms_norm(layer.post_attention_layernorm, x)
            mlp = layer.mlp
            gate = F.silu(F.linear(h, mlp.gate_proj.weight, mlp.gate_proj.bias))
            x = x + F.linear(gate * F.linear(h, mlp.up_proj.weight, mlp.up_proj.bias), mlp.down_proj.weight,
                             mlp.down_proj.bias)
        self.length = at + 1
        head = self.model.lm_head
        return F.linear(_rms_norm(inner.norm, x), head.weight, head.bias)

    def _attention(self, attn, q, k, v, attn_mask):
        """transformers' ``sdpa_attention_forward`` for one query token, with its grouped-query rules."""
        import torch.nn.functional as F

        groups, extra = attn.num_key_value_groups, {}
        if groups > 1:
            if self.force_gqa or (attn_mask is None and k.shape[-1] == v.shape[-1] <= 256):
                extra["enable_gqa"] = True
            else:   # one query token: the query heads packed onto their key/value head
                q = q.reshape(q.shape[0], q.shape[1] // groups, groups, q.shape[-1])
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=0.0, scale=attn.scaling,
                                           is_causal=False, **extra)
        return o.reshape(o.shape[0], -1, 1, v.shape[-1]).transpose(1, 2).contiguous()

    # -- dropping rows ---------------------------------------------------------------------------

    def can_select(self) -> bool:
        return self.verified is not False or self.check.can_select()

    def select(self, keep) -> None:
        """Keep only the batch rows ``keep`` (a finished row leaves the forward batch): in the buffers, and in the
        model's cache while it is still to check the first step against (rows may end at the first token) or has
        taken the chunk over."""
        if self.check is not None:
            self.check.select(keep)
        if self.verified is False:
            return
        self.keys = [self._kept(b, keep) for b in self.keys]
        self.values = [self._kept(b, keep) for b in self.values]

    def _kept(self, buf, keep):
        # only the filled positions are copied: a buffer is mostly room for the tokens still to come
        out = buf.new_empty((len(keep),) + tuple(buf.shape[1:]))
        out[:, :, :self.length] = buf[:, :, :self.length].index_select(0, keep)
        return out
