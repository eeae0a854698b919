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

_EXPORTS = {
    "VerifierConfig": "octo.verifiers.config",
    "RewardConfig": "octo.verifiers.config",
    "Extraction": "octo.verifiers.extract",
    "extract_answer": "octo.verifiers.extract",
    "count_boxed": "octo.verifiers.extract",
    "STATUSES": "octo.verifiers.check",
    "VerifyResult": "octo.verifiers.check",
    "VerifierTimeout": "octo.verifiers.check",
    "verify": "octo.verifiers.check",
    "VerifierPool": "octo.verifiers.pool",
    "shared_pool": "octo.verifiers.pool",
    "RewardBreakdown": "octo.verifiers.rewards",
    "score_completions": "octo.verifiers.rewards",
    "overlong_penalty": "octo.verifiers.rewards",
    "MathReward": "octo.verifiers.rewards",
    "ControlReward": "octo.verifiers.rewards",
    "control_rewards": "octo.verifiers.rewards",
    "has_repetition": "octo.verifiers.repetition",
    "has_ngram_repetition": "octo.verifiers.repetition",
}

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
