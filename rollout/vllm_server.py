"""The ``vllm-server`` backend: completions from running ``vllm serve`` processes over HTTP.

Protocol (vLLM's OpenAI-compatible API, checked against vLLM 0.32):

- ``GET /v1/models`` when the backend is made: each server's model name and ``max_model_len``.
- ``POST /v1/completions`` once per prompt, ``prompt`` given as token ids, with ``n``,
  ``max_tokens``, ``temperature``, ``top_p``, ``top_k=0``, ``min_p=0`` and neutral penalties
  (so that a checkpoint's ``generation_config.json`` cannot change the distribution),
  ``logprobs=0`` (the sampled token's log-probability), ``return_token_ids`` and a per-prompt
  ``seed`` derived from the call's seed (vLLM seeds sample ``j`` of a request with ``seed + j``).
  vLLM refuses ``n > 1`` with temperature 0, so greedy asks for one completion and repeats it.
  The log-probabilities are those of the sampling distribution (temperature and top-p applied)
  only when the server runs with ``--logprobs-mode processed_logprobs``, as ``octo serve``
  starts it; with vLLM's default (``raw_logprobs``) they ignore the temperature.
- Weight sync (:meth:`VLLMServerBackend.update_weights`): write ``model.safetensors`` to the
  sync directory, ``POST /collective_rpc {"method": "reload_weights", "kwargs": {"weights_path":
  DIR}}`` (needs ``VLLM_SERVER_DEV_MODE=1`` on the server), then ``POST /reset_prefix_cache``
  so no cached prefix computed with the old weights is reused.

Servers: the URLs in ``config.servers``; with none listed, the backend starts ``num_servers``
(default 1) itself from the checkpoint at ``model_path`` (:func:`octo.rollout.serve.launch_server`),
waits for their health and stops them in :meth:`VLLMServerBackend.close`; they also die with the
thread that made the backend (PR_SET_PDEATHSIG). With URLs and ``num_servers`` both given, the healthy
listed servers are reused (never stopped) and only the missing ones are started. docs/rollout.md.

Requests are spread round-robin over the servers, up to ``max_concurrency`` in flight. Every
request has a connect and a read timeout; transient failures are retried ``max_retries`` times
(see :mod:`octo.rollout.transport`); a server that still fails is dropped for the rest of the
run with a warning, and its requests go to the others. When none is left, :class:`OctoError`
names every server, what went wrong with each, and the step.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from octo.errors import OctoError
from octo.rollout.base import Completion, ContextClosing, check_request, mix_seed
from octo.rollout.config import RolloutConfig
from octo.rollout.transport import RequestFailed, ServerClient
from octo.rollout.weights import save_weights

log = logging.getLogger("octo.rollout")


def read_api_key(env_var: str | None) -> str | None:
    """The API key from the environment variable ``env_var`` (None when no variable is named)."""
    if not env_var:
        return None
    key = os.environ.get(env_var, "")
    if not key:
        raise OctoError(f"the vLLM API key variable {env_var} (probe.rollout.api_key_env) is not set; "
                        f"export the servers' key in {env_var} or drop api_key_env")
    return key


@dataclass
class _Server:
    client: ServerClient
    model: str | None = None
    max_model_len: int | None = None
    error: str | None = None  # why it was dropped; None while healthy

    @property
    def url(self) -> str:
        return self.client.url


class _Garbage(Exception):
    """A server answered, but with something that is not a valid completion."""


class VLLMServerBackend(ContextClosing):
    """Rollouts from one or more vLLM servers. See the module docstring for the protocol."""

    name = "vllm-server"

    def __init__(self, config: RolloutConfig, *, tokenizer: Any, model: Any = None, model_path: str | None = None):
        self.config = config
        self.tokenizer = tokenizer
        # token ids a server may return: the model's (padded) vocabulary, when the model is known
        self._vocab: int | None = getattr(getattr(model, "config", None), "vocab_size", None)
        api_key = read_api_key(config.api_key_env)
        self._lock = threading.Lock()
        self._step: int | None = None
        self._closed = False
        self.started: list = []
        """:class:`~octo.rollout.serve.ServerHandle` of each server this backend started (close() stops them)."""
        self._pool = ThreadPoolExecutor(max_workers=config.max_concurrency, thread_name_prefix="octo-rollout")
        self._own_sync_dir = config.sync_dir is None
        self.sync_dir = Path(tempfile.mkdtemp(prefix="octo-weights-") if config.sync_dir is None
                             else config.sync_dir)
        self.last_sync_s: float | None = None
        """Seconds the last :meth:`update_weights` took (save + reload + prefix-cache reset)."""
        try:
            urls = self._ensure_servers(list(dict.fromkeys(config.servers)), model_path)  # order kept, no repeats
            self._servers = [_Server(ServerClient(url, connect_timeout_s=config.connect_timeout_s,
                                                  request_timeout_s=config.request_timeout_s,
                                                  max_retries=config.max_retries,
                                                  retry_backoff_s=config.retry_backoff_s, api_key=api_key))
                             for url in urls]
            self._connect()
            if model is not None and config.sync_on_start:
                self.update_weights(model)
        except BaseException:
            self.close()
            raise

    # -- servers ----------------------------------------------------------------------------------

    def _ensure_servers(self, urls: list[str], model_path: str | None) -> list[str]:
        """The URLs to use: the listed ones as they are (no ``num_servers``), else the healthy listed
        ones plus servers started here until there are ``num_servers`` (default 1 when none is listed)."""
        from octo import progress
        from octo.rollout.serve import health, launch_server, wait_healthy
        from octo.rollout.transport import normalize_url

        want = self.config.num_servers if self.config.num_servers is not None else (0 if urls else 1)
        if want == 0:
            return urls
        healthy = [u for u in urls if health(normalize_url(u))]
        for url in urls:
            if url not in healthy:
                log.warning("vLLM server %s does not answer GET /health; octo starts its own instead", url)
        missing = want - len(healthy)
        if healthy:
            progress.info(f"reusing {len(healthy)} running vLLM server(s): {', '.join(healthy)}")
        if missing <= 0:
            return healthy
        if model_path is None:
            raise OctoError("rollout backend 'vllm-server' has no running server and no checkpoint to start one "
                            "from; list running servers in probe.rollout.servers (octo serve CHECKPOINT)")
        t0 = time.monotonic()
        dtype = None if self.config.dtype == "auto" else self.config.dtype
        ports: set[int] = set()
        # launched from this thread and waited for here: a server dies with the thread that started it
        for _ in range(missing):
            handle = launch_server(model_path, python=self.config.server_python, port=self._new_port(ports),
                                   max_model_len=self.config.max_model_len, api_key_env=self.config.api_key_env,
                                   dtype=dtype, extra_args=self.config.server_args)
            self.started.append(handle)
        progress.info(f"starting {missing} vLLM server(s) for {model_path} at "
                      f"{', '.join(h.url for h in self.started)} (log: {self.started[0].log_path}); loading, "
                      f"up to {self.config.startup_timeout_s:g} s")
        with progress.activity(f"loading {missing} vLLM server(s)"):   # its heartbeat, not the caller's
            wait_healthy(self.started, self.config.startup_timeout_s)
        progress.info(f"vLLM server(s) healthy after {time.monotonic() - t0:.0f} s")
        return healthy + [h.url for h in self.started]

    @staticmethod
    def _new_port(taken: set[int]) -> int:
        from octo.rollout.serve import free_port

        while (port := free_port()) in taken:  # two servers launched back to back must not share a port
            pass
        taken.add(port)
        return port

    @property
    def healthy_servers(self) -> list[str]:
        """URLs of the servers still in use."""
        with self._lock:
            return [s.url for s in self._servers if s.error is None]

    @property
    def dropped_servers(self) -> dict[str, str]:
        """URL -> why it was dropped."""
        with self._lock:
            return {s.url: s.error for s in self._servers if s.error is not None}

    def _connect(self) -> None:
        def probe(server: _Server) -> None:
            try:
                data = server.client.request("GET", "/v1/models")
                card = (data or {}).get("data") or []
                if not card:
                    raise RequestFailed("GET /v1/models lists no model; is this a vLLM server?", transient=False)
                server.model = card[0].get("id")
                server.max_model_len = card[0].get("max_model_len")
            except RequestFailed as err:
                self._drop(server, err.detail, warn=False)

        list(self._pool.map(probe, self._servers))
        if not self.healthy_servers:
            raise OctoError(f"no vLLM server answered: {self._describe_dropped()}; start one with "
                            f"`octo serve CHECKPOINT` or fix probe.rollout.servers")
        for url, why in self.dropped_servers.items():
            log.warning("vLLM server %s is unreachable (%s); using the %d other(s)", url, why,
                        len(self.healthy_servers))

    def _drop(self, server: _Server, why: str, *, warn: bool = True) -> None:
        with self._lock:
            if server.error is not None:
                return
            server.error = why
            left = sum(s.error is None for s in self._servers)
        if warn and left:
            log.warning("vLLM server %s dropped%s: %s; continuing on %d other(s)", server.url, self._at_step(),
                        why, left)

    def _pick(self, preferred: int, tried: set[int]) -> _Server | None:
        with self._lock:
            count = len(self._servers)
            for k in range(count):
                idx = (preferred + k) % count
                if idx not in tried and self._servers[idx].error is None:
                    return self._servers[idx]
        return None

    def _at_step(self) -> str:
        return "" if self._step is None else f" at step {self._step}"

    def _describe_dropped(self) -> str:
        return "; ".join(f"{url} ({why})" for url, why in self.dropped_servers.items())

    def _all_down(self, what: str) -> OctoError:
        return OctoError(f"{what}{self._at_step()} failed on every vLLM server: {self._describe_dropped()}; "
                         f"check the servers (restart them with `octo serve`) and rerun to resume")

    # -- protocol ---------------------------------------------------------------------------------

    def generate(self, prompts: list[list[int]], *, n: int, max_tokens: int, temperature: float = 1.0,
                 top_p: float = 1.0, seed: int | None = None) -> list[list[Completion]]:
        check_request(prompts, n=n, max_tokens=max_tokens, temperature=temperature, top_p=top_p)
        if self._closed:
            raise RuntimeError("generate() on a closed vllm-server backend")
        if not prompts:
            return []
        limits = [s.max_model_len for s in self._servers if s.error is None and s.max_model_len]
        longest = max(len(p) for p in prompts)
        if limits and longest + max_tokens > min(limits):
            raise OctoError(f"a prompt of {longest} tokens plus max_tokens={max_tokens} exceeds the vLLM servers' "
                            f"max_model_len of {min(limits)}; restart them with a larger --max-model-len "
                            f"(octo serve --max-model-len N) or lower the length limit")
        greedy = temperature == 0
        body = {"n": 1 if greedy else n, "max_tokens": max_tokens, "temperature": float(temperature),
                "top_p": float(top_p), "top_k": 0, "min_p": 0.0, "repetition_penalty": 1.0,
                "presence_penalty": 0.0, "frequency_penalty": 0.0, "logprobs": 0, "echo": False,
                "return_token_ids": True, "return_tokens_as_token_ids": True, "skip_special_tokens": True}
        futures = []
        for i, prompt in enumerate(prompts):
            req = dict(body, prompt=[int(t) for t in prompt])
            if seed is not None:
                req["seed"] = mix_seed(int(seed), i)
            futures.append(self._pool.submit(self._complete, i, req))
        try:
            groups = [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise
        if greedy and n > 1:
            groups = [[Completion(list(c.token_ids), "", list(c.logprobs), c.finish_reason)
                       for c in group for _ in range(n)] for group in groups]
        flat = [c for group in groups for c in group]
        for c, text in zip(flat, self.tokenizer.batch_decode([c.token_ids for c in flat],
                                                             skip_special_tokens=True)):
            c.text = text
        return groups

    def _complete(self, index: int, req: dict) -> list[Completion]:
        tried: set[int] = set()
        while True:
            server = self._pick(index % len(self._servers), tried)
            if server is None:
                raise self._all_down("generation")
            tried.add(self._servers.index(server))
            try:
                data = server.client.request("POST", "/v1/completions", dict(req, model=server.model))
            except RequestFailed as err:
                # a failure of the server (transient after its retries, or an answer that is not
                # JSON) drops it; an HTTP 4xx is a refusal of this request and stops the probe
                if err.transient or err.status is None:
                    self._drop(server, err.detail)
                    continue
                raise OctoError(f"vLLM server {server.url} rejected a completion request{self._at_step()}: "
                                f"{err.detail}") from None
            try:
                return self._parse(server, data, req["n"])
            except _Garbage as err:  # a broken server: drop it, the request goes to a healthy one
                self._drop(server, str(err))

    def _parse(self, server: _Server, data: Any, n: int) -> list[Completion]:
        try:
            choices = sorted(data["choices"], key=lambda c: c["index"])
            out = []
            for ch in choices:
                lp = ch.get("logprobs") or {}
                ids = ch.get("token_ids")
                if ids is None:  # vLLM before `return_token_ids`: tokens read "token_id:123"
                    ids = [int(str(t).rsplit(":", 1)[1]) for t in lp["tokens"]]
                logprobs = [float("nan") if v is None else float(v) for v in lp.get("token_logprobs") or []]
                if len(logprobs) != len(ids):
                    raise ValueError(f"{len(ids)} tokens but {len(logprobs)} logprobs")
                reason = ch.get("finish_reason")
                if reason not in ("stop", "length"):
                    raise _Garbage(f"it ended a completion with finish_reason={reason!r} (see the server's log)")
                token_ids = [int(t) for t in ids]
                if self._vocab is not None and any(not 0 <= t < self._vocab for t in token_ids):
                    raise ValueError(f"token ids outside the vocabulary of {self._vocab}")
                out.append(Completion(token_ids=token_ids, text="", logprobs=logprobs, finish_reason=reason))
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise _Garbage(f"it answered /v1/completions in an unexpected form ({err}); is it a vLLM "
                           f"OpenAI-compatible server?") from None
        if len(out) != n:
            raise _Garbage(f"it returned {len(out)} completions where {n} were asked")
        return out

    def update_weights(self, model: Any, *, step: int | None = None) -> None:
        """Push ``model``'s weights to every healthy server (save, reload, reset the prefix cache)."""
        if self._closed:
            raise RuntimeError("update_weights() on a closed vllm-server backend")
        self._step = step
        t0 = time.perf_counter()
        save_weights(model, self.sync_dir)
        servers = [s for s in self._servers if s.error is None]
        list(self._pool.map(self._sync_one, servers))
        if not self.healthy_servers:
            raise self._all_down("weight sync")
        self.last_sync_s = time.perf_counter() - t0

    def _sync_one(self, server: _Server) -> None:
        try:
            server.client.request("POST", "/collective_rpc",
                                  {"method": "reload_weights", "kwargs": {"weights_path": str(self.sync_dir)}})
            done = server.client.request("POST", "/reset_prefix_cache")
            if isinstance(done, dict) and done.get("success") is False:
                raise RequestFailed("POST /reset_prefix_cache answered success=false", transient=True)
        except RequestFailed as err:
            if err.status == 404:
                raise OctoError(f"vLLM server {server.url} has no weight-sync endpoint ({err.detail}); start it "
                                f"with VLLM_SERVER_DEV_MODE=1 in its environment (octo serve does)") from None
            if err.status in (401, 403):
                raise OctoError(f"vLLM server {server.url} refused the weight sync ({err.detail}); set "
                                f"probe.rollout.api_key_env to the variable holding its API key") from None
            self._drop(server, err.detail)

    def close(self) -> None:
        """Stop the servers this backend started (never one it reused), drop the temporary sync dir."""
        if self._closed:
            return
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
        for handle in self.started:
            handle.stop(timeout_s=30)
        if self._own_sync_dir:
            shutil.rmtree(self.sync_dir, ignore_errors=True)

