"""Cheap CPT gates on a checkpoint (seeds 000-002): perplexity per source and held-out accuracy.

- ``ppl/<source>``: exp of the mean next-token loss over held-out documents of the source,
  computed on packed, isolated documents (position ids restart per document, so each
  document is scored exactly as if alone); the first token of a document is not scored.
- ``ppl/general``: exp of the mean over sources of their mean loss (every source weighted
  equally), the "general metric" M_g of the stability gap.
- ``acc/toy``: greedy accuracy on held-out problems with the octo verifier, with a 95%
  bootstrap CI, per difficulty level, the share of answers in exactly one ``\\boxed{}`` and the
  mean answer length.
"""

from __future__ import annotations

import math

from octo.context import RunContext


def document_nll(model, docs: list[list[int]], *, seq_len: int, pad_id: int) -> tuple[float, int]:
    """Summed next-token NLL and target count of ``docs``, packed into isolated rows."""
    import torch
    import torch.nn.functional as F

    from octo.data.packing import packed_logits

    rows: list[list[tuple[list[int], int]]] = []
    cur: list = []
    used = 0
    for d in docs:
        d = d[:seq_len]
        if used + len(d) > seq_len and cur:
            rows.append(cur)
            cur, used = [], 0
        cur.append(d)
        used += len(d)
    if cur:
        rows.append(cur)
    total, count = 0.0, 0
    batch = 16
    with torch.no_grad():
        for i in range(0, len(rows), batch):
            chunk = rows[i:i + batch]
            width = max(sum(len(d) for d in r) for r in chunk)
            ids, pos, lab = [], [], []
            for r in chunk:
                a, b, c = [], [], []
                for d in r:
                    a += d
                    b += list(range(len(d)))
                    c += [-100] + d[1:]
                pad = width - len(a)
                ids.append(a + [pad_id] * pad)
                pos.append(b + list(range(pad)))
                lab.append(c + [-100] * pad)
            ids_t = torch.tensor(ids)
            logits = packed_logits(model, ids_t, torch.tensor(pos))
            lab_t = torch.tensor(lab)[:, 1:]
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)).float(), lab_t.reshape(-1),
                                   ignore_index=-100, reduction="sum")
            total += loss.item()
            count += int((lab_t != -100).sum())
    return total, count


def evaluate_gates(ctx: RunContext, model) -> dict:
    recipe = ctx.recipe
    gcfg = recipe.cpt.gates
    was_training = model.training
    model.eval()
    row: dict = {}
    losses = []
    for name in recipe.data.sources:
        held = [d.ids for d in ctx.source(name).heldout[: gcfg.heldout_docs]]
        if not held:
            continue
        nll, n = document_nll(model, held, seq_len=recipe.cpt.seq_len, pad_id=ctx.tokenizer.pad_token_id)
        mean_loss = nll / max(1, n)
        losses.append(mean_loss)
        row[f"ppl/{name}"] = math.exp(min(mean_loss, 50.0))
    row["ppl/general"] = math.exp(min(sum(losses) / len(losses), 50.0)) if losses else None
    if gcfg.problems > 0:
        from octo.evaluate import bootstrap_ci, evaluate_problems, select_problems
        from octo.rollout import make_backend
        from octo.rollout.config import RolloutConfig
        from octo.verifiers import shared_pool

        problems = select_problems(ctx.problems(recipe.data.heldout), gcfg.problems)
        backend = make_backend(RolloutConfig(backend="hf", batch_size=recipe.probe.rollout.batch_size),
                               tokenizer=ctx.tokenizer, model=model)
        res = evaluate_problems(backend, ctx.tokenizer, problems, template=recipe.probe.prompt_template,
                                max_new_tokens=gcfg.max_new_tokens, verifier=recipe.verifier,
                                pool=shared_pool(recipe.verifier), seed=recipe.seed)
        per = res["per_problem/greedy"]
        row["acc/toy"] = res["acc"]
        row["acc/toy/n"] = res["n"]
        row["acc/toy/ci"] = bootstrap_ci(per, seed=recipe.seed)
        for lv in sorted(set(res["per_problem/level"])):
            vals = [c for c, level in zip(per, res["per_problem/level"]) if level == lv]
            row[f"acc/toy/level-{lv}"] = sum(vals) / len(vals)
        row["format_rate"] = res["format_rate"]
        row["len/mean"] = res["len/mean"]
    if was_training:
        model.train()
    return row
