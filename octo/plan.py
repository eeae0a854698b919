"""The plan of an ``octo run``: its parts in order, what each has left to do, and how long that should take.

    plan = RunPlan.build(ctx)          # statuses from the run directory, estimates from a quick timing
    print(plan.describe())             # what ``octo run --dry-run`` prints
    with plan.part("stage", "stable"): # the terminal lines say "[stage 2/5]" and end with the run's ETA
        run_stage(ctx, "stable")

Parts: every stage in dependency order (``stage_order``) and every probe (``probe_specs``' ids: the final
checkpoint of each stage in ``probe.checkpoints`` per seed, plus the negative control). A part is done
(its DONE.json exists: skipped), resumed (a checkpoint exists: from that step) or run from its start.

The estimate (:func:`measure`) times two training micro-steps and one short batched decode of the recipe's
model built from its config with random weights (no weights are loaded; about a second at toy size) and
scales them by each part's budget: tokens trained, sequences x tokens generated (rollouts, evaluations,
gates). A random-weights model never stops early, so generation is costed at the full length limit, an
upper bound; the estimate is labelled as one. During the run the ETA of the whole run is the remaining
estimate scaled by actual / estimated time of the parts already run in this invocation (per kind of part,
stages and probes, when one of that kind has run), and the part in progress is extrapolated from its
progress bar's rate.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from octo import progress

PROMPT_TOKENS = 32         # a probe prompt's length in the estimate (the toy template with a question)
MAX_TIMED_PARAMS = 3e8     # larger models are not built on the CPU for a timing: no estimate then
MAX_TIMED_TOKENS = 4096    # tokens of the timed micro-step (the quickstart's whole micro-batch)
DECODE_STEPS = 8           # decode steps of the timed generation


@dataclass
class Timing:
    """What the estimate scales: seconds per trained token (forward + backward), per generated token of one
    sequence in a batch of ``batch`` (decode), and the time the measurement took."""

    train_token_s: float
    decode_token_s: float
    batch: int
    measured_s: float

    def generate(self, sequences: int, tokens: int) -> float:
        return sequences * tokens * self.decode_token_s

    def train(self, tokens: int) -> float:
        return tokens * self.train_token_s

    def forward(self, tokens: int) -> float:
        return tokens * self.train_token_s / 3     # backward ~ 2 forwards


@dataclass
class Part:
    kind: str                 # "stage" | "probe"
    name: str                 # stage name | probe id
    index: int                # 1-based, within its kind
    count: int
    steps: int                # the part's final step
    start_step: int           # where it starts in this invocation (0: from scratch; == steps when done)
    status: str               # "done" | "resume" | "run"
    budget: str
    estimate_s: float | None = None   # what is left of it
    tail_s: float = 0.0               # of which after its last step (final gates / evaluation)
    actual_s: float | None = None
    t0: float | None = None

    @property
    def label(self) -> str:
        return f"{self.kind} {self.index}/{self.count}"


@dataclass
class RunPlan:
    run_dir: str
    parts: list[Part]
    timing: Timing | None
    note: str = ""                    # why there is no estimate, when there is none
    jobs: int = 1                     # probes run at once (their remaining time is shared out)
    running: list[Part] = field(default_factory=list)

    # --- building -----------------------------------------------------------------------------------
    @classmethod
    def build(cls, ctx, *, timing: Timing | None | bool = True, jobs: int = 1) -> RunPlan:
        """The plan of ``ctx``'s recipe in its run directory; ``timing=True`` measures one (:func:`measure`),
        a :class:`Timing` is used as it is, None/False gives no estimates. Reads the run directory, writes nothing."""
        note = ""
        parts = stage_parts(ctx) + probe_parts(ctx)
        if timing is True:   # nothing left to do: nothing to time
            timing, note = measure(ctx.recipe) if any(p.status != "done" for p in parts) else (None, "all done")
        plan = cls(run_dir=str(ctx.run_dir), parts=parts, timing=timing or None, note=note, jobs=max(1, jobs))
        if plan.timing is not None:
            for p in parts:
                p.estimate_s, p.tail_s = estimate(ctx.recipe, p, plan.timing)
        return plan

    # --- during the run -----------------------------------------------------------------------------
    def find(self, kind: str, name: str) -> Part:
        """The part named ``name``; a probe whose id the plan guessed differently (a stage the stop rule
        ended early) takes the place of the next probe not yet begun."""
        for p in self.parts:
            if p.kind == kind and p.name == name:
                return p
        for p in self.parts:
            if p.kind == kind and p.t0 is None and p.actual_s is None:
                p.name = name
                return p
        raise KeyError(f"{kind} {name} is not in the plan")

    @contextmanager
    def part(self, kind: str, name: str):
        """The lines printed inside say which part they belong to; its time is recorded when it ran."""
        p = self.started(kind, name)
        progress.set_part(p.label)
        try:
            yield p
        finally:
            self.finished(p)
            progress.set_part(self.running[-1].label if self.running else None)

    def started(self, kind: str, name: str) -> Part:
        """Part ``name`` begins now (in this process, or in a worker this process waits for)."""
        p = self.find(kind, name)
        p.t0 = time.monotonic()
        self.running.append(p)
        return p

    def finished(self, p: Part) -> None:
        """Part ``p`` has ended: its time, unless it was skipped as done, scales the estimates of the rest."""
        if p.status != "done":
            p.actual_s = time.monotonic() - p.t0
        if p in self.running:
            self.running.remove(p)

    def install(self) -> None:
        """Every terminal line ends with this plan's run ETA."""
        progress.set_run_eta(self.eta)

    def uninstall(self) -> None:
        progress.set_run_eta(None)
        progress.set_part(None)

    def worker_context(self, kind: str, name: str) -> dict:
        """What a worker process running this part passes to ``progress.enter_worker``: its label and the
        run's expected end (wall clock)."""
        p = self.find(kind, name)
        eta = self.eta()
        return {"part": p.label, "deadline": None if eta is None else time.time() + eta}

    def factor(self, kind: str) -> float:
        """Actual / estimated time of the parts of this kind run so far in this invocation, raised while the
        part in progress runs over its own estimate. Before any part of the kind has run: the other kind's
        ratio, bounded to [0.5, 2] (the machine's speed carries over, the parts' fixed costs do not)."""
        own = [p for p in self.parts if p.actual_s is not None and p.estimate_s and p.kind == kind]
        if own:
            f = sum(p.actual_s for p in own) / sum(p.estimate_s for p in own)
        else:
            other = [p for p in self.parts if p.actual_s is not None and p.estimate_s]
            f = min(2.0, max(0.5, sum(p.actual_s for p in other) / sum(p.estimate_s for p in other))) if other else 1.0
        for p in self.running:
            if p.kind == kind and p.estimate_s:
                f = max(f, (time.monotonic() - p.t0) / p.estimate_s)
        return f

    def remaining(self, p: Part) -> float:
        """Seconds left of part ``p`` (call only with estimates)."""
        if p.status == "done" or p.actual_s is not None:
            return 0.0
        f = self.factor(p.kind)
        if p.t0 is None:
            return p.estimate_s * f
        bar = progress.current_bar()
        rate = bar.rate() if bar is not None and self.running and p is self.running[-1] else None
        if rate:
            return (bar.total - bar.n) / rate + p.tail_s * f
        return max(0.0, p.estimate_s * f - (time.monotonic() - p.t0))

    def eta(self) -> float | None:
        """Seconds left in the whole run (None without estimates)."""
        if self.timing is None:
            return None
        stages = sum(self.remaining(p) for p in self.parts if p.kind == "stage")
        probes = [self.remaining(p) for p in self.parts if p.kind == "probe"]
        left = [r for r in probes if r > 0]
        return stages + (sum(left) / min(self.jobs, len(left)) if left else 0.0)

    # --- saying it ----------------------------------------------------------------------------------
    def describe(self) -> str:
        """The plan as lines: each part, its status, budget and estimated time, and the total."""
        lines = []
        for p in self.parts:
            status = {"done": "skip (already done)", "resume": f"resume from step {p.start_step}",
                      "run": "run"}[p.status]
            est = "" if p.estimate_s is None or p.status == "done" else f", estimate {progress.duration(p.estimate_s)}"
            lines.append(f"  {p.label} {p.name}: {status}; {p.budget}{est}")
        total = self.eta()
        if all(p.status == "done" for p in self.parts):
            lines.append("  nothing left to train: every stage and probe is done")
        elif total is not None:
            lines.append(f"  estimated time: {progress.duration(total)} (from a {self.timing.measured_s:.1f} s "
                         "timing of the recipe's model with random weights; generation at the full length limit, "
                         "so an upper bound where answers stop early)")
        else:
            lines.append(f"  estimated time: unknown ({self.note or 'not measured'})")
        return "\n".join(lines)


