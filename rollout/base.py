"""The rollout protocol shared by every backend: :class:`Completion` and :class:`RolloutBackend`.

Stdlib only, so that ``import octo.rollout`` stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@dataclass
class Completion:
    """One sampled completion of one prompt."""

    token_ids: list[int]
    """Generated tokens; the EOS token is included when it was generated."""
    text: str
    """The completion decoded with the probe's tokenizer, special tokens skipped."""
    logprobs: list[float]
    """Log-probability of each generated token under the distribution it was sampled from: the
    logits divided by the temperature (top-p applied when ``top_p < 1``), as TRL's GRPO trainer
    recomputes them. With temperature 0 (greedy) it is the plain log-softmax of the logits."""
    finish_reason: str
    """``"stop"`` (an EOS token ended it) or ``"length"`` (it reached ``max_tokens``)."""


@runtime_checkable
class RolloutBackend(Protocol):
    """What the probe and the evaluators call; see :func:`octo.rollout.make_backend`."""

    name: str

    def generate(self, prompts: list[list[int]], *, n: int, max_tokens: int, temperature: float = 1.0,
                 top_p: float = 1.0, seed: int | None = None) -> list[list[Completion]]:
        """``n`` completions of at most ``max_tokens`` tokens for each prompt (token ids), in prompt
        order. Temperature 0 means greedy. The same ``seed`` and inputs give the same completions."""
        ...

    def update_weights(self, model: Any, *, step: int | None = None) -> None:
        """Make the next ``generate`` use the weights of ``model`` (the trainer's current model);
        ``step`` is the optimizer step, named in error messages."""
        ...

    def close(self) -> None:
        """Release what the backend holds (threads, engines, temporary files). Idempotent."""
        ...


class ContextClosing:
    """``with backend: ...`` closes the backend on the way out (every backend inherits this)."""

    def close(self) -> None:  # pragma: no cover - every backend defines its own
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_request(prompts: list[list[int]], *, n: int, max_tokens: int, temperature: float,
                  top_p: float) -> None:
    """Reject arguments no backend can honour (these are bugs in the caller, not user errors)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    for i, p in enumerate(prompts):
        if len(p) == 0:
            raise ValueError(f"prompt {i} is empty; every prompt needs at least one token")


_MASK64 = (1 << 64) - 1


def mix_seed(seed: int, index: int) -> int:
    """A 62-bit seed for item ``index`` of a request seeded with ``seed`` (SplitMix64 finaliser),
    so that prompts of one call, and calls with nearby seeds, get unrelated random streams."""
    z = (seed * 0x9E3779B97F4A7C15 + (index + 1) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (z ^ (z >> 31)) >> 2  # 62 bits: vLLM adds the sample index, int64 must hold it
