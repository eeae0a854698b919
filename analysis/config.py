"""Config of the readiness score, the dynamics detectors and the gates (the recipe's ``analysis`` key).

    analysis:
      weights: {start: 1.0, learning: 2.0}     # missing components keep their default weight
      bootstrap: 2000

Read from ``RUN/recipe.resolved.yaml``, with ``--set analysis.<key>=<value>`` overrides; docs/analysis.md
explains every formula these numbers enter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from octo.errors import ConfigError
from octo.schema import opt

#: Readiness components, in the order reports show them (docs/analysis.md, "Readiness score").
COMPONENTS = ("start", "learning", "stability", "length", "control")
#: Dynamics detectors, in the order reports show them (docs/analysis.md, "Detectors").
DETECTORS = ("length_explosion", "collapse", "truncation", "repetition", "multi_boxed", "entropy_collapse",
             "kl_blowup", "reward_hacking")
#: Terms of the gate score J(t) (seed 001, section 4.3).
GATE_TERMS = ("domain", "general", "behavior", "safety")

DEFAULT_WEIGHTS = {"start": 1.0, "learning": 1.0, "stability": 1.0, "length": 1.0, "control": 1.0}
# entropy_collapse is information only (0): every successful RL run trades entropy (arXiv 2505.22617)
DEFAULT_EVENT_PENALTY = {"length_explosion": 0.1, "collapse": 0.1, "truncation": 0.05, "repetition": 0.05,
                         "multi_boxed": 0.05, "entropy_collapse": 0.0, "kl_blowup": 0.05, "reward_hacking": 0.1}
DEFAULT_GATE_WEIGHTS = {"domain": 1.0, "general": 1.0, "behavior": 0.5, "safety": 1.0}
# The shipped readiness: what octo.analysis.combine.select chose, judged by nested leave-one-checkpoint-out, on the
# 13 checkpoints of toy world v2's validation (docs/validation.md, docs/analysis.md "What select chose"): step-0
# pass@k alone (nested tau +0.795, chosen in 8 of 13 folds), with the least-squares slope and intercept fitted
# on all 13, which make it a predicted final accuracy after full RL. A single predictor's ranking does not
# depend on the slope or the intercept.
DEFAULT_COMBINATION = {"start/pass@k": 0.852}
DEFAULT_COMBINATION_INTERCEPT = 0.022


def _check(given: dict[str, float], allowed: tuple[str, ...], key: str) -> None:
    for name, value in given.items():
        if name not in allowed:
            raise ConfigError(f"{key}.{name}", f"unknown name; allowed: {', '.join(allowed)}")
        if value < 0:
            raise ConfigError(f"{key}.{name}", f"must be >= 0 (got {value})")


@dataclass(kw_only=True)
class AnalysisConfig:
    # --- readiness score ---------------------------------------------------------------------
    weights: dict[str, float] = opt(
        default_factory=lambda: dict(DEFAULT_WEIGHTS),
        help="weights of the readiness-score components (start, learning, stability, length, control); "
             "a component left out keeps its default weight, 0 switches it off")
    start_format_weight: float = opt(
        0.25, ge=0, le=1,
        help="share of the step-0 format rate in the start component (the rest is step-0 accuracy)")
    length_gap_weight: float = opt(
        0.5, ge=0,
        help="weight of the excess growth of incorrect-answer length over correct-answer length in the "
             "length component (the other term is the late clip ratio)")
    event_penalty: dict[str, float] = opt(
        default_factory=lambda: dict(DEFAULT_EVENT_PENALTY),
        help="stability penalty per detector that fired in a probe (accuracy units); a detector left "
             "out keeps its default penalty; 0 keeps the detector as information (entropy_collapse by default)")

    # --- confidence intervals ----------------------------------------------------------------
    bootstrap: int = opt(1000, ge=100, help="bootstrap resamples for confidence intervals")
    seed: int = opt(0, help="seed of the bootstrap")
    ci_level: float = opt(0.95, gt=0.5, lt=1, help="confidence level of every interval")

    # --- detectors: shared rules -------------------------------------------------------------
    smooth_window: int = opt(3, ge=1, help="centred rolling-median window (probe steps) applied to a per-step "
                                           "metric before a detector reads it; kills single noisy points")
    persistence: int = opt(3, ge=1, help="consecutive probe steps a per-step detector condition must hold")
    baseline_steps: int = opt(3, ge=1, help="first probe steps whose median is a metric's baseline")
    min_problems: int = opt(
        30, ge=1, help="held-out detectors (collapse, reward hacking) stay silent when an evaluation has fewer "
                       "problems than this: too few to tell a drop from noise")
    eval_persistence: int = opt(
        2, ge=1, help="consecutive held-out evaluations an eval-based condition must hold (a collapse that "
                      "reaches the last evaluation also counts when it is significant, see collapse_z)")

    # --- detectors: thresholds ---------------------------------------------------------------
    length_growth: float = opt(0.5, gt=0, help="length explosion: len/mean at least (1 + this) x its baseline")
    clip_threshold: float = opt(0.2, ge=0, le=1, help="length explosion: clip_ratio at least this")
    clip_rise: float = opt(0.1, ge=0, le=1, help="length explosion: clip_ratio at least this above its baseline")
    collapse_drawdown: float = opt(0.1, gt=0, le=1,
                                   help="collapse: held-out accuracy at least this far below its running peak (D)")
    collapse_z: float = opt(2.0, ge=0, help="collapse: the drop from the peak must also exceed this many "
                                            "standard errors (paired over problems)")
    repeat_threshold: float = opt(0.1, ge=0, le=1, help="repetition surge: repeat_rate at least this")
    repeat_rise: float = opt(0.05, ge=0, le=1, help="repetition surge: repeat_rate at least this above baseline")
    multi_boxed_threshold: float = opt(0.1, ge=0, le=1, help="multi-boxed surge: multi_boxed_rate at least this")
    multi_boxed_rise: float = opt(0.05, ge=0, le=1,
                                  help="multi-boxed surge: multi_boxed_rate at least this above baseline")
    truncation_threshold: float = opt(
        0.3, gt=0, le=1, help="truncation: clip_ratio at least this (completions cut at max_len lose their reward) "
                              "without the length growth of a length explosion")
    entropy_ratio: float = opt(0.3, gt=0, lt=1, help="entropy collapse: entropy at most this x its baseline")
    kl_max: float = opt(0.5, gt=0, help="KL blow-up: kl (policy to reference) at least this")
    hack_reward_rise: float = opt(
        0.2, gt=0, help="reward hacking: train reward/mean risen at least this above its baseline while "
                        "held-out accuracy stays flat (see hack_acc_flat)")
    hack_acc_flat: float = opt(
        0.02, help="reward hacking: held-out accuracy counts as flat when it gained at most this since step 0")

    # --- predictors (octo.analysis.predictors) ---------------------------------------------------
    extrapolate_steps: int = opt(
        0, ge=0, help="GRPO steps of the full RL run whose accuracy the sigmoid extrapolation predicts (its compute "
                      "C_full = the probe's rollout tokens x this / the probe's steps); 0: 10 x the probe's steps")
    sigmoid_shared_mid: bool = opt(
        False, help="sigmoid extrapolation: one C_mid for every checkpoint (in multiples of each probe's compute) "
                    "instead of one each; B is always shared")

    combination: dict[str, float] = opt(
        default_factory=lambda: dict(DEFAULT_COMBINATION),
        help="coefficients of the combined readiness, a predicted final accuracy after full RL: intercept + sum of "
             "coefficient x predictor (names of scores.json predictors, '-name' negated), as "
             "octo.analysis.combine.select fits them on validation checkpoints and judges them on others; empty: "
             "no combined predictor")
    combination_intercept: float = opt(DEFAULT_COMBINATION_INTERCEPT,
                                       help="intercept of the combined readiness (see combination)")
    rank_by: Literal["readiness", "combined"] = opt(
        "combined", help="what ranks the checkpoints and picks the recommendation: the readiness score (weighted "
                          "components) or the combined predictor of `combination` (then `score` and its interval "
                          "are the combined one, and the components' score stays in metrics as "
                          "readiness/components); with a checkpoint lacking a predictor of the combination, "
                          "readiness ranks and a note says why")

    # --- gates beside readiness (seed 001: stability gap, J(t), stop rule, Pareto set) ----------
    gate_weights: dict[str, float] = opt(
        default_factory=lambda: dict(DEFAULT_GATE_WEIGHTS),
        help="weights of J = w_domain*gain - w_general*general regression - w_behavior*format regression "
             "- w_safety*refusal-rate regression")
    domain_metric: str = opt("", help="gate key of the domain metric M_d (empty: the first acc/<benchmark>)")
    reference: str = opt("", help="checkpoint id whose gates are M(0) for the stability gap and J (empty: the "
                                  "base model, i.e. the final checkpoint of the root stage)")
    tau_g: float = opt(0.1, ge=0, help="stop rule: largest acceptable general regression, "
                                       "ln(ppl/general / reference)")
    tau_b: float = opt(0.1, ge=0, help="stop rule: largest acceptable drop of format_rate (octo's behaviour "
                                       "gate, in the role of the safety threshold tau_s)")
    tau_s: float = opt(0.05, ge=0, help="stop rule: largest acceptable drop of refusal_rate on the recipe's "
                                        "safety slice (only with cpt.gates.safety)")
    eps_d: float = opt(0.0, help="stop rule: smallest domain gain over the reference worth more tokens")
    stop_patience: int = opt(2, ge=1, help="stop rule: consecutive gate evaluations of a stage below eps_d")

    def __post_init__(self) -> None:
        # a partial mapping keeps the defaults of the names it leaves out (weights: {learning: 2})
        self.weights = {**DEFAULT_WEIGHTS, **self.weights}
        self.event_penalty = {**DEFAULT_EVENT_PENALTY, **self.event_penalty}
        self.gate_weights = {**DEFAULT_GATE_WEIGHTS, **self.gate_weights}

    def validate(self) -> None:
        _check(self.weights, COMPONENTS, "weights")
        _check(self.event_penalty, DETECTORS, "event_penalty")
        _check(self.gate_weights, GATE_TERMS, "gate_weights")
        if not any(self.weights.values()):
            raise ConfigError("weights", "at least one component needs a weight > 0")
        from octo.analysis.combine import signed
        from octo.analysis.predictors import PREDICTORS

        allowed = [p for p in PREDICTORS if p not in ("readiness", "combined")]
        for name in self.combination:
            if signed(name)[1] not in allowed:
                raise ConfigError(f"combination.{name}", f"unknown predictor; allowed: {', '.join(allowed)}")
        if self.rank_by == "combined" and not self.combination:
            raise ConfigError("rank_by", "is 'combined' but analysis.combination is empty; set the combination "
                                         "(octo.analysis.combine.select fits it) or rank by readiness")


def load_analysis_config(run_dir=None, overrides: list[str] | None = None) -> AnalysisConfig:
    """The ``analysis`` section of ``RUN/recipe.resolved.yaml`` (or the defaults) plus ``--set`` overrides."""
    from pathlib import Path

    from octo.runio import RECIPE_FILE
    from octo.schema import apply_overrides, from_dict, read_recipe_file

    raw: dict = {}
    path = Path(run_dir) / RECIPE_FILE if run_dir is not None else None
    if path is not None and path.exists():
        recipe = read_recipe_file(path, advice="fix it or delete it to use the default analysis settings")
        if isinstance(recipe.get("analysis"), dict):
            raw = recipe["analysis"]
    wrapped = {"analysis": dict(raw)}
    for item in overrides or []:
        key = item.partition("=")[0].strip()
        if not key.startswith("analysis."):
            raise ConfigError(key, "only analysis.<key>=<value> overrides apply to analysis commands; "
                                   "e.g. --set analysis.bootstrap=2000")
    apply_overrides(wrapped, list(overrides or []))
    return from_dict(AnalysisConfig, wrapped["analysis"], "analysis")


@dataclass(kw_only=True)
class WorldTargetsConfig:
    """What a world must show for its validation to judge a readiness score (issue 20); the page reports each
    as yes or no with its figure. The recipe's ``validation.world_targets`` (octo.rl_config uses it from here:
    the analysis imports no engine module)."""

    max_final_acc: float = opt(0.9, gt=0, le=1, help="no ceiling: no checkpoint's mean full-RL final held-out "
                                                     "accuracy above this")
    min_separated_share: float = opt(0.8, ge=0, le=1, help="real spread: the share of checkpoint pairs whose full-RL "
                                                           "difference CI excludes 0")
    min_late_bloomers: int = opt(3, ge=0, help="late bloomers (full-RL rank at least 3 places above the step-0 "
                                               "accuracy rank) needed ...")
    min_checkpoints: int = opt(12, ge=3, help="... among at least this many validated checkpoints")
    max_hours: float = opt(3.0, gt=0, help="wall time of the whole experiment (CPT, gates, every GRPO run)")
