"""Transport logic of the ``vllm-server`` backend against FAKE HTTP peers (tests/rollout/fake_peer.py):
spreading, retries, timeouts, failover, API key, weight-sync calls. The real vLLM protocol is
tested in test_vllm_server.py."""

from __future__ import annotations

import logging
import time

import pytest
import torch

from octo.errors import OctoError
from octo.rollout import make_backend
from octo.rollout.config import RolloutConfig
from tests.rollout.fake_peer import FakePeer, closed_port_url, expected_ids


class Tok:
    """Decodes token ids as text (enough for the fake peers' ids)."""

    def batch_decode(self, seqs, skip_special_tokens=True):
        return [" ".join(map(str, s)) for s in seqs]


@pytest.fixture
def peers():
    made = []

    def make(k=1, **kw):
        new = [FakePeer(**kw) for _ in range(k)]
        made.extend(new)
        return new

    yield make
    for p in made:
        p.close()


def backend(urls, model=None, **cfg):
    cfg.setdefault("retry_backoff_s", 0.01)
    return make_backend(RolloutConfig(backend="vllm-server", servers=list(urls), **cfg), tokenizer=Tok(),
                        model=model)


PROMPTS = [[3, 4, 5 + i] for i in range(8)]


def test_spreads_requests_and_keeps_prompt_order(peers):
    a, b = peers(2)
    with backend([a.url, b.url]) as be:
        groups = be.generate(PROMPTS, n=3, max_tokens=5, temperature=1.0, seed=11)
    assert len(a.paths("/v1/completions")) == 4 and len(b.paths("/v1/completions")) == 4
    for prompt, group in zip(PROMPTS, groups):
        assert [c.token_ids for c in group] == [expected_ids(prompt, j, 5) for j in range(3)]
        assert all(c.logprobs == [-0.5] * 5 and c.finish_reason == "length" for c in group)
        assert group[0].text == " ".join(map(str, group[0].token_ids))


def test_request_body(peers):
    (a,) = peers(1)
    with backend([a.url]) as be:
        be.generate(PROMPTS[:3], n=4, max_tokens=7, temperature=0.7, top_p=0.9, seed=5)
        sent = [r["body"] for r in a.paths("/v1/completions")]
        assert sorted(tuple(b["prompt"]) for b in sent) == sorted(tuple(p) for p in PROMPTS[:3])
        for body in sent:
            assert body["model"] == "fake-model"
            assert (body["n"], body["max_tokens"], body["temperature"], body["top_p"]) == (4, 7, 0.7, 0.9)
            assert body["top_k"] == 0 and body["min_p"] == 0 and body["repetition_penalty"] == 1
            assert body["logprobs"] == 0 and body["return_token_ids"] is True
        assert len({b["seed"] for b in sent}) == 3  # one seed per prompt
        first = {tuple(b["prompt"]): b["seed"] for b in sent}
        be.generate(PROMPTS[:3], n=4, max_tokens=7, temperature=0.7, top_p=0.9, seed=5)
        again = {tuple(r["body"]["prompt"]): r["body"]["seed"] for r in a.paths("/v1/completions")[3:]}
        assert again == first


def test_greedy_asks_one_and_repeats(peers):
    (a,) = peers(1)
    with backend([a.url]) as be:
        groups = be.generate(PROMPTS[:2], n=3, max_tokens=4, temperature=0)
    assert all(r["body"]["n"] == 1 and r["body"]["temperature"] == 0 for r in a.paths("/v1/completions"))
    for prompt, group in zip(PROMPTS, groups):
        assert [c.token_ids for c in group] == [expected_ids(prompt, 0, 4)] * 3
        assert group[0] is not group[1]


def test_transient_failures_are_retried(peers):
    (a,) = peers(1)
    a.fail_first = 2
    with backend([a.url], max_retries=2) as be:
        groups = be.generate(PROMPTS[:1], n=1, max_tokens=3, temperature=1.0, seed=0)
        assert be.healthy_servers == [a.url]
    assert groups[0][0].token_ids == expected_ids(PROMPTS[0], 0, 3)
    assert len(a.paths("/v1/completions")) == 3


