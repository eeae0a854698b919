"""LoRA weight sync (a LoRA probe, ``probe.lora``): the weights a vLLM engine reloads are the merged ones.

- ``weights_for_inference`` of a peft model equals peft's own ``merge_and_unload`` state dict, under the plain
  model's names, and leaves the frozen base weights bit-identical (TRL merges in place and unmerges; octo does not
  write to the base at all).
- The ``hf`` backend made with the base model peft injected the adapters into samples the adapted policy.
- Against a REAL vLLM server (marker ``vllm``): after a LoRA training step, the server's greedy completions equal
  the merged model's in HF, and differ from the base model's.
"""

from __future__ import annotations

import copy

import pytest

pytest.importorskip("peft")

from octo.rollout import make_backend  # noqa: E402
from octo.rollout.config import RolloutConfig  # noqa: E402
from octo.rollout.weights import WEIGHTS_FILE, save_weights, weights_for_inference  # noqa: E402
from tests.rollout.toymodel import make_sentences, train  # noqa: E402

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# what the adapter is trained towards: a distribution the toy checkpoint never saw (one fixed sentence shape)
SHIFT = [s.replace("apples", "cards").replace("books", "cards") for s in make_sentences(64, seed=77)]


def _lora(model, rank: int = 4):
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=rank, lora_alpha=8, lora_dropout=0.0,
                                            target_modules=TARGETS))


def _trained_lora(model, tokenizer):
    """A LoRA model after a few real optimizer steps on SHIFT: its adapters are nonzero."""
    peft_model = _lora(model)
    train(peft_model, tokenizer, SHIFT, steps=20, lr=3e-2)
    assert any(float(p.detach().abs().max()) > 0 for n, p in peft_model.named_parameters() if "lora_B" in n)
    return peft_model


def _greedy(model, tokenizer, prompts, max_tokens=20):
    be = make_backend(RolloutConfig(backend="hf"), tokenizer=tokenizer, model=model)
    return [g[0].token_ids for g in be.generate(prompts, n=1, max_tokens=max_tokens, temperature=0)]


def test_merged_weights_equal_peft_merge_and_base_is_untouched(toy_model, toy_tokenizer):
    import torch

    plain_keys = list(toy_model.state_dict())
    peft_model = _trained_lora(toy_model, toy_tokenizer)
    base_before = {n: t.clone() for n, t in peft_model.get_base_model().state_dict().items() if ".lora_" not in n}
    ours = weights_for_inference(peft_model)
    ref = copy.deepcopy(peft_model).merge_and_unload().state_dict()   # the library's merge
    assert list(ours) == plain_keys == list(ref)
    for name in ref:
        torch.testing.assert_close(ours[name], ref[name], rtol=0, atol=1e-6, msg=name)
    # the merge changed every adapted matrix, and only those
    def base_of(name):   # peft keeps an adapted module's own weight under <module>.base_layer.<leaf>
        module, leaf = name.rsplit(".", 1)
        return name if name in base_before else f"{module}.base_layer.{leaf}"

    changed = {n for n in ref if not torch.equal(ours[n], base_before[base_of(n)])}
    assert changed == {n for n in ref if n.split(".")[-2] in TARGETS and n.endswith(".weight")}
    # the base model peft injected the adapters into gives the same merged weights as the PeftModel
    same = weights_for_inference(peft_model.get_base_model())
    assert all(torch.equal(same[n], ours[n]) for n in ours)
    after = peft_model.get_base_model().state_dict()
    assert all(torch.equal(after[n], t) for n, t in base_before.items())   # bit-identical frozen base


def test_saved_sync_file_loads_into_a_plain_model(toy_model, toy_tokenizer, toy_checkpoint, tmp_path, toy_prompts):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    peft_model = _trained_lora(toy_model, toy_tokenizer)
    save_weights(peft_model.get_base_model(), tmp_path)
    plain = AutoModelForCausalLM.from_pretrained(toy_checkpoint).eval()
    plain.load_state_dict(load_file(str(tmp_path / WEIGHTS_FILE)), strict=True)
    # the plain model holding the synced file generates what the adapted model generates
    assert _greedy(plain, toy_tokenizer, toy_prompts) == _greedy(peft_model.get_base_model(), toy_tokenizer,
                                                                 toy_prompts)


def test_hf_backend_on_the_injected_base_model_samples_the_adapted_policy(toy_checkpoint, toy_tokenizer,
                                                                          toy_prompts):
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(toy_checkpoint).eval()
    before = _greedy(base, toy_tokenizer, toy_prompts)
    peft_model = _trained_lora(base, toy_tokenizer)
    merged = copy.deepcopy(peft_model).merge_and_unload().eval()
    adapted = _greedy(base, toy_tokenizer, toy_prompts)   # the same object: peft injected the adapters into it
    assert adapted == _greedy(merged, toy_tokenizer, toy_prompts)
    assert adapted != before


@pytest.mark.vllm
def test_vllm_server_generates_from_the_merged_lora_model(vllm_python, toy_checkpoint, toy_tokenizer, toy_prompts):
    """The server starts from the base checkpoint; the LoRA probe's sync (octo starts the server itself here)
    makes its greedy completions those of the merged model."""
    from transformers import AutoModelForCausalLM

    base_ref = AutoModelForCausalLM.from_pretrained(toy_checkpoint).eval()
    model = AutoModelForCausalLM.from_pretrained(toy_checkpoint).eval()
    peft_model = _lora(model)
    cfg = RolloutConfig(backend="vllm-server", server_python=vllm_python, max_model_len=256, max_concurrency=4)
    # made as the probe makes it: with the base model holding the (still zero) adapters
    with make_backend(cfg, tokenizer=toy_tokenizer, model=model, model_path=str(toy_checkpoint)) as be:
        first = [g[0].token_ids for g in be.generate(toy_prompts, n=1, max_tokens=20, temperature=0)]
        assert first == _greedy(base_ref, toy_tokenizer, toy_prompts)   # B = 0: the adapted model is the base
        train(peft_model, toy_tokenizer, SHIFT, steps=20, lr=3e-2)
        be.update_weights(peft_model.get_base_model(), step=1)
        served = [g[0].token_ids for g in be.generate(toy_prompts, n=1, max_tokens=20, temperature=0)]
    merged = copy.deepcopy(peft_model).merge_and_unload().eval()
    assert served == _greedy(merged, toy_tokenizer, toy_prompts)
    assert served != first
