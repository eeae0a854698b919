"""The ``vllm-server`` backend and ``octo serve`` against a REAL vLLM server (marker ``vllm``).

One server for the whole module, started the way a user starts it: ``octo serve`` in a
subprocess (with the venv from scripts/install-vllm-server.sh). The last test stops it with
SIGTERM and checks that nothing is left behind.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from octo.errors import OctoError
from octo.rollout import make_backend
from octo.rollout.config import RolloutConfig
from octo.rollout.serve import _die_with_parent, free_port
from tests.rollout.fake_peer import closed_port_url
from tests.rollout.test_hf import recomputed_logprobs

pytestmark = pytest.mark.vllm
MAX_MODEL_LEN = 256


def _server_processes(model_dir: Path) -> list[int]:
    """PIDs of vLLM api_server processes serving ``model_dir`` (read from /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"vllm.entrypoints.openai.api_server" in cmd and str(model_dir).encode() in cmd:
            pids.append(int(entry.name))
    return pids


class Served:
    def __init__(self, proc: subprocess.Popen, url: str, log: Path, model_dir: Path, stderr_lines: list[str]):
        self.proc, self.url, self.log, self.model_dir, self.stderr_lines = proc, url, log, model_dir, stderr_lines


@pytest.fixture(scope="module")
def served(vllm_python, toy_checkpoint, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "vllm.log"
    port = free_port()
    cmd = [sys.executable, "-m", "octo.cli", "serve", str(toy_checkpoint), "--port", str(port),
           "--python", vllm_python, "--max-model-len", str(MAX_MODEL_LEN), "--log", str(log)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_die_with_parent)
    lines: queue.Queue = queue.Queue()
    stderr_lines: list[str] = []
    threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stdout], daemon=True).start()
    threading.Thread(target=lambda: [stderr_lines.append(ln) for ln in proc.stderr], daemon=True).start()
    try:
        deadline = time.monotonic() + 420
        while True:
            try:
                url = lines.get(timeout=1).strip()
                break
            except queue.Empty:
                if proc.poll() is not None or time.monotonic() > deadline:
                    time.sleep(0.5)
                    pytest.fail(f"octo serve gave no URL (exit code {proc.poll()}): {''.join(stderr_lines)}")
        yield Served(proc, url, log, Path(toy_checkpoint).resolve(), stderr_lines)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        for pid in _server_processes(Path(toy_checkpoint).resolve()):  # never leave a 3 GB server behind
            os.kill(pid, signal.SIGKILL)


def server_backend(served, model, **cfg):
    cfg.setdefault("servers", [served.url])
    return make_backend(RolloutConfig(backend="vllm-server", **cfg), tokenizer=_tok(served), model=model)


def _tok(served):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(served.model_dir)


def hf_greedy(model, tokenizer, prompts, max_tokens):
    be = make_backend(RolloutConfig(backend="hf"), tokenizer=tokenizer, model=model)
    return be.generate(prompts, n=1, max_tokens=max_tokens, temperature=0)


def test_serve_prints_url_of_a_healthy_server(served):
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", served.url)
    with urllib.request.urlopen(served.url + "/health", timeout=10) as resp:
        assert resp.status == 200
    # stderr is read by its own thread, which may not have reached the line printed just before the URL
    deadline = time.monotonic() + 30
    while not any("healthy at" in ln for ln in served.stderr_lines) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert any("healthy at" in ln and str(served.log) in ln for ln in served.stderr_lines)


def test_greedy_matches_hf(served, toy_model, toy_tokenizer, toy_prompts):
    with server_backend(served, toy_model) as be:
        ours = be.generate(toy_prompts, n=2, max_tokens=24, temperature=0)
    ref = hf_greedy(toy_model, toy_tokenizer, toy_prompts, 24)
    assert sum(c.finish_reason == "stop" for g in ref for c in g) >= 4  # EOS is exercised
    for group, r in zip(ours, ref):
        assert len(group) == 2
        for c in group:
            assert c.token_ids == r[0].token_ids
            assert c.text == r[0].text
            assert c.finish_reason == r[0].finish_reason
            assert c.logprobs == pytest.approx(r[0].logprobs, abs=1e-3)


