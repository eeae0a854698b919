"""The embedded ``hf`` backend on the toy checkpoint."""

from __future__ import annotations

import contextlib
import math

import pytest
import torch

from octo.errors import OctoError
from octo.rollout import Completion, RolloutBackend, make_backend
from octo.rollout.config import RolloutConfig
from octo.rollout.hf import top_p_filter


def hf(model, tokenizer, **cfg):
    return make_backend(RolloutConfig(backend="hf", **cfg), tokenizer=tokenizer, model=model)


def recomputed_logprobs(model, prompt, completion, temperature):
    """Log-probs of ``completion`` after ``prompt`` from one full forward, as TRL recomputes them."""
    with torch.no_grad():
        logits = model(torch.tensor([prompt + completion])).logits[0, len(prompt) - 1:-1].float()
    if temperature > 0:
        logits = logits / temperature
    return logits.log_softmax(-1).gather(1, torch.tensor(completion)[:, None]).squeeze(1).tolist()


def test_shapes_and_counts(toy_model, toy_tokenizer, toy_prompts):
    backend = hf(toy_model, toy_tokenizer)
    assert isinstance(backend, RolloutBackend) and backend.name == "hf"
    groups = backend.generate(toy_prompts[:3], n=4, max_tokens=12, temperature=1.0, seed=0)
    assert len(groups) == 3 and all(len(g) == 4 for g in groups)
    for group in groups:
        for c in group:
            assert isinstance(c, Completion)
            assert 1 <= len(c.token_ids) <= 12
            assert len(c.logprobs) == len(c.token_ids)
            assert all(lp <= 0 and math.isfinite(lp) for lp in c.logprobs)
            assert c.finish_reason in ("stop", "length")
            assert c.text == toy_tokenizer.decode(c.token_ids, skip_special_tokens=True)
    assert backend.generate([], n=2, max_tokens=4) == []


def test_max_tokens_gives_length(toy_model, toy_tokenizer, toy_prompts):
    groups = hf(toy_model, toy_tokenizer).generate(toy_prompts, n=2, max_tokens=3, temperature=1.0, seed=1)
    eos = toy_tokenizer.eos_token_id
    for c in (c for g in groups for c in g):
        assert len(c.token_ids) <= 3
        if eos in c.token_ids:
            assert c.finish_reason == "stop" and c.token_ids[-1] == eos
        else:
            assert len(c.token_ids) == 3 and c.finish_reason == "length"
    assert sum(c.finish_reason == "length" for g in groups for c in g) >= 12  # sentences need > 3 tokens


def test_eos_stops_and_is_kept(toy_model, toy_tokenizer, toy_prompts):
    eos = toy_tokenizer.eos_token_id
    groups = hf(toy_model, toy_tokenizer).generate(toy_prompts, n=4, max_tokens=40, temperature=1.0, seed=2)
    flat = [c for g in groups for c in g]
    stopped = [c for c in flat if c.finish_reason == "stop"]
    assert len(stopped) >= len(flat) // 2  # the toy model ends its sentences
    for c in stopped:
        assert c.token_ids[-1] == eos and eos not in c.token_ids[:-1]
        assert "</s>" not in c.text
    for c in flat:
        if c.finish_reason == "length":
            assert len(c.token_ids) == 40 and eos not in c.token_ids


def test_greedy_padded_batch_equals_one_by_one(toy_model, toy_tokenizer, toy_prompts):
    assert len({len(p) for p in toy_prompts}) > 1  # the batch really is padded
    backend = hf(toy_model, toy_tokenizer)
    batch = backend.generate(toy_prompts, n=1, max_tokens=24, temperature=0)
    for prompt, group in zip(toy_prompts, batch):
        alone = backend.generate([prompt], n=1, max_tokens=24, temperature=0)[0][0]
        assert group[0].token_ids == alone.token_ids
        assert group[0].logprobs == pytest.approx(alone.logprobs, abs=1e-4)