def test_failing_server_is_dropped_and_others_continue(peers, caplog):
    bad, good = peers(2)
    bad.fail_status = 503
    with caplog.at_level(logging.WARNING, logger="octo.rollout"), backend([bad.url, good.url], max_retries=1) as be:
        groups = be.generate(PROMPTS, n=2, max_tokens=3, temperature=1.0, seed=0)
        assert be.healthy_servers == [good.url]
        assert "HTTP 503" in be.dropped_servers[bad.url]
        later = be.generate(PROMPTS, n=1, max_tokens=3, temperature=1.0, seed=1)
    assert [[c.token_ids for c in g] for g in groups] == [[expected_ids(p, j, 3) for j in range(2)] for p in PROMPTS]
    assert len(later) == len(PROMPTS)
    # the prompts routed to the bad server were tried there twice at most, then never again;
    # the good server answered every prompt of both calls exactly once
    assert 2 <= len(bad.paths("/v1/completions")) <= 2 * 4
    assert len(good.paths("/v1/completions")) == 2 * len(PROMPTS)
    assert bad.url in caplog.text and "dropped" in caplog.text


def test_unreachable_server_at_start_is_skipped(peers, caplog):
    (good,) = peers(1)
    dead = closed_port_url()
    with caplog.at_level(logging.WARNING, logger="octo.rollout"), backend([dead, good.url], max_retries=0) as be:
        assert be.healthy_servers == [good.url]
        assert "refused" in be.dropped_servers[dead]
        assert len(be.generate(PROMPTS, n=1, max_tokens=2, temperature=1.0)) == len(PROMPTS)
    assert dead in caplog.text


def test_all_servers_dead_names_them(peers):
    dead1, dead2 = closed_port_url(), closed_port_url()
    t0 = time.monotonic()
    with pytest.raises(OctoError) as err:
        backend([dead1, dead2], max_retries=1, retry_backoff_s=0.05)
    assert time.monotonic() - t0 < 5
    msg = str(err.value)
    assert dead1 in msg and dead2 in msg and "refused" in msg and "octo serve" in msg


def test_server_dying_mid_run_names_server_and_step(peers):
    (a,) = peers(1)
    model = torch.nn.Linear(3, 2)
    be = backend([a.url], model=model, max_retries=1)
    try:
        be.update_weights(model, step=7)
        a.fail_status = 502
        with pytest.raises(OctoError) as err:
            be.generate(PROMPTS[:2], n=1, max_tokens=2, temperature=1.0)
        assert a.url in str(err.value) and "step 7" in str(err.value) and "HTTP 502" in str(err.value)
    finally:
        be.close()


def test_hanging_server_times_out(peers):
    (a,) = peers(1)
    with backend([a.url], request_timeout_s=0.5, max_retries=1, retry_backoff_s=0.05) as be:
        a.hang_s = 30
        t0 = time.monotonic()
        with pytest.raises(OctoError) as err:
            be.generate(PROMPTS[:1], n=1, max_tokens=2, temperature=1.0)
        elapsed = time.monotonic() - t0
    assert elapsed < 3  # two tries of 0.5 s plus backoff, not 30 s
    assert a.url in str(err.value) and "within 0.5 s" in str(err.value)


@pytest.mark.parametrize("garbage", ["not-json", "no-choices", "bad-ids", "abort"])
def test_server_answering_garbage_is_dropped_and_others_continue(peers, garbage):
    bad, good = peers(2)
    bad.garbage = garbage
    model = torch.nn.Linear(3, 2)
    model.config = type("Cfg", (), {"vocab_size": 100})()
    with backend([bad.url, good.url], model=model, sync_on_start=False) as be:
        groups = be.generate(PROMPTS, n=2, max_tokens=3, temperature=1.0, seed=0)
        assert be.healthy_servers == [good.url] and bad.url in be.dropped_servers
    assert [[c.token_ids for c in g] for g in groups] == [[expected_ids(p, j, 3) for j in range(2)] for p in PROMPTS]


@pytest.mark.parametrize("garbage", ["not-json", "bad-ids"])
def test_only_server_answering_garbage_stops_the_probe_naming_it(peers, garbage):
    (bad,) = peers(1)
    bad.garbage = garbage
    model = torch.nn.Linear(3, 2)
    model.config = type("Cfg", (), {"vocab_size": 100})()
    with backend([bad.url], model=model, sync_on_start=False) as be:
        be._step = 4
        with pytest.raises(OctoError) as err:
            be.generate(PROMPTS[:2], n=1, max_tokens=2, temperature=1.0)
    msg = str(err.value)
    assert bad.url in msg and "step 4" in msg and ("not JSON" in msg or "vocabulary" in msg)


