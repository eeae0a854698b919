"""Length-grouped passes (octo.probe.passes): the batch cut into passes by completion length, each cut to the columns
its rows use; TRL's real GRPOTrainer trains the same step from them as from one pass."""

from __future__ import annotations

import pytest
import torch

from octo.probe.passes import can_group, length_grouped_passes

PAD = 0


def _batch(prompt_lens, completion_lens, width_p=6, width_c=10):
    """A TRL-style generation batch: prompts left-padded to width_p, completions right-padded to width_c; each row's
    tokens are its row number + 1, so a test can tell rows apart."""
    rows = len(prompt_lens)
    prompt_ids = torch.full((rows, width_p), PAD)
    prompt_mask = torch.zeros((rows, width_p), dtype=torch.long)
    completion_ids = torch.full((rows, width_c), PAD)
    completion_mask = torch.zeros((rows, width_c), dtype=torch.long)
    for r, (p, c) in enumerate(zip(prompt_lens, completion_lens)):
        prompt_ids[r, width_p - p:] = r + 1
        prompt_mask[r, width_p - p:] = 1
        completion_ids[r, :c] = r + 1
        completion_mask[r, :c] = 1
    return {"prompt_ids": prompt_ids, "prompt_mask": prompt_mask, "completion_ids": completion_ids,
            "completion_mask": completion_mask, "advantages": torch.arange(rows, dtype=torch.float) + 1,
            "old_per_token_logps": completion_mask.float() * -(torch.arange(rows)[:, None] + 1),
            "num_items_in_batch": completion_mask.sum()}


def test_passes_are_ordered_by_completion_length_and_cut_to_their_rows():
    batch = _batch([2, 6, 3, 1, 4, 2, 5, 3], [9, 1, 4, 10, 2, 3, 7, 4])
    passes = length_grouped_passes(batch, 4)
    assert len(passes) == 4
    rows = [int(r) for p in passes for r in p["completion_ids"][:, 0]]
    assert rows == [2, 5, 6, 3, 8, 7, 1, 4]   # every row once, by length; a tie keeps its order (rows 3, 8)
    lengths = [p["completion_mask"].sum(1).tolist() for p in passes]
    assert lengths == [[1, 2], [3, 4], [4, 7], [9, 10]]
    for p in passes:
        width = int(p["completion_mask"].sum(1).max())
        for key in ("completion_ids", "completion_mask", "old_per_token_logps"):
            assert p[key].shape[1] == width, key
        # prompts: left padding cut to the pass's longest prompt, no real token dropped
        assert p["prompt_mask"][:, 0].any() and p["prompt_ids"].shape == p["prompt_mask"].shape
        row = p["completion_ids"][:, 0]
        assert torch.equal(p["prompt_mask"].sum(1), torch.tensor([2, 6, 3, 1, 4, 2, 5, 3])[row - 1])
        assert torch.equal(p["advantages"], row.float())           # row-aligned keys follow their rows
        assert torch.equal(p["old_per_token_logps"][:, 0], -row.float())
        assert p["num_items_in_batch"] is batch["num_items_in_batch"]   # a batch-wide scalar passes through


def test_random_passes_keep_the_batch_order_and_are_still_cut():
    batch = _batch([1, 2, 3, 4], [5, 1, 2, 3])
    passes = length_grouped_passes(batch, 2, by_length=False)
    assert [p["completion_ids"][:, 0].tolist() for p in passes] == [[1, 2], [3, 4]]
    assert [p["completion_ids"].shape[1] for p in passes] == [5, 3]
    assert [p["prompt_ids"].shape[1] for p in passes] == [2, 4]


def test_empty_rows_keep_one_column_and_a_bad_split_is_refused():
    batch = _batch([0, 0], [0, 0])
    (one,) = length_grouped_passes(batch, 1)
    assert one["completion_ids"].shape == (2, 1) and one["prompt_ids"].shape == (2, 1)
    with pytest.raises(ValueError, match="3 equal passes"):
        length_grouped_passes(_batch([1, 1], [1, 1]), 3)


def test_only_text_batches_are_grouped():
    batch = _batch([1, 2], [1, 2])
    assert can_group(batch)
    assert not can_group({**batch, "pixel_values": torch.zeros(2, 3)})
    assert not can_group({"prompt_ids": batch["prompt_ids"]})


# --- TRL's GRPOTrainer, one step: one pass vs length-grouped passes ----------------------------------------------

WORDS = [f"w{i}" for i in range(30)]
GROUPS, G = 4, 4


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<pad>", "<eos>", "<unk>"] + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def _rollout(prompts, trainer):
    """Completions of set lengths (1 to 14 tokens, varied within each group), the last one an EOS."""
    tok = trainer.processing_class
    out = {"prompt_ids": [], "completion_ids": [], "logprobs": []}
    for i, prompt in enumerate(prompts):
        ids = tok(prompt, add_special_tokens=False)["input_ids"]
        n = 1 + (7 * i + 3 * len(ids)) % 14
        out["prompt_ids"].append(ids)
        out["completion_ids"].append([3 + (i + j) % 30 for j in range(n - 1)] + [tok.eos_token_id])
        out["logprobs"].append([0.0] * n)
    return out


