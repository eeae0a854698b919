"""Config of the rollout backend (the recipe's ``probe.rollout`` key)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from octo.errors import ConfigError
from octo.schema import opt


@dataclass(kw_only=True)
class RolloutConfig:
    backend: Literal["hf", "vllm-server", "vllm"] = opt(
        "hf", help="generation backend: hf (embedded, transformers generate), vllm-server (running "
                   "`vllm serve` processes), vllm (in-process engine, GPU)")
    servers: list[str] = opt(default_factory=list,
                             help="vllm-server: base URLs of running servers, e.g. http://127.0.0.1:8000; "
                                  "empty: octo starts its own (num_servers)")
    batch_size: int = opt(256, ge=1, help="hf: sequences generated per forward batch")
    decoder: Literal["auto", "transformers"] = opt(
        "auto", help="hf: how a decoding step runs. auto: a Llama-architecture model takes octo's own step, which "
                     "keeps the KV cache in buffers allocated once per chunk (bitwise the same logits, checked "
                     "against the model's forward at each chunk's first step; docs/rollout.md); any other model, "
                     "and transformers, call the model's forward at every step")

    # vllm-server: transport
    request_timeout_s: float = opt(
        600.0, gt=0, help="vllm-server: seconds a server may stay silent on one request (a generation or "
                          "a weight reload) before the try counts as failed")
    connect_timeout_s: float = opt(10.0, gt=0, help="vllm-server: seconds to open a connection to a server")
    max_retries: int = opt(
        2, ge=0, help="vllm-server: extra tries of a request after a transient failure (refused or reset "
                      "connection, timeout, HTTP 429/5xx); then the server is dropped for the rest of the run")
    retry_backoff_s: float = opt(1.0, ge=0, help="vllm-server: wait before the first retry; doubles on each retry")
    max_concurrency: int = opt(
        64, ge=1, help="vllm-server: requests in flight at once over all servers (one request per prompt)")
    api_key_env: str | None = opt(
        None, help="vllm-server: name of the environment variable holding the servers' API key "
                   "(sent as a Bearer token; the key itself never goes in a recipe or a log)")
    sync_dir: str | None = opt(
        None, help="vllm-server, vllm: directory that update_weights writes model.safetensors to and the "
                   "servers read it from (must be visible to every server); default: a fresh temporary "
                   "directory, removed by close()")
    sync_on_start: bool = opt(
        True, help="vllm-server, vllm: push the trainer's weights once when the backend is made, so the first "
                   "rollout never uses weights the servers were started with by mistake")

    # vllm-server: servers octo starts itself
    num_servers: int | None = opt(
        None, ge=1, help="vllm-server: servers the probe needs. With servers empty octo starts this many (default "
                         "1) on free local ports from the probed checkpoint, waits for health and stops them at the "
                         "end (also on Ctrl-C, on an error, and when octo is killed). With servers listed, the "
                         "healthy ones are reused and never stopped, and octo starts only the missing ones (default: "
                         "none)")
    server_python: str | None = opt(
        None, help="vllm-server: Python of the vLLM server venv for the servers octo starts (default "
                   "$OCTO_VLLM_PYTHON, else ./.venv-vllm/bin/python; build it with scripts/install-vllm-server.sh)")
    server_args: list[str] = opt(
        default_factory=list, help="vllm-server: extra arguments for vLLM's api_server in the servers octo starts, "
                                   "e.g. ['--gpu-memory-utilization=0.5']")
    startup_timeout_s: float = opt(600.0, gt=0, help="vllm-server: seconds a server octo starts may take to get healthy")

    # vllm: in-process engine
    gpu_memory_utilization: float = opt(
        0.3, gt=0, le=1, help="vllm: share of GPU memory the in-process engine may take (the trainer shares "
                              "the GPU)")
    max_model_len: int | None = opt(
        None, ge=1, help="vllm, and the servers octo starts: longest prompt + completion in tokens (default: the "
                         "model's own limit)")
    dtype: str = opt("auto", help="vllm, and the servers octo starts: weight dtype (auto, float32, bfloat16, ...; "
                                  "a server's auto is float32 without a GPU)")
    enforce_eager: bool = opt(False, help="vllm: disable CUDA graphs (slower generation, faster start)")

    def validate(self) -> None:
        for i, url in enumerate(self.servers):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError(f"servers[{i}]", f"must be an http(s) URL such as http://127.0.0.1:8000 "
                                                   f"(got {url!r})")
            try:
                _ = parts.port  # urlsplit checks the port only when asked
            except ValueError:
                raise ConfigError(f"servers[{i}]", f"has a bad port in {url!r}") from None