def test_sampled_logprobs_are_the_temperature_distribution(served, toy_model, toy_tokenizer, toy_prompts):
    eos = toy_tokenizer.eos_token_id
    with server_backend(served, toy_model) as be:
        a = be.generate(toy_prompts, n=4, max_tokens=20, temperature=0.7, seed=3)
        b = be.generate(toy_prompts, n=4, max_tokens=20, temperature=0.7, seed=3)
        short = be.generate(toy_prompts, n=2, max_tokens=3, temperature=1.0, seed=1)
    assert [[c.token_ids for c in g] for g in a] == [[c.token_ids for c in g] for g in b]
    assert any(len({tuple(c.token_ids) for c in g}) > 1 for g in a)
    for prompt, group in zip(toy_prompts, a):
        assert len(group) == 4
        for c in group:
            assert c.logprobs == pytest.approx(recomputed_logprobs(toy_model, prompt, c.token_ids, 0.7), abs=1e-3)
            if c.finish_reason == "stop":
                assert c.token_ids[-1] == eos
            else:
                assert len(c.token_ids) == 20 and eos not in c.token_ids
    for c in (c for g in short for c in g):
        assert len(c.token_ids) <= 3 and (c.finish_reason == "length") == (c.token_ids[-1] != eos)


def test_update_weights_follows_the_trainer(served, toy_model, toy_tokenizer, toy_prompts):
    with server_backend(served, toy_model) as be:
        before = be.generate(toy_prompts, n=1, max_tokens=24, temperature=0)
        # one optimizer step that a GRPO update could take: raise the likelihood of a fixed text
        opt = torch.optim.SGD(toy_model.parameters(), lr=2.0)
        target = torch.tensor([toy_tokenizer(" Jo loses 9 cards.", add_special_tokens=False)["input_ids"]])
        toy_model.train()
        toy_model(input_ids=target, labels=target).loss.backward()
        opt.step()
        toy_model.eval()
        be.update_weights(toy_model, step=1)
        assert be.last_sync_s is not None
        after = be.generate(toy_prompts, n=1, max_tokens=24, temperature=0)
    ref = hf_greedy(toy_model, toy_tokenizer, toy_prompts, 24)
    assert [g[0].token_ids for g in after] == [g[0].token_ids for g in ref]
    assert [g[0].token_ids for g in after] != [g[0].token_ids for g in before]


def test_many_long_seeded_prompts_at_once(served, toy_model, toy_prompts):
    """More prompt tokens than one engine step takes: a CPU server with chunked prefill crashes
    here on seeded requests (vLLM rewinds a CPU generator's offset), so octo serve turns it off."""
    long_prompts = [(p * 40)[:150] for p in toy_prompts] * 4  # 32 prompts x 150 tokens x n=4
    with server_backend(served, toy_model) as be:
        groups = be.generate(long_prompts, n=4, max_tokens=8, temperature=1.0, seed=5)
    assert len(groups) == 32 and all(len(g) == 4 and all(c.token_ids for c in g) for g in groups)
    assert served.proc.poll() is None


def test_continues_when_one_of_two_servers_is_dead(served, toy_model, toy_prompts):
    dead = closed_port_url()
    with server_backend(served, toy_model, servers=[dead, served.url], max_retries=0) as be:
        assert be.healthy_servers == [served.url] and dead in be.dropped_servers
        groups = be.generate(toy_prompts, n=2, max_tokens=8, temperature=1.0, seed=0)
    assert len(groups) == len(toy_prompts) and all(len(g) == 2 for g in groups)


def test_prompt_too_long_for_the_server(served, toy_model):
    with server_backend(served, toy_model) as be, pytest.raises(OctoError, match=f"max_model_len of {MAX_MODEL_LEN}"):
        be.generate([[5] * 250], n=1, max_tokens=10)


def test_sigterm_stops_octo_serve_and_its_server(served, toy_model, toy_prompts):
    """Runs last: SIGTERM to `octo serve` stops the vLLM server; a backend then fails fast naming it."""
    be = server_backend(served, toy_model, max_retries=1, retry_backoff_s=0.1)
    try:
        assert _server_processes(served.model_dir)
        served.proc.send_signal(signal.SIGTERM)
        assert served.proc.wait(timeout=60) == 0
        assert _server_processes(served.model_dir) == []
        t0 = time.monotonic()
        with pytest.raises(OctoError) as err:
            be.generate(toy_prompts, n=1, max_tokens=4, temperature=1.0)
        assert time.monotonic() - t0 < 10
        assert served.url in str(err.value) and "refused" in str(err.value)
    finally:
        be.close()
    assert any("stopped the vLLM server" in ln for ln in served.stderr_lines)
