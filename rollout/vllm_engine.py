"""The ``vllm`` backend: an in-process ``vllm.LLM`` engine (a GPU machine with vLLM installed in
octo's own environment; where vLLM pins a different torch, use ``vllm-server`` instead).

Sampling follows the same rules as ``vllm-server`` (token-id prompts, per-prompt seeds,
``top_k=0``, neutral penalties, ``logprobs_mode="processed_logprobs"``, ``generation_config="vllm"``;
greedy asks for one completion and repeats it). Weight sync uses the same file path as the
server backend: ``model.safetensors`` in the sync directory, ``collective_rpc("reload_weights",
weights_path=DIR)``, then ``reset_prefix_cache()``. vLLM also has an NCCL weight-transfer path
that skips the file; octo does not use it because no machine here could test it.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from octo.errors import OctoError
from octo.rollout.base import Completion, ContextClosing, check_request, mix_seed
from octo.rollout.config import RolloutConfig
from octo.rollout.weights import save_weights


def is_vllm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


class VLLMBackend(ContextClosing):
    """Generation with ``vllm.LLM`` in this process."""

    name = "vllm"

    def __init__(self, config: RolloutConfig, *, tokenizer: Any, model: Any = None, model_path: str | None = None,
                 **engine_kwargs: Any):
        if not is_vllm_available():
            raise OctoError("rollout backend 'vllm' needs vLLM installed in octo's environment; on this machine use "
                            "backend 'vllm-server' with `octo serve` (its own venv, scripts/install-vllm-server.sh)")
        if model_path is None or not (Path(model_path) / "config.json").is_file():
            raise OctoError(f"rollout backend 'vllm' needs the checkpoint directory to start its engine from "
                            f"(got {model_path!r}); pass model_path= to make_backend")
        from vllm import LLM

        self.config = config
        self.tokenizer = tokenizer
        self._step: int | None = None
        self._own_sync_dir = config.sync_dir is None
        self.sync_dir = Path(tempfile.mkdtemp(prefix="octo-weights-") if config.sync_dir is None
                             else config.sync_dir)
        self.last_sync_s: float | None = None
        kwargs = dict(model=str(model_path), dtype=config.dtype, gpu_memory_utilization=config.gpu_memory_utilization,
                      max_model_len=config.max_model_len, enforce_eager=config.enforce_eager, seed=0,
                      enable_prefix_caching=True, logprobs_mode="processed_logprobs", generation_config="vllm")
        if not _cuda_available():
            # vLLM's CPU worker crashes on seeded requests whose prefill is split over steps
            # (see octo.rollout.serve.start_server): whole prompts per step on CPU
            kwargs["enable_chunked_prefill"] = False
        kwargs.update(engine_kwargs)
        self.llm = LLM(**kwargs)
        self.max_model_len = self.llm.llm_engine.model_config.max_model_len
        if model is not None and config.sync_on_start:
            self.update_weights(model)

    def generate(self, prompts: list[list[int]], *, n: int, max_tokens: int, temperature: float = 1.0,
                 top_p: float = 1.0, seed: int | None = None) -> list[list[Completion]]:
        from vllm import SamplingParams

        check_request(prompts, n=n, max_tokens=max_tokens, temperature=temperature, top_p=top_p)
        if not prompts:
            return []
        longest = max(len(p) for p in prompts)
        if longest + max_tokens > self.max_model_len:
            raise OctoError(f"a prompt of {longest} tokens plus max_tokens={max_tokens} exceeds the vLLM engine's "
                            f"max_model_len of {self.max_model_len}; raise probe.rollout.max_model_len or lower "
                            f"the length limit")
        greedy = temperature == 0
        params = [SamplingParams(n=1 if greedy else n, max_tokens=max_tokens, temperature=float(temperature),
                                 top_p=float(top_p), top_k=0, min_p=0.0, repetition_penalty=1.0,
                                 presence_penalty=0.0, frequency_penalty=0.0, logprobs=0,
                                 seed=None if seed is None else mix_seed(int(seed), i))
                  for i in range(len(prompts))]
        outputs = self.llm.generate([{"prompt_token_ids": [int(t) for t in p]} for p in prompts],
                                    sampling_params=params, use_tqdm=False)
        groups = []
        for out in outputs:
            group = []
            for c in sorted(out.outputs, key=lambda c: c.index):
                ids = [int(t) for t in c.token_ids]
                lps = [float(pos[t].logprob) for pos, t in zip(c.logprobs, ids)]
                if c.finish_reason not in ("stop", "length"):
                    raise OctoError(f"the vLLM engine ended a completion with finish_reason={c.finish_reason!r}"
                                    f"{'' if self._step is None else f' at step {self._step}'}")
                group.extend(Completion(list(ids), "", list(lps), c.finish_reason) for _ in range(n if greedy else 1))
            groups.append(group)
        flat = [c for g in groups for c in g]
        for c, text in zip(flat, self.tokenizer.batch_decode([c.token_ids for c in flat], skip_special_tokens=True)):
            c.text = text
        return groups

    def update_weights(self, model: Any, *, step: int | None = None) -> None:
        self._step = step
        t0 = time.perf_counter()
        save_weights(model, self.sync_dir)
        self.llm.collective_rpc("reload_weights", kwargs={"weights_path": str(self.sync_dir)})
        self.llm.reset_prefix_cache()
        self.last_sync_s = time.perf_counter() - t0

    def close(self) -> None:
        llm = self.__dict__.pop("llm", None)
        if llm is not None:
            shutdown = getattr(llm.llm_engine, "shutdown", None) or getattr(
                getattr(llm.llm_engine, "engine_core", None), "shutdown", None)
            if shutdown is not None:
                shutdown()
            del llm
        if self._own_sync_dir:
            shutil.rmtree(self.sync_dir, ignore_errors=True)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()
