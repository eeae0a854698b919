"""The RL sections of a recipe: ``probe`` (a GRPO probe and its length schedule) and ``validation`` (``octo validate``:
full RL runs, findings). Every field carries its help text; ``octo.config`` imports these into the recipe."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from octo.analysis.config import WorldTargetsConfig
from octo.errors import ConfigError
from octo.rollout.config import RolloutConfig
from octo.schema import opt
from octo.verifiers.config import RewardConfig


@dataclass(kw_only=True)
class LengthScheduleConfig:
    """Maximum response length per probe step (octo.probe.length); steps are optimizer steps."""

    kind: Literal["constant", "stair", "linear", "adaptive"] = opt(
        "stair", help="constant: max_len; stair: value of the last stair step <= current step; linear: "
                      "max_len to end_len over ramp_steps; adaptive: start at max_len, multiply by factor "
                      "when clip_ratio > clip_threshold for patience consecutive steps, up to end_len")
    max_len: int = opt(64, ge=1, help="constant limit; the start of linear/adaptive; the stair's value "
                                      "before its first step")
    stairs: dict[int, int] = opt(default_factory=dict,
                                 help="stair: optimizer step -> max_len from that step on (OctoThinker: "
                                      "{0: 2048, 200: 4096, 320: 8192})")
    end_len: int = opt(0, ge=0, help="linear: final length; adaptive: cap (0: max_len, i.e. no growth)")
    ramp_steps: int = opt(0, ge=0, help="linear: steps of the ramp from max_len to end_len")
    clip_threshold: float = opt(0.2, ge=0, le=1, help="adaptive: clip ratio that counts as saturated")
    patience: int = opt(3, ge=1, help="adaptive: consecutive saturated steps before raising the limit")
    factor: float = opt(2.0, gt=1, help="adaptive: multiplier applied when raising the limit")

    def validate(self) -> None:
        for step, value in self.stairs.items():
            if step < 0 or value < 1:
                raise ConfigError(f"stairs.{step}", "steps must be >= 0 and lengths >= 1")
        if self.kind == "stair" and not self.stairs:
            raise ConfigError("stairs", "a stair schedule needs at least one step, e.g. {0: 64, 20: 96}")
        if self.kind == "linear" and (self.end_len < 1 or self.ramp_steps < 1):
            raise ConfigError("end_len", "a linear schedule needs end_len >= 1 and ramp_steps >= 1")


@dataclass(kw_only=True)
class ProbeLoraConfig:
    """A LoRA probe (``probe.lora``): TRL's GRPOTrainer trains low-rank adapters through peft, the base weights stay
    frozen (Hu et al. 2021, "LoRA": W + (alpha / rank) * B A, with B = 0 at the start so step 0 is the checkpoint).
    Needs the ``peft`` package (``pip install 'octo-midtrain[lora]'``)."""

    rank: int = opt(16, ge=1, help="LoRA rank r of every adapted matrix")
    alpha: float = opt(32.0, gt=0, help="LoRA alpha: the update is scaled by alpha / rank")
    dropout: float = opt(0.0, ge=0, lt=1, help="dropout on the adapters' input in training (0: the trained policy is "
                                               "exactly the one rollouts sample from, as GRPO's ratio assumes)")
    target_modules: list[str] = opt(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        help="module names that get adapters (default: the attention and MLP projections of a Llama/Qwen model)")

    def validate(self) -> None:
        if not self.target_modules:
            raise ConfigError("target_modules", "names no module; list e.g. [q_proj, v_proj] or leave the default")


@dataclass(kw_only=True)
class ProbeConfig:
    """A short GRPO run from a checkpoint (TRL GRPOTrainer + an octo rollout backend)."""

    checkpoints: list[str] = opt(default_factory=list,
                                 help="stages whose final checkpoint is probed (e.g. pretrain, decay-long)")
    steps: int = opt(30, ge=1, help="GRPO optimizer steps")
    prompts_per_step: int = opt(16, ge=1, help="distinct prompts per step")
    num_generations: int = opt(8, ge=2, help="completions per prompt (the GRPO group size G)")
    micro_batch_size: int = opt(
        0, ge=0, help="completions per forward/backward pass; one optimizer step accumulates the gradients of "
                      "prompts_per_step x num_generations / micro_batch_size passes (0: all in one pass), grouped "
                      "by completion length and each cut to its longest (the same step up to float rounding). A "
                      "memory and speed knob, not a setting: a real model's logits over its vocabulary (e.g. 152K "
                      "for Qwen2.5) take GBs per pass, so lower it when a probe runs out of memory; passes of 16 "
                      "train faster where completion lengths spread (docs/rollout.md)")
    lr: float = opt(2.0e-5, gt=0, help="policy learning rate (constant)")
    beta: float = opt(0.0, ge=0, help="KL coefficient (OctoThinker: 0)")
    temperature: float = opt(1.0, gt=0, help="sampling temperature of rollouts")
    loss_type: Literal["grpo", "dapo", "dr_grpo", "bnpo"] = opt("dapo", help="TRL GRPO loss type")
    mask_truncated_completions: bool = opt(False, help="exclude completions cut at max_len from the loss")
    max_len: LengthScheduleConfig = opt(default_factory=LengthScheduleConfig,
                                        help="max response length schedule")
    eval_every: int = opt(10, ge=1, help="held-out evaluation every N steps (and at step 0 and the end)")
    eval_steps: list[int] = opt(default_factory=list,
                                help="held-out evaluations at these steps too (each 1..steps); with a large "
                                     "eval_every, only these and the ends: what evaluations cost without changing "
                                     "what the run trains (they use their own random stream)")
    eval_problems: int = opt(200, ge=1, help="held-out problems per evaluation")
    eval_samples: int = opt(4, ge=1, help="samples per problem for sampled accuracy and pass@k")
    start_samples: int = opt(
        16, ge=0, help="step-0 sampling pass: samples per problem at the probe temperature on a subset of the held-out "
                       "problems and of the RL prompts, written as success counts to start.jsonl (pass@k, headroom and "
                       "learnable mass, docs/analysis.md); 0 switches the pass off, else at least 2")
    start_heldout_problems: int = opt(64, ge=0, help="step-0 sampling pass: held-out problems (level-balanced subset; "
                                                     "pass@k and headroom); 0 skips them")
    start_prompt_problems: int = opt(64, ge=0, help="step-0 sampling pass: RL prompts (level-balanced when "
                                                    "they carry levels; learnable mass); 0 skips them")
    start_max_len: int = opt(0, ge=0, help="step-0 sampling pass: response length limit; 0: the probe schedule's "
                                           "largest. Set it to the full RL run's last limit when the probe runs at "
                                           "its first: a checkpoint whose answers only finish at the longer limit "
                                           "(a Long branch) is then seen as full RL will see it")
    save_every: int = opt(10, ge=1, help="probe checkpoint every N steps (resume point)")
    save_every_s: float = opt(60.0, ge=0, help="also a probe checkpoint at the end of the first step when this many "
                                               "seconds have passed since the last one (or since the probe began in "
                                               "this process): a Ctrl-C or a kill loses at most about this much "
                                               "work (0: off)")
    seeds: list[int] = opt(default_factory=lambda: [0], help="probe seeds (one probe per seed)")
    jobs: int = opt(1, ge=1, help="probes run at once by octo run, each in a worker process with an equal "
                                  "share of cpt.threads (a tiny model leaves cores idle: 2 on 2 cores); how "
                                  "probes run, not what they compute, so a run directory may resume with another")
    log_samples: int = opt(16, ge=0, help="completions per step written to samples.jsonl")
    control: Literal["none", "random", "format"] = opt(
        "none", help="also run a negative-control probe per checkpoint: random +-1 reward or format-only")
    prompt_template: str = opt("User:{question}\nAssistant:<think>\n",
                               help="prompt text; {question} is replaced by the problem")
    rollout: RolloutConfig = opt(default_factory=RolloutConfig, help="generation backend")
    reward: RewardConfig = opt(default_factory=RewardConfig, help="reward components and weights")
    lora: ProbeLoraConfig | None = opt(
        None, help="null: full fine-tuning; a mapping (e.g. --set probe.lora.rank=16): a LoRA probe through peft. LoRA "
                   "usually wants a learning rate about 10x the full fine-tuning one (Schulman et al. 2025, 'LoRA "
                   "Without Regret'); probe.lr is used as given")

    @property
    def per_step(self) -> int:
        """Completions per optimizer step: prompts_per_step x num_generations."""
        return self.prompts_per_step * self.num_generations

    def evaluates_at(self, step: int) -> bool:
        """Whether a held-out evaluation follows optimizer step ``step`` (step 0 is always evaluated, before any)."""
        return step % self.eval_every == 0 or step == self.steps or step in self.eval_steps

    def start_limit(self, schedule_maximum: int) -> int:
        """The step-0 sampling pass's length limit: ``start_max_len``, or the probe schedule's largest (0)."""
        return self.start_max_len or schedule_maximum

    def validate(self) -> None:
        if "{question}" not in self.prompt_template:
            raise ConfigError("prompt_template", "must contain {question}")
        if self.micro_batch_size and self.per_step % self.micro_batch_size:
            raise ConfigError("micro_batch_size", f"must divide prompts_per_step x num_generations = "
                                                  f"{self.per_step} (or be 0)")
        if self.start_samples == 1:
            raise ConfigError("start_samples", "must be 0 (off) or at least 2: learnable mass needs two samples "
                                               "per prompt")
        _check_steps("eval_steps", self.eval_steps, self.steps)


def _check_steps(key: str, steps: list[int], last: int) -> None:
    """Steps of a run of ``last`` optimizer steps, each named once."""
    bad = [s for s in steps if not 1 <= s <= last]
    if bad:
        raise ConfigError(key, f"steps must lie in 1..{last}, the run's steps (got {bad[0]})")
    if len(set(steps)) != len(steps):
        raise ConfigError(key, "names a step twice")


@dataclass(kw_only=True)
class FindingsConfig:
    """Stages compared by the OctoThinker findings that ``octo validate`` checks (seed 004); '' skips one.

    Every stage named here must be one of the validated checkpoints (``validation.checkpoints``): a
    finding is read off the full RL runs from those checkpoints.
    """

    long: str = opt("", help="long-CoT-heavy branch (Long): its response length should grow and it should be "
                             "less stable than 'short' (Fig. 6, 8)")
    short: str = opt("", help="short-CoT branch (Short): its lengths should stay short and stable")
    with_if: str = opt("", help="a branch with instruction-following data ...")
    without_if: str = opt("", help="... and the same branch without it: IF data should reduce instability "
                                   "(Fig. 7, 8)")
    fewer_stable_tokens: str = opt("", help="a stable-stage checkpoint ...")
    more_stable_tokens: str = opt("", help="... and one trained on more stable-stage tokens: more tokens "
                                           "should give higher held-out accuracy after RL (Fig. 11)")

    hybrid: str = opt("", help="a branch mixing long and short CoT (Hybrid): it should end full RL between 'short' "
                               "and 'long' or above both (issue 20's world property; needs both named)")

    def stages(self) -> list[tuple[str, str]]:
        return [(k, getattr(self, k)) for k in ("long", "short", "with_if", "without_if", "fewer_stable_tokens",
                                                 "more_stable_tokens", "hybrid") if getattr(self, k)]

    def validate(self) -> None:
        for a, b in (("long", "short"), ("with_if", "without_if"), ("fewer_stable_tokens", "more_stable_tokens")):
            if bool(getattr(self, a)) != bool(getattr(self, b)):
                raise ConfigError(a if not getattr(self, a) else b,
                                  f"{a} and {b} are compared with each other: name both stages or neither")
        if self.hybrid and not (self.long and self.short):
            raise ConfigError("hybrid", "is compared with 'long' and 'short': name both of them too, or leave hybrid "
                                        "empty")


@dataclass(kw_only=True)
class StairVsFixedConfig:
    """Full RL runs from one checkpoint with a fixed long length limit, against the stair schedule (Fig. 10)."""

    checkpoint: str = opt("", help="stage whose checkpoint gets the extra fixed-limit runs (one per seed); "
                                   "'' skips the comparison")
    fixed_len: int = opt(0, ge=0, help="the fixed max response length (0: the largest limit of the full runs' "
                                       "schedule, as OctoThinker's fixed 8K against its 2K -> 4K -> 8K stair)")
    early_steps: int = opt(0, ge=0, help="'early in training': held-out evaluations at steps 1..early_steps are "
                                         "compared (0: the first half of the full run)")
    steps: int = opt(0, ge=0, help="GRPO steps of a fixed-limit run (0: validation.full_steps); the comparison is "
                                   "early in training, so early_steps is enough and saves the rest of the run")


@dataclass(kw_only=True)
class ValidationConfig:
    """``octo validate``: does the probe readiness ranking predict the ranking after full RL? (docs/validation.md)

    A *full RL run* is the recipe's probe run for ``full_steps`` steps (same prompts, reward, group
    size, learning rate, held-out set), evaluated every ``full_eval_every`` steps.
    """

    checkpoints: list[str] = opt(default_factory=list,
                                 help="stages whose final checkpoints are probed and fully trained with RL and "
                                      "ranked (at least 3; empty: probe.checkpoints)")
    seeds: list[int] = opt(default_factory=list, help="seeds of every probe and full run (empty: probe.seeds)")
    full_seeds: list[int] = opt(default_factory=list,
                                help="seeds of the full RL and fixed-limit runs, each plus full_seed_offset (empty: "
                                     "seeds); fewer than the probes' when full runs are what the compute allows")
    full_steps: int = opt(400, ge=2, help="GRPO steps of a full RL run")
    full_eval_every: int = opt(50, ge=1, help="held-out evaluation every N steps of a full run (and at 0 and the end)")
    full_eval_steps: list[int] = opt(
        default_factory=list, help="held-out evaluations of the full runs at these steps too (each 1..full_steps): "
                                   "with full_eval_every = full_steps, only these and the ends. The analysis reads the "
                                   "last two (is the ranking settled?); stair_vs_fixed's checkpoint is also evaluated "
                                   "at its early_steps")
    full_save_every: int = opt(50, ge=1, help="full-run checkpoint every N steps (resume point)")
    full_seed_offset: int = opt(
        1000, ge=0, help="a full run's seed is its probe's seed plus this, so that a probe is not the first steps of "
                         "its own full run (shared rollouts would flatter the agreement); 0 shares them")
    full_max_len: LengthScheduleConfig | None = opt(
        None, help="max response length schedule of the full runs (null: the probe's probe.max_len)")
    full_mask_truncated_completions: bool | None = opt(
        None, help="leave completions cut at the length limit out of the full runs' loss (DAPO's overlong "
                   "filtering) while the probes keep probe.mask_truncated_completions (null: the probe's setting)")
    max_probe_ratio: float = opt(0.1, gt=0, le=1,
                                 help="compute budget of a probe: probe.steps <= max_probe_ratio x full_steps; "
                                      "the report measures the ratio in rollout tokens (probe.json)")
    ppl_metrics: list[str] = opt(default_factory=lambda: ["ppl/general"],
                                 help="gate perplexities (cpt/<stage>/gates.jsonl keys) tried as baseline "
                                      "predictors: lower perplexity predicts the better checkpoint")
    target_tau: float = opt(0.8, ge=-1, le=1, help="Kendall tau the readiness ranking should reach")
    findings: FindingsConfig = opt(default_factory=FindingsConfig, help="OctoThinker findings checked")
    world_targets: WorldTargetsConfig = opt(default_factory=WorldTargetsConfig,
                                            help="the world's properties the page checks (issue 20)")
    stair_vs_fixed: StairVsFixedConfig = opt(default_factory=StairVsFixedConfig,
                                             help="stair schedule vs a fixed long limit, early in training")
    reduced: list[str] = opt(default_factory=list,
                             help="--set overrides that `octo validate --reduced` applies first: the pipeline "
                                  "check (tiny sizes, few steps, one seed) that runs in CI in minutes")

    def validate(self) -> None:
        if len(set(self.checkpoints)) != len(self.checkpoints):
            raise ConfigError("checkpoints", "names a stage twice")
        if len(set(self.full_seeds)) != len(self.full_seeds):
            raise ConfigError("full_seeds", "names a seed twice")
        _check_steps("full_eval_steps", self.full_eval_steps, self.full_steps)
        sv = self.stair_vs_fixed
        if sv.steps > self.full_steps:
            raise ConfigError("stair_vs_fixed.steps", f"must be <= full_steps={self.full_steps} (got {sv.steps})")
        if sv.early_steps > (sv.steps or self.full_steps):
            raise ConfigError("stair_vs_fixed.early_steps", f"must be <= the fixed-limit run's "
                                                            f"{sv.steps or self.full_steps} steps (got {sv.early_steps})")
