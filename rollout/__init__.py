"""Rollout backends: where the GRPO probe's completions come from.

Every backend follows one protocol (:class:`RolloutBackend`)::

    from octo.rollout import make_backend
    from octo.rollout.config import RolloutConfig

    backend = make_backend(RolloutConfig(backend="hf"), tokenizer=tok, model=model)
    groups = backend.generate([prompt_ids, ...], n=8, max_tokens=64, temperature=1.0, seed=0)
    groups[0][0].token_ids, groups[0][0].logprobs, groups[0][0].finish_reason
    backend.update_weights(model, step=1)      # after each optimizer step
    backend.close()

- ``hf``: the embedded default; batched generation with a KV cache on the live model object.
- ``vllm-server``: one or more running ``vllm serve`` processes (``octo serve``), over HTTP.
- ``vllm``: an in-process ``vllm.LLM`` engine (a GPU machine with vLLM in octo's environment).

Backends are looked up by name in :data:`BACKENDS`, so importing ``octo.rollout`` never imports
torch, transformers or vLLM. See docs/rollout.md.
"""

from __future__ import annotations

import importlib
from typing import Any

from octo.errors import OctoError
from octo.rollout.base import Completion, RolloutBackend
from octo.rollout.config import RolloutConfig

# name -> "module:Class"; the module is imported only when the backend is made.
BACKENDS: dict[str, str] = {
    "hf": "octo.rollout.hf:HFBackend",
    "vllm-server": "octo.rollout.vllm_server:VLLMServerBackend",
    "vllm": "octo.rollout.vllm_engine:VLLMBackend",
}


def make_backend(config: RolloutConfig, *, tokenizer: Any, model: Any = None,
                 model_path: str | None = None) -> RolloutBackend:
    """The backend ``config.backend`` names.

    ``tokenizer`` decodes completions (and gives the EOS token); ``model`` is the trainer's live
    model (``hf`` generates with it; the vLLM backends push its weights once at start when
    ``config.sync_on_start``); ``model_path`` is the checkpoint directory (``hf`` loads it when no
    model is given; ``vllm`` starts its engine from it).
    """
    target = BACKENDS.get(config.backend)
    if target is None:
        raise OctoError(f"unknown rollout backend {config.backend!r}; choose one of: {', '.join(BACKENDS)}")
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(config, tokenizer=tokenizer, model=model, model_path=model_path)


__all__ = ["BACKENDS", "Completion", "RolloutBackend", "RolloutConfig", "make_backend"]
