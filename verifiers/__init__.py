"""Rule-based math answer checking and GRPO rewards (installed as ``octo.verifiers``).

    from octo.verifiers import VerifierPool, VerifierConfig, verify

    verify(gold="72", completion="... so she has \\boxed{72} apples.").status   # 'ok'
    with VerifierPool(VerifierConfig(workers=2)) as pool:
        pool.verify_batch(golds=golds, completions=completions)

Names are imported on first use (PEP 562) so that ``import octo.verifiers`` stays cheap;
math-verify and sympy load only when an answer needs them. See docs/verifiers.md.
"""

from __future__ import annotations

import importlib

_EXPORTS = {name: f"octo.verifiers.{module}" for module, names in {
    "config": ("VerifierConfig", "RewardConfig"),
    "extract": ("Extraction", "extract_answer", "count_boxed"),
    "check": ("STATUSES", "VerifyResult", "VerifierTimeout", "verify"),
    "pool": ("VerifierPool", "shared_pool"),
    "rewards": ("RewardBreakdown", "score_completions", "overlong_penalty", "MathReward", "ControlReward",
                "control_rewards"),
    "repetition": ("has_repetition", "has_ngram_repetition"),
}.items() for name in names}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'octo.verifiers' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
