"""Configs of the verifier and the reward (the recipe's ``verifier`` and ``probe.reward`` keys): frozen,
keyword-only dataclasses whose fields carry their help text (:func:`octo.schema.opt`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from octo.errors import ConfigError
from octo.schema import opt

ExtractMethod = Literal["boxed", "hash", "answer_is", "whole", "latex", "last_number"]
EXTRACT_METHODS: tuple[str, ...] = ("boxed", "hash", "answer_is", "whole", "latex", "last_number")
REWARD_COMPONENTS: tuple[str, ...] = ("correctness", "format", "repetition", "overlong")


@dataclass(frozen=True, kw_only=True)
class VerifierConfig:
    """How answers are extracted and compared (see docs/verifiers.md)."""

    extract: list[ExtractMethod] = opt(
        default_factory=lambda: ["boxed", "hash", "answer_is", "whole", "latex", "last_number"],
        help="answer extraction methods tried in this order: last \\boxed{}/\\fbox{}, GSM8K '#### x', "
             "'the answer is x', a completion that is one line of math and no words, math-verify's extraction for text with LaTeX in it, the number on the final "
             "line of plain text")
    extract_by_task: dict[str, list[ExtractMethod]] = opt(
        default_factory=dict,
        help="per-task extraction order, keyed by the dataset's 'task' column (e.g. gsm8k: [hash, boxed]); "
             "tasks not listed use 'extract'")
    timeout_s: float = opt(5.0, gt=0, help="hard per-item time limit of one verification (seconds)")
    kill_grace_s: float = opt(
        1.0, gt=0,
        help="extra seconds after timeout_s before a worker stuck in C code (where the in-worker timer "
             "cannot fire) is killed and replaced")
    workers: int = opt(2, ge=1, help="verifier worker processes")
    worker_death_retries: int = opt(
        1, ge=0,
        help="times an item whose worker died while holding it (killed from outside, out of memory, a crash) "
             "is sent again to a fresh worker before it counts as status 'error'; hard timeouts are never retried")
    worker_memory_mb: int = opt(
        4096, ge=0,
        help="address-space limit of each worker process in MiB, so that a huge number fails with "
             "status 'error' instead of exhausting the machine (0 = no limit)")
    local_max_chars: int = opt(
        20_000, ge=0,
        help="completions up to this many characters are extracted and, when both answers are plain "
             "numbers, compared in the calling process; longer ones always go to a worker")
    cache_size: int = opt(
        100_000, ge=0,
        help="math-verify verdicts a pool remembers by (gold, answer) after cleaning, so that repeated "
             "answers (a GRPO group often has several) skip the workers; 0 = no cache")
    max_answer_chars: int = opt(
        2_000, ge=1,
        help="an extracted answer longer than this many characters is not compared and counts as wrong")
    thousands_separators: bool = opt(
        True, help="read 1,234 / 1{,}234 / 1\\,234 (groups of exactly three digits) as 1234 in plain numbers")
    strip_units: bool = opt(
        True, help="ignore currency signs and trailing unit words or \\text{...} around plain numbers "
                   "(\\$12, 12 cm, 12\\text{ apples} all read as 12)")
    normalize_unicode: bool = opt(
        True, help="rewrite unicode math (−, ×, ÷, √, π, ∞, ½, ², full-width digits, zero-width spaces) "
                   "as ASCII/LaTeX before comparing")
    guard_heavy: bool = opt(
        True, help="refuse to evaluate expressions whose value would have more than 4 million bits "
                   "(power towers, huge factorials) and report them as 'timeout' instead of hanging a worker")

    def validate(self) -> None:
        if not self.extract:
            raise ConfigError("extract", "must name at least one method: " + ", ".join(EXTRACT_METHODS))
        for task, methods in self.extract_by_task.items():
            if not methods:
                raise ConfigError(f"extract_by_task.{task}", "must name at least one extraction method")


@dataclass(frozen=True, kw_only=True)
class RewardConfig:
    """Reward = sum of weighted components (octo.verifiers.rewards), each logged as reward/<name>."""

    correct: float = opt(1.0, help="correctness reward for a verified-correct answer")
    wrong: float = opt(0.0, help="correctness reward for a wrong or missing answer (OctoThinker: -1.0)")
    weights: dict[str, float] = opt(
        default_factory=lambda: {"correctness": 1.0, "format": 0.0, "repetition": 0.0, "overlong": 0.0},
        help="weight of each reward component: correctness, format, repetition, overlong "
             "(a component left out has weight 0)")
    format_one: float = opt(0.0, help="raw format value when the completion has exactly one boxed answer")
    format_none: float = opt(-1.0, help="raw format value when the completion has no boxed answer")
    format_multi: float = opt(-1.0, help="raw format value when the completion has several boxed answers")
    repetition: Literal["regex", "ngram", "either"] = opt(
        "regex",
        help="repetition detector: 'regex' = the text matches (.{5,}?)\\1{4,} (OctoThinker), 'ngram' = some "
             "token n-gram occurs ngram_min_count times, 'either' = any of the two")
    ngram_n: int = opt(10, ge=1, help="n of the token n-gram repetition detector")
    ngram_min_count: int = opt(5, ge=2, help="occurrences of one n-gram that count as repetition")
    repetition_max_chars: int = opt(
        50_000, ge=100,
        help="the regex detector looks at the last this-many characters of a completion (bounds its cost)")
    overlong_buffer: float = opt(
        0.2, gt=0, le=1,
        help="DAPO soft overlong punishment: the penalty ramps from 0 to -1 over the last "
             "overlong_buffer*max_len tokens before max_len (DAPO: 4096 of 20480 = 0.2)")

    def validate(self) -> None:
        for key in self.weights:
            if key not in REWARD_COMPONENTS:
                raise ConfigError(f"weights.{key}",
                                  "unknown reward component; use " + ", ".join(REWARD_COMPONENTS))

    def weight(self, component: str) -> float:
        return float(self.weights.get(component, 0.0))