@contextlib.contextmanager
def forward_batch_sizes(model):
    """The batch size of every forward call of ``model`` inside the block, in order."""
    sizes: list[int] = []
    hook = model.register_forward_pre_hook(lambda m, a, kw: sizes.append(kw["input_ids"].shape[0]), with_kwargs=True)
    try:
        yield sizes
    finally:
        hook.remove()


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_finished_rows_leave_the_forward_batch_and_the_samples_stay_the_same(toy_model, toy_tokenizer, toy_prompts,
                                                                               monkeypatch, temperature):
    """Rows that ended at EOS are dropped from the forward batch once a quarter of the chunk has, and every row's
    tokens and log-probs are those of the uncompacted batch (the sampler's stream is unchanged)."""
    from octo.rollout.hf import HFBackend

    with forward_batch_sizes(toy_model) as shrunk:   # the model's own forward at every step: its batch is seen
        compacted = hf(toy_model, toy_tokenizer, decoder="transformers").generate(
            toy_prompts, n=4, max_tokens=40, temperature=temperature, seed=5)
    monkeypatch.setattr(HFBackend, "_compact", staticmethod(lambda rows, stopped, mask, positions, step:
                                                            (rows, mask, positions)))
    with forward_batch_sizes(toy_model) as sizes:
        whole = hf(toy_model, toy_tokenizer, decoder="transformers").generate(
            toy_prompts, n=4, max_tokens=40, temperature=temperature, seed=5)
    n = len(toy_prompts) * 4
    lengths = sorted(len(c.token_ids) for g in whole for c in g)
    assert lengths[n // 4] < lengths[-1]   # a quarter of the rows end before the longest: there are rows to drop
    assert shrunk[0] == n and min(shrunk) < n * 0.75 and set(sizes) == {n}
    assert len(shrunk) == len(sizes)       # as many decoding steps
    for a, b in zip((c for g in compacted for c in g), (c for g in whole for c in g)):
        assert a.token_ids == b.token_ids and a.finish_reason == b.finish_reason
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)


def test_a_cache_whose_layers_cannot_drop_rows_decodes_whole_chunks(toy_model, toy_tokenizer, toy_prompts,
                                                                     monkeypatch):
    """A static or linear-attention cache layer has no ``batch_select_indices``: the chunk is decoded whole, with
    the same tokens, instead of failing mid-generation."""
    from transformers.cache_utils import DynamicCache, DynamicLayer

    from octo.rollout.hf import selectable

    assert selectable(DynamicCache(config=toy_model.config)) and not selectable(None) and not selectable(object())
    before = hf(toy_model, toy_tokenizer).generate(toy_prompts, n=4, max_tokens=40, temperature=1.0, seed=5)
    monkeypatch.delattr(DynamicLayer, "batch_select_indices")
    with forward_batch_sizes(toy_model) as sizes:
        after = hf(toy_model, toy_tokenizer, decoder="transformers").generate(
            toy_prompts, n=4, max_tokens=40, temperature=1.0, seed=5)
    assert set(sizes) == {len(toy_prompts) * 4}
    assert [c.token_ids for g in after for c in g] == [c.token_ids for g in before for c in g]


def _flat(groups):
    return [(c.token_ids, c.logprobs, c.finish_reason) for g in groups for c in g]


