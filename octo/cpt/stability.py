"""The stability parts of a stage: the spike guard (seed 002) and the replay KL term (seed 001 §5.3).

A step whose gradient norm exceeds mu + k * sigma over the previous ``cpt.spike.window`` accepted
steps is a spike. ``spike.action``: ``log`` flags the row; ``skip`` drops the update (the step's data
is consumed); ``rollback`` reloads weights, optimizer and RNG of the last good checkpoint and goes on
with the data after the spike (seed 001 §5.4: "roll back to the most recent stable checkpoint"). A
non-finite step is never applied.

The KL term: ``L_total = L_CPT + beta E_replay[KL(p_theta0(.|x) || p_theta(.|x))]`` on the tokens of the
replay sources ``cpt.kl.sources``, theta0 being the stage's starting weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from octo.config import SpikeConfig
from octo.errors import OctoError


@dataclass(frozen=True)
class Verdict:
    """What the guard says about one step: ``action`` is ``step`` (apply), ``skip`` or ``rollback`` (to ``target``,
    a (step, checkpoint directory) pair)."""

    action: str
    spike: bool
    finite: bool
    threshold: float | None
    target: tuple[int, Path] | None = None


class SpikeGuard:
    """The gradient norms of the last accepted steps and the rollbacks so far (both saved in every checkpoint)."""

    def __init__(self, cfg: SpikeConfig, stage: str, *, norms: list[float] = (), rollbacks: int = 0):
        self.cfg, self.stage = cfg, stage
        self.norms = [float(x) for x in norms]
        self.rollbacks = int(rollbacks)

    def judge(self, grad_norm: float, loss: float, step: int,
              last_good: Callable[[], tuple[int, Path] | None]) -> Verdict:
        """The verdict on optimizer step ``step`` (1-based); ``last_good`` finds the checkpoint a rollback goes to."""
        cfg = self.cfg
        recent = self.norms[-cfg.window:]
        spike, threshold = False, None
        if len(recent) == cfg.window:
            mu = sum(recent) / cfg.window
            sd = math.sqrt(sum((x - mu) ** 2 for x in recent) / cfg.window)
            threshold = mu + cfg.k * max(sd, 1e-12)
            spike = grad_norm > threshold
        finite = math.isfinite(grad_norm) and math.isfinite(loss)
        action = "step"
        if not finite:  # never applied, whatever spike.action says
            action = "rollback" if cfg.action == "rollback" else "skip"
        elif spike:
            action = {"log": "step", "skip": "skip", "rollback": "rollback"}[cfg.action]
        target = None
        if action == "rollback":
            target = last_good()
            if target is None:
                action = "skip"
            elif self.rollbacks >= cfg.max_rollbacks:
                raise OctoError(f"stage {self.stage}: gradient-norm spike at step {step} after {self.rollbacks} "
                                "rollbacks (cpt.spike.max_rollbacks); lower the LR or clean the data, or raise "
                                "max_rollbacks, then rerun to resume from the last checkpoint")
        return Verdict(action, spike, finite, threshold, target)

    def accepted(self, grad_norm: float) -> None:
        self.norms.append(grad_norm)

    def rolled_back(self, norms: list[float]) -> None:
        """The window of the checkpoint rolled back to replaces the current one."""
        self.norms = [float(x) for x in norms]
        self.rollbacks += 1

    def state(self) -> dict:
        return {"norms": self.norms[-self.cfg.window:], "rollbacks": self.rollbacks}

    def message(self, step: int, grad_norm: float, v: Verdict) -> str:
        """One log line for a spike or a non-finite step and what was done about it."""
        what = (f"non-finite loss or gradient norm ({grad_norm:.4g})" if not v.finite else
                f"gradient-norm spike {grad_norm:.4g} > mu + k sigma = {v.threshold:.4g}")
        if v.action == "step":
            done = "update applied (cpt.spike.action: log)"
        elif v.action == "skip":
            done = "update skipped" + (" (no checkpoint to roll back to yet)" if self.cfg.action == "rollback" else "")
        else:
            done = (f"rolled back to checkpoint step-{v.target[0]} (weights, optimizer, RNG; rollback "
                    f"{self.rollbacks}/{self.cfg.max_rollbacks}); the data of steps {v.target[0] + 1}-{step} is not "
                    "replayed")
        return f"stage {self.stage} step {step}: {what}; {done}"


class ReplayKL:
    """The frozen reference model theta0 and the replay sources' indices in the packer's per-token source ids."""

    def __init__(self, coef: float, reference, source_names: list[str], replay: list[str]):
        import torch

        self.coef = coef
        self.reference = reference
        self.replay = torch.tensor([i for i, n in enumerate(source_names) if n in replay], dtype=torch.long)

    @classmethod
    def for_stage(cls, ctx, stage: str, start_model, packer) -> ReplayKL:
        """A frozen copy of ``start_model``; a resumed stage (``start_model`` None) rebuilds theta0 from the stage's
        init, seeded and independent of the global RNG. The packer must track sources (``track_sources``)."""
        import copy

        import torch

        from octo.cpt.state import init_model

        if start_model is not None:
            ref = copy.deepcopy(start_model)
        else:
            with torch.random.fork_rng(devices=[]):
                ref = init_model(ctx, stage)[0]
        ref.eval()
        ref.config.use_cache = False
        ref.requires_grad_(False)
        return cls(ctx.recipe.cpt.kl.coef, ref, packer.source_names, ctx.recipe.cpt.kl.sources)

    def mask(self, batches: list[dict]) -> int:
        """Mark the scored replay tokens of every micro-batch (``kl_mask``); returns their count over the step."""
        import torch

        for b in batches:
            b["kl_mask"] = (b["labels"][:, 1:] != -100) & torch.isin(b.pop("source_ids")[:, 1:], self.replay)
        return int(sum(b["kl_mask"].sum() for b in batches))

    def __call__(self, logits, batch):
        """Sum over the masked positions of KL(p_theta0 || p_theta) of the next-token distributions."""
        import torch
        import torch.nn.functional as F

        from octo.data.packing import packed_logits

        mask = batch["kl_mask"]
        if not bool(mask.any()):
            return logits.sum() * 0.0
        with torch.no_grad():
            ref_logits = packed_logits(self.reference, batch["input_ids"], batch["position_ids"])
        logp = F.log_softmax(logits[:, :-1][mask].float(), dim=-1)
        logq = F.log_softmax(ref_logits[:, :-1][mask].float(), dim=-1)
        return (logq.exp() * (logq - logp)).sum()
