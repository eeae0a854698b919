"""The probe's generation: one rollout backend, the max-length schedule, held-out evaluation.

:class:`ProbeRollouts` is TRL's ``rollout_func``. It is the only way to change the generation limit
from step to step (setting TRL's ``max_completion_length`` mid-run does nothing), so the schedule
(octo.probe.length) really bounds every rollout. The same backend answers the held-out evaluations.
"""

from __future__ import annotations

import time

from octo.config import ProbeConfig
from octo.probe.length import LengthSchedule


class ProbeRollouts:
    """Owns the rollout backend (built on first use, pushed the trainer's weights after every optimizer step)
    and the length schedule; records what the latest rollout took (``max_len``, ``time_rollout``, ``time_sync``).

    ``clip_history`` is the clip ratio of every logged step so far (the adaptive schedule reads it; the
    metrics callback appends to it); ``synced_step`` is the step whose weights the backend holds; ``trainer``
    (set once the trainer exists) lets a held-out evaluation push the weights of the step it evaluates.

    In a LoRA probe ``model`` is the base model peft injected the adapters into: generating with it
    samples the adapted policy, and a weight sync merges them (octo.rollout.weights).
    """

    def __init__(self, cfg: ProbeConfig, *, tokenizer, model, model_path: str, seed: int, synced_step: int,
                 clip_history: list[float | None]):
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.model = model
        self.model_path = model_path
        self.seed = seed
        self.schedule = LengthSchedule(cfg.max_len)
        self.clip_history = clip_history
        self.synced_step = synced_step
        self.max_len = 0
        self.time_rollout = self.time_sync = 0.0
        self.trainer = None
        self._backend = None

    @property
    def backend(self):
        if self._backend is None:
            from octo.rollout import make_backend

            self._backend = make_backend(self.cfg.rollout, tokenizer=self.tokenizer, model=self.model,
                                         model_path=self.model_path)
        return self._backend

    def __call__(self, prompts: list[str], trainer) -> dict:
        """TRL's ``rollout_func``: completions of ``prompts`` under this step's length limit."""
        step = trainer.state.global_step
        t0 = time.perf_counter()
        self._sync(trainer)
        self.time_sync = time.perf_counter() - t0
        self.max_len = self.schedule.limit(step, self.clip_history)
        t0 = time.perf_counter()
        # TRL hands each prompt num_generations times in a row; generate n per distinct prompt
        n = self.cfg.num_generations
        ids = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts[::n]]
        with _eval_mode(trainer.model):
            groups = self.backend.generate(ids, n=n, max_tokens=self.max_len, temperature=self.cfg.temperature,
                                           seed=self.seed * 1_000_003 + step)
        self.time_rollout = time.perf_counter() - t0
        out = {"prompt_ids": [], "completion_ids": [], "logprobs": [], "finish_reason": [],
               "max_len": self.max_len}   # a column for the reward's overlong component
        for p_ids, group in zip(ids, groups):
            for c in group:
                out["prompt_ids"].append(p_ids)
                out["completion_ids"].append(c.token_ids)
                out["logprobs"].append(c.logprobs)
                out["finish_reason"].append(c.finish_reason)
        return out

    def _sync(self, trainer) -> None:
        """Push the trainer's weights to the backend unless it holds this step's already."""
        step = trainer.state.global_step
        if self.synced_step == step:
            return
        model = trainer.accelerator.unwrap_model(trainer.model)
        # a PeftModel's base model is the object the backend was made with (adapters injected in place)
        self.backend.update_weights(model.get_base_model() if hasattr(model, "get_base_model") else model, step=step)
        self.synced_step = step

    def evaluate(self, problems: list[dict], *, verifier, pool) -> dict:
        """Held-out accuracy (greedy, and sampled with pass@k when ``eval_samples``) of the live model.

        Every evaluation uses the schedule's largest limit, so the learning curve does not jump when a
        stair raises the training limit."""
        from octo.accuracy import evaluate_problems

        cfg = self.cfg
        if self.trainer is not None:   # called after an optimizer step, before the next rollout syncs
            self._sync(self.trainer)
        with _eval_mode(self.model):
            res = evaluate_problems(self.backend, self.tokenizer, problems, template=cfg.prompt_template,
                                    max_new_tokens=self.schedule.maximum, verifier=verifier, pool=pool,
                                    k=cfg.eval_samples, temperature=cfg.temperature, seed=self.seed * 7 + 12345)
        res.pop("_greedy")
        return {"max_len": self.schedule.maximum, **res}

    def start_pass(self, *, heldout: list[dict], prompts: list[dict], pool) -> list[dict]:
        """The step-0 sampling pass (``start_samples`` per problem at the probe temperature, at ``start_max_len`` or
        else the schedule's largest limit): start.jsonl rows, none when ``start_samples`` is 0."""
        from octo.accuracy import start_pass

        cfg = self.cfg
        if cfg.start_samples <= 0:
            return []
        with _eval_mode(self.model):
            return start_pass(self.backend, self.tokenizer, heldout=heldout, prompts=prompts,
                              template=cfg.prompt_template, max_new_tokens=cfg.start_limit(self.schedule.maximum),
                              pool=pool, samples=cfg.start_samples, heldout_problems=cfg.start_heldout_problems,
                              prompt_problems=cfg.start_prompt_problems, temperature=cfg.temperature,
                              seed=self.seed * 7 + 54321)

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()


class _eval_mode:
    """Generation runs in eval mode (no dropout); the model goes back to training mode after it if it was in it."""

    def __init__(self, model):
        self.model, self.was_training = model, model.training

    def __enter__(self):
        self.model.eval()

    def __exit__(self, *exc) -> None:
        if self.was_training:
            self.model.train()