def _gqa_model(tokenizer):
    """A random Llama with grouped-query attention (4 query heads on 2 key/value heads)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(3)
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=None)).eval()


@pytest.mark.parametrize("gqa", [False, True])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_the_llama_step_gives_the_model_forwards_tokens_and_logprobs_bit_for_bit(toy_model, toy_tokenizer,
                                                                                  toy_prompts, temperature, gqa):
    """rollout.decoder auto (octo's Llama step, the KV cache in buffers) and transformers (the model's forward at
    every step) give the same tokens and exactly the same log-probs, padded prompts, dropped rows and grouped-query
    attention included; auto calls the model's forward only for each chunk's prefill and first step (the check)."""
    from octo.rollout.llama_decode import unsupported

    model = _gqa_model(toy_tokenizer) if gqa else toy_model
    assert unsupported(model) is None
    kw = dict(n=4, max_tokens=40, temperature=temperature, seed=7)
    with forward_batch_sizes(model) as calls:
        fused = hf(model, toy_tokenizer, batch_size=16).generate(toy_prompts, **kw)
    with forward_batch_sizes(model) as every:
        plain = hf(model, toy_tokenizer, batch_size=16, decoder="transformers").generate(toy_prompts, **kw)
    chunks = len(toy_prompts) * 4 // 16
    assert len(calls) == 2 * chunks < len(every) - chunks   # more than two steps a chunk
    assert _flat(fused) == _flat(plain)
    if not gqa:   # the trained toy model ends its answers at different lengths: rows were dropped along the way
        lengths = sorted(len(c.token_ids) for g in fused for c in g)
        assert lengths[len(lengths) // 4] < lengths[-1] and "stop" in {c.finish_reason for g in fused for c in g}


def test_rows_dropped_before_the_llama_steps_first_call_leave_the_checked_cache_too(toy_model, toy_tokenizer,
                                                                                      toy_prompts):
    """Rows that end at their first token are dropped before the first decoding step, which is the step checked
    against the model's forward: both caches lose them, and the step still matches bit for bit."""
    from octo.rollout.hf import TransformersStep
    from octo.rollout.llama_decode import LlamaDecoder

    width = max(len(p) for p in toy_prompts)
    ids = torch.tensor([[0] * (width - len(p)) + p for p in toy_prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in toy_prompts])
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    keep = torch.tensor([0, 2, 3, 5])

    def prefill():
        out = toy_model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
        return out, out.logits[:, -1].argmax(-1)

    with torch.inference_mode():
        out, tok = prefill()
        check = TransformersStep(toy_model, out)   # as the backend makes it: the decoder copies the same cache
        step = LlamaDecoder(toy_model, check.cache_obj, width + 8, check=check)
        step.select(keep)
        args = (tok[keep, None], torch.cat([mask[keep], torch.ones(len(keep), 1, dtype=mask.dtype)], 1),
                positions[keep, -1:] + 1)
        got = step(*args)
        out, _ = prefill()
        ref = TransformersStep(toy_model, out)
        ref.select(keep)
        assert step.verified is True and torch.equal(got, ref(*args))


