"""Write a model's weights where a vLLM engine can reload them (``reload_weights(weights_path=DIR)``).

vLLM loads every ``*.safetensors`` file of the directory with the model's own
``load_weights``, so the file holds the Hugging Face parameter names of ``model.state_dict()``.
Tied parameters (``lm_head.weight`` sharing ``embed_tokens.weight``) are written as separate
copies under both names: measured with vLLM 0.32 on a tied Llama, a file without
``lm_head.weight`` reloads into a model whose output head is wrong, with no error.

A model with peft LoRA adapters (a LoRA probe) is written *merged*: every adapted matrix as
``W + (alpha / r) B A`` under its plain name, no adapter tensors, so the server (which knows
nothing of the adapters) generates from the policy being trained. TRL merges in place, sends and
unmerges (``merge_adapter`` / ``unmerge_adapter``); here the merged tensors are computed out of
place with peft's own ``get_delta_weight``, so the frozen base weights are never written to and do
not drift by rounding over hundreds of merge/unmerge cycles (tested against peft's
``merge_and_unload``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

WEIGHTS_FILE = "model.safetensors"


def save_weights(model: Any, directory: str | Path) -> Path:
    """Save ``model``'s state dict to ``directory/model.safetensors`` atomically; return the file.

    The temporary name does not end in ``.safetensors``, so a server reading the directory never
    sees half a file."""
    import torch
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    seen: set[tuple[int, int]] = set()
    tensors = {}
    for name, tensor in weights_for_inference(model).items():
        t = tensor.detach()
        key = (t.untyped_storage().data_ptr(), t.storage_offset())
        if key in seen or not t.is_contiguous():
            t = t.clone(memory_format=torch.contiguous_format)
        seen.add(key)
        tensors[name] = t.cpu()
    target = directory / WEIGHTS_FILE
    tmp = directory / f".{WEIGHTS_FILE}.tmp-{os.getpid()}"
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, target)
    return target


def weights_for_inference(model: Any) -> dict[str, Any]:
    """``model``'s state dict under the names a plain (adapter-free) model of its architecture has: its own
    state dict, or for a model holding peft LoRA adapters (a ``PeftModel`` or the base model peft injected
    them into) the merged weights."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    state = base.state_dict()
    if not any(".base_layer." in name for name in state):   # no peft layer: nothing to merge, peft not imported
        return state
    import torch

    merged = {}
    for name, module in base.named_modules():
        base_layer = getattr(module, "base_layer", None)
        if base_layer is None or not hasattr(module, "get_delta_weight") or getattr(module, "merged", False):
            continue
        adapters = [a for a in module.active_adapters if a in getattr(module, "lora_A", {})]
        if adapters:
            with torch.no_grad():
                weight = base_layer.weight.detach()
                merged[f"{name}.weight"] = weight + sum(module.get_delta_weight(a).to(weight.dtype) for a in adapters)
    out = {}
    for name, tensor in state.items():
        if ".lora_" in name:   # adapter tensors: merged above, unknown to a plain model
            continue
        plain = name.replace(".base_layer.", ".")
        out[plain] = merged.get(plain, tensor)
    return out
