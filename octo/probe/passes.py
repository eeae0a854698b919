"""Length-grouped passes: an optimizer step's completions trained in passes of similar length, each cut to its own
longest completion.

TRL pads every completion of a generation batch to the batch's longest and splits the batch into
``steps_per_generation`` passes at random, so each pass's forward and backward runs over the padding of the
longest completion of all. With ``probe.micro_batch_size`` set, :class:`LengthGroupedGRPOTrainer` orders the batch by
completion length before the split (as HF Trainer's ``group_by_length`` does for supervised batches) and cuts each
pass's columns to what its rows use: its longest completion, and its longest prompt (prompts are left-padded).

The step is the same, up to float rounding:

- padding is masked out of the loss, and rotary attention (Llama, Qwen) depends on relative positions only, so
  cutting columns changes no term of the loss (TRL passes no position ids: a model with absolute position embeddings
  would see its prompts start nearer position 0, where generation put them);
- the ``dapo``, ``grpo`` and ``dr_grpo`` losses are sums of per-token or per-sequence terms over a normalizer that
  does not depend on how rows are grouped, so the accumulated gradient is the one-pass gradient. ``bnpo``
  normalizes each pass by its own token count, so grouping by length would weigh short completions more: its passes
  stay random (their columns are still cut);
- TRL's logged ``entropy`` is the mean of per-pass token means; the trainer rescales each pass's value by its token
  share, so the logged mean stays the token mean over the whole batch.

The batch is still shuffled with TRL's own draw first (ties in length stay in random order), so the torch random
state, and with it every later rollout, is the one TRL's split leaves.
"""

from __future__ import annotations

import functools

# the keys of TRL's text-only generation batch this module knows how to cut; any other key (images, a subclass's
# extra columns) leaves TRL's split as it is
PROMPT_KEYS = ("prompt_ids", "prompt_mask")
COMPLETION_KEYS = ("completion_ids", "completion_mask", "old_per_token_logps", "ref_per_token_logps",
                   "sampling_per_token_logps", "importance_sampling_ratio", "tool_mask")
ROW_KEYS = ("advantages",)
BATCH_KEYS = ("num_items_in_batch",)
GROUPING_LOSSES = ("dapo", "grpo", "dr_grpo")


def can_group(batch: dict) -> bool:
    """Whether every key of ``batch`` is one this module can cut (TRL's text-only keys)."""
    return set(batch) <= set(PROMPT_KEYS + COMPLETION_KEYS + ROW_KEYS + BATCH_KEYS) and "completion_mask" in batch


def length_grouped_passes(batch: dict, passes: int, *, by_length: bool = True) -> list[dict]:
    """``batch`` (TRL's generation batch, rows already shuffled) split into ``passes`` passes of equal row count,
    ordered by completion length when ``by_length`` (a stable sort: equal lengths keep their order), each pass's
    prompt and completion columns cut to the ones its rows use (at least one of each)."""
    import torch

    mask = batch["completion_mask"]
    rows = mask.shape[0]
    if passes < 1 or rows % passes:
        raise ValueError(f"{rows} rows do not split into {passes} equal passes")
    lengths = mask.sum(dim=1)
    order = torch.sort(lengths, stable=True).indices if by_length else torch.arange(rows)
    size = rows // passes
    out = []
    for i in range(passes):
        idx = order[i * size:(i + 1) * size]
        width = max(int(lengths[idx].max()), 1)
        part = {}
        for key, value in batch.items():
            if value is None or (torch.is_tensor(value) and value.ndim == 0):
                part[key] = value
            elif key in COMPLETION_KEYS and value.ndim == 2 and value.shape[1] == mask.shape[1]:
                part[key] = value[idx, :width]
            else:
                part[key] = value[idx]
        if "prompt_mask" in part:
            used = part["prompt_mask"].any(dim=0).nonzero()
            first = int(used[0]) if len(used) else part["prompt_mask"].shape[1] - 1
            for key in PROMPT_KEYS:
                part[key] = part[key][:, first:]
        out.append(part)
    return out


def _trainer_class():
    from trl import GRPOTrainer

    try:   # TRL's internals this class builds on (trl 1.16); another TRL keeps its own split
        from trl.trainer.grpo_trainer import shuffle_sequence_dict, split_tensor_dict
    except ImportError:
        return GRPOTrainer
    if not all(hasattr(GRPOTrainer, name) for name in ("_prepare_inputs", "_generate_and_score_completions",
                                                       "_compute_loss")):
        return GRPOTrainer

    class LengthGroupedGRPOTrainer(GRPOTrainer):
        """TRL's GRPOTrainer whose passes are length-grouped (module docstring). Falls back to TRL's own split where
        it does not apply: one pass, more than one iteration per generation, a batch with keys it does not know, or
        a TRL without the internals it builds on."""

        _grouped = False   # whether the buffered passes are ours (the entropy rescale applies to them only)

        def _prepare_inputs(self, generation_batch):
            passes = self.args.steps_per_generation
            if (not self.model.training or passes == 1 or getattr(self, "num_iterations", None) != 1
                    or not hasattr(self, "_buffered_inputs")):
                return super()._prepare_inputs(generation_batch)
            if self._step % passes == 0 or self._buffered_inputs is None:
                batch = self._generate_and_score_completions(generation_batch)
                batch = shuffle_sequence_dict(batch)   # TRL's draw: the torch random state stays TRL's
                self._grouped = can_group(batch)
                if self._grouped:
                    self._buffered_inputs = length_grouped_passes(batch, passes,
                                                                  by_length=self.loss_type in GROUPING_LOSSES)
                else:
                    self._buffered_inputs = split_tensor_dict(batch, passes)
            return self._buffered_inputs[self._step % passes]

        def _compute_loss(self, model, inputs):
            loss = super()._compute_loss(model, inputs)
            if self._grouped and self.model.training:
                # TRL logs the mean of per-pass token means; weigh this pass's by its share of the batch's tokens
                mask = inputs["completion_mask"]
                if "tool_mask" in inputs:
                    mask = mask * inputs["tool_mask"]
                tokens = float(self.accelerator.reduce(mask.sum().float(), reduction="sum"))
                total = float(inputs["num_items_in_batch"])
                values = getattr(self, "_metrics", {}).get("train", {}).get("entropy")
                if values and total > 0:
                    values[-1] *= tokens * self.args.steps_per_generation / total
            return loss

    return LengthGroupedGRPOTrainer


@functools.cache
def trainer_class():
    """The GRPOTrainer subclass (built on first call: importing TRL takes seconds)."""
    return _trainer_class()