def test_client_error_is_not_retried(peers):
    (a,) = peers(1)
    a.fail_status = 400
    with backend([a.url], max_retries=3) as be:
        with pytest.raises(OctoError, match="rejected a completion request.*fake failure"):
            be.generate(PROMPTS[:1], n=1, max_tokens=2, temperature=1.0)
        assert be.healthy_servers == [a.url]  # the server is fine; the request was wrong
    assert len(a.paths("/v1/completions")) == 1


def test_prompt_longer_than_max_model_len(peers):
    (a,) = peers(1, max_model_len=10)
    with backend([a.url]) as be, pytest.raises(OctoError, match="max_model_len of 10"):
        be.generate([[1] * 6], n=1, max_tokens=5)
    assert a.paths("/v1/completions") == []


def test_api_key_is_sent(peers, monkeypatch):
    (a,) = peers(1)
    monkeypatch.setenv("OCTO_TEST_KEY", "s3cret")
    with backend([a.url], api_key_env="OCTO_TEST_KEY") as be:
        be.generate(PROMPTS[:1], n=1, max_tokens=2, temperature=1.0)
    assert a.requests and all(r["headers"].get("Authorization") == "Bearer s3cret" for r in a.requests)
    monkeypatch.delenv("OCTO_TEST_KEY")
    with pytest.raises(OctoError, match="OCTO_TEST_KEY"):
        backend([a.url], api_key_env="OCTO_TEST_KEY")


def test_update_weights_saves_then_reloads_then_resets(peers):
    from safetensors.torch import load_file

    a, b = peers(2)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    be = backend([a.url, b.url], model=model)  # sync_on_start pushes once
    sync_dir = be.sync_dir
    try:
        with torch.no_grad():
            model[0].weight.fill_(0.25)
        be.update_weights(model, step=4)
        for peer in (a, b):
            posts = [r for r in peer.requests if r["method"] == "POST"]
            assert [r["path"] for r in posts] == ["/collective_rpc", "/reset_prefix_cache"] * 2
            rpc = posts[2]["body"]
            assert rpc == {"method": "reload_weights", "kwargs": {"weights_path": str(sync_dir)}}
        saved = load_file(str(sync_dir / "model.safetensors"))
        assert set(saved) == set(model.state_dict())
        assert torch.equal(saved["0.weight"], torch.full((3, 4), 0.25))
        assert be.last_sync_s is not None and be.last_sync_s > 0
    finally:
        be.close()
    assert not sync_dir.exists()


def test_sync_without_dev_mode_says_so(peers):
    (a,) = peers(1)
    a.rpc_status = 404
    with pytest.raises(OctoError, match="VLLM_SERVER_DEV_MODE=1"):
        backend([a.url], model=torch.nn.Linear(2, 2))


def test_sync_failure_on_every_server_names_step(peers):
    a, b = peers(2)
    with backend([a.url, b.url], request_timeout_s=0.3, max_retries=0) as be:
        a.hang_s = b.hang_s = 30
        with pytest.raises(OctoError) as err:
            be.update_weights(torch.nn.Linear(2, 2), step=12)
    msg = str(err.value)
    assert "weight sync at step 12" in msg and a.url in msg and b.url in msg


def test_sync_dir_is_kept_when_given(peers, tmp_path):
    (a,) = peers(1)
    be = backend([a.url], model=torch.nn.Linear(2, 2), sync_dir=str(tmp_path / "w"))
    be.close()
    assert (tmp_path / "w" / "model.safetensors").is_file()


def test_tied_weights_saved_under_both_names(tmp_path):
    from safetensors.torch import load_file

    from octo.rollout.weights import save_weights

    class Tied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(5, 3)
            self.head = torch.nn.Linear(3, 5, bias=False)
            self.head.weight = self.embed.weight

    model = Tied()
    path = save_weights(model, tmp_path)
    saved = load_file(str(path))
    assert set(saved) == {"embed.weight", "head.weight"}
    assert torch.equal(saved["embed.weight"], saved["head.weight"])
    assert model.head.weight is model.embed.weight  # the model itself is untouched