# --- parts ------------------------------------------------------------------------------------------
def stage_parts(ctx) -> list[Part]:
    from octo.config import stage_order
    from octo.cpt.checkpoint import latest_good_checkpoint
    from octo.cpt.trainer import stage_steps

    recipe = ctx.recipe
    order = stage_order(recipe)
    parts = []
    for i, stage in enumerate(order, 1):
        steps = stage_steps(ctx, stage)
        done = ctx.stage_done(stage)
        if done is not None:
            status, start, steps = "done", done["step"], done["step"]
        else:
            resume = latest_good_checkpoint(ctx.stage_dir(stage) / "checkpoints", log=lambda _m: None)
            status, start = ("resume", resume[0]) if resume else ("run", 0)
        tokens = recipe.cpt.stages[stage].tokens
        parts.append(Part("stage", stage, i, len(order), steps, start, status,
                          f"{steps} steps x {recipe.cpt.batch_tokens} tokens ({tokens:,} tokens)"))
    return parts


def probe_ids(ctx) -> list[str]:
    """The probes' ids as ``octo.pipeline.probe_specs`` makes them; a stage not yet finished is assumed to
    reach its final step."""
    from pathlib import Path

    from octo.cpt.trainer import stage_steps
    from octo.probe.grpo import ProbeSpec
    from octo.runio import checkpoint_id

    cfg = ctx.recipe.probe
    ids = []
    for stage in cfg.checkpoints:
        done = ctx.stage_done(stage)
        step = done["step"] if done else stage_steps(ctx, stage)
        base = {"checkpoint": Path(), "checkpoint_id": checkpoint_id(stage, step)}
        for i, seed in enumerate(cfg.seeds):
            ids.append(ProbeSpec(seed=seed, control=None, seed_suffix=i > 0, **base).probe_id)
        if cfg.control != "none":
            ids.append(ProbeSpec(seed=cfg.seeds[0], control=cfg.control, **base).probe_id)
    return ids