def test_a_model_the_llama_step_cannot_run_decodes_with_its_own_forward(toy_checkpoint, toy_tokenizer, toy_prompts):
    """Eager attention, rotary scaling, a LoRA adapter or another architecture: the model's forward at every step,
    and unsupported() says why."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM

    from octo.rollout.llama_decode import unsupported

    eager = AutoModelForCausalLM.from_pretrained(toy_checkpoint, attn_implementation="eager").eval()
    assert "not sdpa" in unsupported(eager)
    lora = AutoModelForCausalLM.from_pretrained(toy_checkpoint).eval()
    get_peft_model(lora, LoraConfig(r=2, target_modules=["q_proj"]))   # injects its layers into the model itself
    assert "torch.nn.Linear" in unsupported(lora)
    scaled = AutoModelForCausalLM.from_pretrained(toy_checkpoint).eval()
    scaled.config.rope_parameters = {**scaled.config.rope_parameters, "rope_type": "linear", "factor": 2.0}
    assert "rotary" in unsupported(scaled)
    qwen = Qwen2ForCausalLM(Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=2))
    assert "not a LlamaForCausalLM" in unsupported(qwen)
    with forward_batch_sizes(eager) as calls:
        hf(eager, toy_tokenizer, batch_size=64).generate(toy_prompts[:2], n=1, max_tokens=12, temperature=0)
    assert len(calls) > 2


def test_a_step_that_differs_from_the_model_forward_hands_the_chunk_back(toy_model, toy_tokenizer, toy_prompts,
                                                                         monkeypatch):
    """If octo's step is off by one bit at a chunk's first step, the chunk (and the backend's later chunks) decode
    with the model's forward: the same completions as decoder transformers, and one line that says so."""
    from octo import progress
    from octo.rollout.llama_decode import LlamaDecoder

    original = LlamaDecoder._step
    monkeypatch.setattr(LlamaDecoder, "_step", lambda self, *a: original(self, *a) * (1 + 1e-6))
    said = []
    monkeypatch.setattr(progress, "info", lambda msg, *a, **k: said.append(msg))
    backend = hf(toy_model, toy_tokenizer, batch_size=16)
    kw = dict(n=4, max_tokens=30, temperature=1.0, seed=3)
    got = backend.generate(toy_prompts, **kw)
    assert _flat(got) == _flat(hf(toy_model, toy_tokenizer, batch_size=16, decoder="transformers").generate(
        toy_prompts, **kw))
    assert len([m for m in said if "bit for bit" in m]) == 1 and backend._fused is False


def test_greedy_n_copies_and_small_chunks(toy_model, toy_tokenizer, toy_prompts):
    whole = hf(toy_model, toy_tokenizer).generate(toy_prompts, n=3, max_tokens=16, temperature=0)
    chunked = hf(toy_model, toy_tokenizer, batch_size=2).generate(toy_prompts, n=3, max_tokens=16, temperature=0)
    for g1, g2 in zip(whole, chunked):
        assert len({tuple(c.token_ids) for c in g1}) == 1
        assert [c.token_ids for c in g1] == [c.token_ids for c in g2]


def test_greedy_matches_transformers_generate(toy_model, toy_tokenizer, toy_prompts):
    """The hand-written loop decodes exactly what ``model.generate`` decodes greedily."""
    ours = hf(toy_model, toy_tokenizer).generate(toy_prompts, n=1, max_tokens=20, temperature=0)
    eos = toy_tokenizer.eos_token_id
    for prompt, group in zip(toy_prompts, ours):
        out = toy_model.generate(torch.tensor([prompt]), max_new_tokens=20, do_sample=False, eos_token_id=eos,
                                 pad_token_id=toy_tokenizer.pad_token_id)
        assert group[0].token_ids == out[0, len(prompt):].tolist()


def test_seed_determinism(toy_model, toy_tokenizer, toy_prompts):
    backend = hf(toy_model, toy_tokenizer)
    a = backend.generate(toy_prompts, n=4, max_tokens=16, temperature=1.0, seed=7)
    b = backend.generate(toy_prompts, n=4, max_tokens=16, temperature=1.0, seed=7)
    c = backend.generate(toy_prompts, n=4, max_tokens=16, temperature=1.0, seed=8)
    ids = lambda groups: [[x.token_ids for x in g] for g in groups]  # noqa: E731
    assert ids(a) == ids(b)
    assert [[x.logprobs for x in g] for g in a] == [[x.logprobs for x in g] for g in b]
    assert ids(a) != ids(c)
    # the n samples of one prompt differ from each other (not n copies of one draw)
    assert any(len({tuple(x.token_ids) for x in g}) > 1 for g in a)


def test_global_rng_untouched(toy_model, toy_tokenizer, toy_prompts):
    torch.manual_seed(123)
    state = torch.get_rng_state()
    hf(toy_model, toy_tokenizer).generate(toy_prompts, n=2, max_tokens=8, temperature=1.0, seed=0)
    hf(toy_model, toy_tokenizer).generate(toy_prompts, n=2, max_tokens=8, temperature=1.0)  # seed=None too
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("temperature", [1.0, 0.7, 0])
def test_logprobs_equal_recomputation(toy_model, toy_tokenizer, toy_prompts, temperature):
    groups = hf(toy_model, toy_tokenizer).generate(toy_prompts[:4], n=2, max_tokens=16,
                                                   temperature=temperature, seed=3)
    for prompt, group in zip(toy_prompts, groups):
        for c in group:
            ref = recomputed_logprobs(toy_model, prompt, c.token_ids, temperature)
            assert c.logprobs == pytest.approx(ref, abs=1e-4)


def test_top_p_tiny_is_greedy(toy_model, toy_tokenizer, toy_prompts):
    backend = hf(toy_model, toy_tokenizer)
    greedy = backend.generate(toy_prompts, n=1, max_tokens=16, temperature=0)
    nucleus = backend.generate(toy_prompts, n=2, max_tokens=16, temperature=1.0, top_p=1e-6, seed=0)
    for g, s in zip(greedy, nucleus):
        assert all(c.token_ids == g[0].token_ids for c in s)
        assert all(lp == pytest.approx(0.0, abs=1e-6) for c in s for lp in c.logprobs)  # one token left


def test_top_p_filter_keeps_smallest_set_reaching_p():
    logits = torch.log(torch.tensor([[0.5, 0.2, 0.2, 0.1]]))
    kept = lambda p: torch.isfinite(top_p_filter(logits, p))[0].tolist()  # noqa: E731
    assert kept(0.5) == [True, False, False, False]
    assert kept(0.6)[0] and sum(kept(0.6)) == 2  # 0.5 + one of the tied 0.2s reaches 0.6
    assert kept(0.75) == [True, True, True, False]
    assert kept(0.95) == [True, True, True, True]
    assert kept(1e-9) == [True, False, False, False]


def test_training_mode_restored_and_same_model_update_is_noop(toy_model, toy_tokenizer, toy_prompts):
    backend = hf(toy_model, toy_tokenizer)
    toy_model.train()
    before = {k: v.clone() for k, v in toy_model.state_dict().items()}
    backend.generate(toy_prompts[:2], n=1, max_tokens=4, temperature=1.0, seed=0)
    assert toy_model.training
    backend.update_weights(toy_model, step=1)
    assert backend.model is toy_model
    assert all(torch.equal(before[k], v) for k, v in toy_model.state_dict().items())


def test_live_model_changes_are_seen(toy_model, toy_tokenizer, toy_prompts):
    """The backend generates with the live object: an optimizer step shows up without a copy."""
    backend = hf(toy_model, toy_tokenizer)
    before = backend.generate(toy_prompts, n=1, max_tokens=16, temperature=0)
    with torch.no_grad():
        toy_model.lm_head.weight.add_(torch.randn_like(toy_model.lm_head.weight), alpha=2.0)
    backend.update_weights(toy_model, step=1)
    after = backend.generate(toy_prompts, n=1, max_tokens=16, temperature=0)
    assert [g[0].token_ids for g in before] != [g[0].token_ids for g in after]


def test_update_weights_from_another_model_copies(toy_checkpoint, toy_tokenizer, toy_prompts):
    from transformers import AutoModelForCausalLM

    backend = make_backend(RolloutConfig(backend="hf"), tokenizer=toy_tokenizer, model_path=str(toy_checkpoint))
    trainer_model = AutoModelForCausalLM.from_pretrained(toy_checkpoint)
    with torch.no_grad():
        for p in trainer_model.parameters():
            p.add_(torch.randn_like(p), alpha=0.2)
    backend.update_weights(trainer_model, step=3)
    assert backend.model is not trainer_model
    ours = backend.generate(toy_prompts, n=1, max_tokens=16, temperature=0)
    theirs = hf(trainer_model, toy_tokenizer).generate(toy_prompts, n=1, max_tokens=16, temperature=0)
    assert [g[0].token_ids for g in ours] == [g[0].token_ids for g in theirs]


def test_bad_arguments(toy_model, toy_tokenizer, tmp_path):
    backend = hf(toy_model, toy_tokenizer)
    with pytest.raises(ValueError, match="max_tokens"):
        backend.generate([[5]], n=1, max_tokens=0)
    with pytest.raises(ValueError, match="empty"):
        backend.generate([[5], []], n=1, max_tokens=2)
    with pytest.raises(ValueError, match="top_p"):
        backend.generate([[5]], n=1, max_tokens=2, top_p=0)
    with pytest.raises(OctoError, match="no config.json"):
        make_backend(RolloutConfig(backend="hf"), tokenizer=toy_tokenizer, model_path=str(tmp_path))
    with pytest.raises(OctoError, match="needs a model"):
        make_backend(RolloutConfig(backend="hf"), tokenizer=toy_tokenizer)


@pytest.mark.gpu
def test_on_cuda_greedy_matches_cpu_and_logprobs_match_a_forward(toy_checkpoint, toy_tokenizer, toy_prompts):
    """The backend generates on the device of the model it is given (the probe's model on a GPU)."""
    from transformers import AutoModelForCausalLM

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU on this machine")
    cpu = AutoModelForCausalLM.from_pretrained(toy_checkpoint).eval()
    gpu = AutoModelForCausalLM.from_pretrained(toy_checkpoint).eval().cuda()
    want = hf(cpu, toy_tokenizer).generate(toy_prompts, n=1, max_tokens=16, temperature=0)
    got = hf(gpu, toy_tokenizer).generate(toy_prompts, n=1, max_tokens=16, temperature=0)
    assert [g[0].token_ids for g in got] == [w[0].token_ids for w in want]
    sampled = hf(gpu, toy_tokenizer).generate(toy_prompts[:2], n=2, max_tokens=12, temperature=0.8, seed=3)
    for prompt, group in zip(toy_prompts, sampled):
        for c in group:
            ref = recomputed_logprobs(cpu, prompt, c.token_ids, 0.8)
            assert max(abs(a - b) for a, b in zip(c.logprobs, ref)) < 1e-3
