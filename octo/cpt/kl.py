"""The KL term of a stage (seed 001 §5.3): ``L_total = L_CPT + beta E_replay[KL(p_theta0(.|x) || p_theta(.|x))]``
on the tokens of the replay sources ``cpt.kl.sources``, theta0 being the stage's starting weights."""

from __future__ import annotations


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