def probe_parts(ctx) -> list[Part]:
    from octo.probe.checkpoints import latest_probe_checkpoint
    from octo.probe.length import LengthSchedule
    from octo.runio import CHECKPOINTS_DIR, PROBES_DIR, STAGE_DONE_FILE

    cfg = ctx.recipe.probe
    ids = probe_ids(ctx)
    longest = LengthSchedule(cfg.max_len).maximum
    parts = []
    for i, pid in enumerate(ids, 1):
        pdir = ctx.run_dir / PROBES_DIR / pid
        if (pdir / STAGE_DONE_FILE).exists():
            status, start = "done", cfg.steps
        else:
            resume = latest_probe_checkpoint(pdir / CHECKPOINTS_DIR) if pdir.is_dir() else None
            status, start = ("resume", resume[0]) if resume else ("run", 0)
        parts.append(Part("probe", pid, i, len(ids), cfg.steps, start, status,
                          f"{cfg.steps} steps x {cfg.prompts_per_step} prompts x {cfg.num_generations} generations, "
                          f"max length {longest}"))
    return parts


# --- estimates --------------------------------------------------------------------------------------
def estimate(recipe, p: Part, t: Timing) -> tuple[float, float]:
    """(seconds left of part ``p``, of which after its last step) from timing ``t``."""
    if p.status == "done":
        return 0.0, 0.0
    return (_stage_estimate if p.kind == "stage" else _probe_estimate)(recipe, p, t)


def _gates_s(recipe, stage: str, t: Timing) -> float:
    """One gate evaluation: perplexity over the held-out documents of the stage's sources (forward only) and
    greedy answers to the gate problems."""
    g, cpt = recipe.cpt.gates, recipe.cpt
    sources = len(cpt.stages[stage].mixture)
    return t.forward(g.heldout_docs * sources * cpt.seq_len) + t.generate(g.problems, g.max_new_tokens)


def _stage_estimate(recipe, p: Part, t: Timing) -> tuple[float, float]:
    cpt = recipe.cpt
    scfg = cpt.stages[p.name]
    gate = _gates_s(recipe, p.name, t)
    every = cpt.gates.eval_every
    gates = 1                                                   # the final checkpoint's
    if p.start_step == 0 and scfg.init in ("random", "model"):
        gates += 1                                              # step 0
    if every:
        gates += len([s for s in range(every, p.steps, every) if s > p.start_step])
    train = t.train((p.steps - p.start_step) * cpt.batch_tokens)
    return train + gates * gate, gate


def _probe_estimate(recipe, p: Part, t: Timing) -> tuple[float, float]:
    from octo.probe.length import LengthSchedule

    cfg = recipe.probe
    sched = LengthSchedule(cfg.max_len)
    longest = sched.maximum
    evaluation = t.generate(cfg.eval_problems * (1 + cfg.eval_samples), longest)
    pre = 0.0
    if p.start_step == 0:
        start_pass = t.generate(cfg.start_samples * (cfg.start_heldout_problems + cfg.start_prompt_problems),
                                cfg.start_limit(longest))
        pre = start_pass + evaluation
    n = cfg.per_step
    steps = 0.0
    evals = 0
    for s in range(p.start_step, cfg.steps):
        limit = _limit_at(sched, s)
        steps += t.generate(n, limit) + t.train(n * (PROMPT_TOKENS + limit))
        if cfg.evaluates_at(s + 1):
            evals += 1
    return pre + steps + evals * evaluation, evaluation


