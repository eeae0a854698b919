"""Cheap CPT gates on a checkpoint (seeds 000-002): perplexity per source and held-out accuracy.

- ``ppl/<source>``: exp of the mean next-token loss over held-out documents, each packed but scored
  as if alone (position ids restart; a document's first token is not scored); ``ppl/general``: exp of
  the mean over sources of their mean loss, the stability gap's M_g.
- ``acc/toy``: greedy held-out accuracy by the octo verifier, with a 95% bootstrap CI, per level.

Behaviour and safety (seed 001, E_behavior and E_safety), each a rate with its count ``<name>/n``:
``format_rate`` (exactly one ``\\boxed{}``), ``template_rate`` (the ``<think>`` block closed once,
the box after it), ``if_adherence`` (the greedy response to an ``IF`` document equals its response
after whitespace normalisation) and ``refusal_rate`` (any ``cpt.gates.refusal_patterns`` match on the
``cpt.gates.safety`` slice).
"""

from __future__ import annotations

import math
import re

from octo.context import RunContext


def document_nll(model, docs: list[list[int]], *, seq_len: int, pad_id: int) -> tuple[float, int]:
    """Summed next-token NLL and target count of ``docs``, packed whole into isolated rows."""
    import torch
    import torch.nn.functional as F

    from octo.data.packing import IGNORE, pack_whole_documents, packed_logits

    total, count = 0.0, 0
    with torch.no_grad():
        for batch in pack_whole_documents(docs, seq_len=seq_len, pad_id=pad_id):
            logits = packed_logits(model, batch["input_ids"], batch["position_ids"])
            labels = batch["labels"][:, 1:]
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)).float(), labels.reshape(-1),
                                   ignore_index=IGNORE, reduction="sum")
            total += loss.item()
            count += int((labels != IGNORE).sum())
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
        from octo.analysis.stats import mean_ci
        from octo.accuracy import evaluate_problems, select_problems
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
        acc = f"acc/{gcfg.benchmark}"  # cpt.gates.benchmark: acc/toy, acc/gsm8k, ...
        row[acc] = res["acc"]
        row[f"{acc}/n"] = res["n"]
        row[f"{acc}/ci"] = mean_ci(per, seed=recipe.seed)
        for lv in sorted(set(res["per_problem/level"])):
            vals = [c for c, level in zip(per, res["per_problem/level"]) if level == lv]
            row[f"{acc}/level-{lv}"] = sum(vals) / len(vals)
        row["format_rate"] = res["format_rate"]
        if "<think>" in recipe.probe.prompt_template:  # a prompt without a think block has no template to keep
            row["template_rate"] = template_rate([c.text for c in res["_greedy"][0]])
        row["len/mean"] = res["len/mean"]
    row.update(behaviour_gates(ctx, model))
    if was_training:
        model.train()
    return row


def template_rate(completions: list[str]) -> float | None:
    """Share of completions that close the prompt's ``<think>`` once and box the answer after it."""
    if not completions:
        return None
    ok = 0
    for text in completions:
        if text.count("</think>") == 1:
            ok += int("\\boxed{" in text.split("</think>", 1)[1])
    return ok / len(completions)


def _norm(text: str) -> str:
    return " ".join(text.split())


def if_matches(response: str, reference: str) -> bool:
    """The response up to its first blank line equals the reference, whitespace-normalised."""
    return _norm(response.split("\n\n", 1)[0]) == _norm(reference)


def is_refusal(response: str, patterns: list[str]) -> bool:
    return any(re.search(p, response, flags=re.IGNORECASE) for p in patterns)


def load_safety_prompts(path: str) -> list[str]:
    """The ``prompt`` of every row of the safety slice (a JSONL file); one clear error otherwise."""
    from pathlib import Path

    from octo.errors import OctoError
    from octo.runio import user_jsonl

    p = Path(path).expanduser()
    if not p.exists():
        raise OctoError(f"safety slice {p} does not exist; fix cpt.gates.safety or set it to ''")
    prompts = []
    for i, row in user_jsonl(p):
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
            raise OctoError(f"safety slice {p} line {i} needs a non-empty 'prompt' string")
        prompts.append(row["prompt"])
    if not prompts:
        raise OctoError(f"safety slice {p} holds no prompts")
    return prompts


def behaviour_gates(ctx: RunContext, model) -> dict:
    """``if_adherence`` and ``refusal_rate`` (with counts) by greedy decoding; see the module docstring."""
    from octo.rollout import make_backend
    from octo.rollout.config import RolloutConfig

    recipe = ctx.recipe
    gcfg = recipe.cpt.gates
    tok = ctx.tokenizer
    out: dict = {}
    backend = None

    def generate(prompts: list[list[int]], max_tokens: int) -> list[str]:
        nonlocal backend
        if backend is None:
            backend = make_backend(RolloutConfig(backend="hf", batch_size=recipe.probe.rollout.batch_size),
                                   tokenizer=tok, model=model)
        groups = backend.generate(prompts, n=1, max_tokens=max_tokens, temperature=0.0, seed=recipe.seed)
        return [g[0].text for g in groups]

    if gcfg.if_items > 0:
        items = []
        for name, src in recipe.data.sources.items():
            if src.template == "IF":
                items += ctx.source(name).heldout
        items = items[: gcfg.if_items]
        if items:
            refs = [tok.decode(d.ids[d.n_prompt:-1], skip_special_tokens=True) for d in items]
            longest = max(len(d.ids) - d.n_prompt for d in items)
            texts = generate([d.ids[: d.n_prompt] for d in items], max(8, longest + 4))
            out["if_adherence"] = sum(if_matches(t, r) for t, r in zip(texts, refs)) / len(items)
            out["if_adherence/n"] = len(items)
    if gcfg.safety:
        prompts = load_safety_prompts(gcfg.safety)
        ids = [tok(f"User:{p}\nAssistant:", add_special_tokens=False)["input_ids"] for p in prompts]
        texts = generate(ids, gcfg.max_new_tokens)
        out["refusal_rate"] = sum(is_refusal(t, gcfg.refusal_patterns) for t in texts) / len(texts)
        out["refusal_rate/n"] = len(texts)
    return out
