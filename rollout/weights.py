"""Write a model's weights where a vLLM engine can reload them (``reload_weights(weights_path=DIR)``).

vLLM loads every ``*.safetensors`` file of the directory with the model's own
``load_weights``, so the file holds the Hugging Face parameter names of ``model.state_dict()``.
Tied parameters (``lm_head.weight`` sharing ``embed_tokens.weight``) are written as separate
copies under both names: measured with vLLM 0.32 on a tied Llama, a file without
``lm_head.weight`` reloads into a model whose output head is wrong, with no error.
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
    for name, tensor in model.state_dict().items():
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