def _limit_at(sched, step: int) -> int:
    """The length limit of ``step`` (the schedule's maximum where it adapts to the run's clip ratios)."""
    return sched.maximum if sched.cfg.kind == "adaptive" else sched.limit(step)


def measure(recipe) -> tuple[Timing | None, str]:
    """Time two training micro-steps and one short batched decode of the recipe's model (random weights,
    built from its config); returns (timing, '') or (None, why not)."""
    try:
        return _measure(recipe), ""
    except _TooLarge as err:
        return None, str(err)
    except Exception as err:  # noqa: BLE001 - a model the run itself will report on (a bad model.init path)
        return None, f"the model could not be timed: {type(err).__name__}"


class _TooLarge(Exception):
    pass


def _model_config(recipe):
    from transformers import AutoConfig, LlamaConfig

    m = recipe.model
    if m.init == "toy":
        vocab = (recipe.world.vocab_size if recipe.world else 32000) + 2        # + EOS, PAD
        vocab = (vocab + 63) // 64 * 64
        return LlamaConfig(vocab_size=vocab, hidden_size=m.hidden_size, intermediate_size=m.intermediate_size,
                           num_hidden_layers=m.num_layers, num_attention_heads=m.num_heads,
                           num_key_value_heads=m.num_kv_heads, head_dim=m.hidden_size // m.num_heads,
                           max_position_embeddings=m.max_position, tie_word_embeddings=False)
    from octo.assets import resolve

    return AutoConfig.from_pretrained(str(resolve(m.init)))


def _approx_params(config) -> int:
    """Parameters of a Llama-shaped decoder: embeddings and head, attention and MLP per layer."""
    h = config.hidden_size
    inter = getattr(config, "intermediate_size", 4 * h)
    return int(2 * config.vocab_size * h + config.num_hidden_layers * (4 * h * h + 3 * h * inter))


def _measure(recipe) -> Timing:
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM

    from octo.cpt.trainer import set_threads
    from octo.rollout.hf import cache_kwargs

    t_start = time.perf_counter()
    progress.quiet_libraries()
    config = _model_config(recipe)
    n_params = _approx_params(config)
    if n_params > MAX_TIMED_PARAMS:
        raise _TooLarge(f"a {n_params / 1e9:.1f}B-parameter model is not timed on start")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    set_threads(recipe.cpt.threads)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config, attn_implementation=recipe.model.attn_implementation,
                                                 dtype=torch.float32).to(device)
        vocab = config.vocab_size
        cpt = recipe.cpt
        rows = max(1, min(cpt.micro_batch_size, MAX_TIMED_TOKENS // cpt.seq_len))   # a bounded micro-batch
        ids = torch.randint(0, vocab, (rows, cpt.seq_len)).to(device)   # the CPU generator: forked above
        times = []
        for _ in range(2):                       # the first micro-step pays for allocation and kernel choice
            t0 = time.perf_counter()
            logits = model(input_ids=ids, use_cache=False).logits
            F.cross_entropy(logits[:, :-1].reshape(-1, vocab).float(), ids[:, 1:].reshape(-1)).backward()
            model.zero_grad(set_to_none=True)
            times.append(time.perf_counter() - t0)
        batch = max(1, min(recipe.probe.per_step, recipe.probe.rollout.batch_size))
        model.eval()
        with torch.inference_mode():
            prompt = torch.randint(0, vocab, (batch, PROMPT_TOKENS)).to(device)
            out = model(input_ids=prompt, use_cache=True)
            tok = out.logits[:, -1].argmax(-1)
            t0 = time.perf_counter()
            for _ in range(DECODE_STEPS):
                out = model(input_ids=tok[:, None], use_cache=True, **cache_kwargs(model, out))
                tok = out.logits[:, -1].argmax(-1)
            decode = time.perf_counter() - t0
    return Timing(train_token_s=min(times) / ids.numel(), decode_token_s=decode / (DECODE_STEPS * batch),
                  batch=batch, measured_s=time.perf_counter() - t_start)


def dry_run(recipe) -> str:
    """What ``octo run --dry-run`` prints: the run directory and the plan. Writes nothing; a run directory made
    by a different recipe is refused here as the run would refuse it."""
    from octo.context import RunContext
    from octo.reuse import check_run_dir

    ctx = RunContext(recipe)
    run_dir = ctx.run_dir.resolve()
    if run_dir.exists():
        check_run_dir(recipe, write=False)
        where = "exists: finished parts are skipped, interrupted ones resume"
    else:
        where = "new"
    plan = RunPlan.build(ctx, jobs=recipe.probe.jobs)
    return (f"octo run {recipe.name} (dry run: nothing is written)\n  run directory: {run_dir} ({where})\n"
            f"{plan.describe()}\n  then: scores.json and the report in {run_dir / 'report'}\n")