def _reward(completions, **_):
    return [float(len(c) % 3) for c in completions]


def _model():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=len(WORDS) + 3, hidden_size=32, num_hidden_layers=2,
                                        num_attention_heads=2, num_key_value_heads=2, intermediate_size=64,
                                        max_position_embeddings=64, pad_token_id=0, eos_token_id=1,
                                        attn_implementation="sdpa"))


def _train_one_step(tmp_path, micro, loss_type, seen, *, trl_split=False):
    """One optimizer step of TRL's GRPOTrainer in passes of ``micro`` completions: octo's length-grouped trainer, or
    TRL's own random split (``trl_split``); returns the trained weights and the logged entropy."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from octo.probe.passes import trainer_class

    class Recording(GRPOTrainer if trl_split else trainer_class()):
        def _compute_loss(self, model, inputs):
            seen.append({k: v.clone() for k, v in inputs.items() if torch.is_tensor(v) and v.ndim == 2})
            return super()._compute_loss(model, inputs)

    model = _model()
    # prompts of 1 to 4 words: left padding to cut
    data = Dataset.from_list([{"prompt": " ".join(WORDS[i:i + 1 + i % 4])} for i in range(GROUPS)])
    args = GRPOConfig(output_dir=str(tmp_path / f"{loss_type}-{micro}-{trl_split}"),
                      per_device_train_batch_size=micro, num_generations=G,
                      gradient_accumulation_steps=GROUPS * G // micro, steps_per_generation=GROUPS * G // micro,
                      max_steps=1, learning_rate=1.0, optim="sgd", beta=0.0, loss_type=loss_type,
                      max_completion_length=16, bf16=False, fp16=False, use_cpu=True, logging_steps=1,
                      save_strategy="no", report_to=[], seed=0, disable_tqdm=True, dataloader_num_workers=0)
    trainer = Recording(model=model, reward_funcs=[_reward], args=args, train_dataset=data,
                        processing_class=_tokenizer(), rollout_func=_rollout)
    trainer.train()
    entropy = next(row["entropy"] for row in trainer.state.log_history if "entropy" in row)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, entropy


def _max_diff(a, b):
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.mark.parametrize("loss_type", ["dapo", "bnpo"])
def test_grouped_passes_train_the_step_of_trls_passes(tmp_path, loss_type):
    """dapo: the same step as one pass; bnpo (normalized per pass, so its passes stay TRL's random ones): the same
    step as TRL's own passes. Either way each pass is cut to the columns its rows use, and the logged entropy is the
    one pass's (the same rollouts: TRL's shuffle draws the same random numbers)."""
    one, trl, grouped = [], [], []
    w_one, e_one = _train_one_step(tmp_path, GROUPS * G, loss_type, one)
    w, e = _train_one_step(tmp_path, G, loss_type, grouped)
    assert len(one) == 1 and len(grouped) == GROUPS
    widths = [p["completion_mask"].shape[1] for p in grouped]
    lengths = [p["completion_mask"].sum(1) for p in grouped]
    assert all(w == int(n.max()) for w, n in zip(widths, lengths))   # each pass cut to its longest completion
    assert max(widths) == one[0]["completion_mask"].shape[1] and min(widths) < max(widths)
    assert any(p["prompt_ids"].shape[1] < one[0]["prompt_ids"].shape[1] for p in grouped)
    if loss_type == "bnpo":   # TRL's rows in TRL's passes
        w_base, _ = _train_one_step(tmp_path, G, loss_type, trl, trl_split=True)
        assert [p["completion_mask"].sum(1).tolist() for p in trl] == [n.tolist() for n in lengths]
    else:                     # ordered by length
        w_base = w_one
        assert all(int(a.max()) <= int(b.min()) for a, b in zip(lengths, lengths[1:]))
    moved = _max_diff(w_base, _model().state_dict())
    assert moved > 1e-3                          # the step trained (plain SGD: the weights move by the gradient)
    assert _max_diff(w, w_base) < 1e-4 * moved   # ... the same step, up to float rounding
    assert e == pytest.approx(e_one, rel=1e-5)   # the logged entropy stays the token mean of the whole batch


def test_a_trl_without_the_internals_keeps_its_own_trainer(monkeypatch):
    import trl.trainer.grpo_trainer as grpo_module
    from trl import GRPOTrainer

    from octo.probe.passes import _trainer_class

    assert _trainer_class() is not GRPOTrainer and issubclass(_trainer_class(), GRPOTrainer)
    monkeypatch.delattr(grpo_module, "split_tensor_dict")
    assert _trainer_class() is GRPOTrainer
