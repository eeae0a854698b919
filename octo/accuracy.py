"""Held-out accuracy of a model on problems, shared by the CPT gates and the probes' evaluations.

Greedy accuracy (temperature 0, one completion per problem) and, when ``k > 0``, sampled
accuracy and pass@k from ``k`` samples per problem at the probe temperature. Generation
goes through an octo rollout backend (the embedded ``hf`` one by default); answers are
checked by ``octo.verifiers``. Per-problem vectors are kept so that analysis can bootstrap
confidence intervals over problems.
"""

from __future__ import annotations

from statistics import mean


def select_problems(problems: list[dict], n: int) -> list[dict]:
    """A deterministic subset of ``n`` problems with every difficulty level equally represented."""
    if n >= len(problems):
        return list(problems)
    by_level: dict[int, list[dict]] = {}
    for p in problems:
        by_level.setdefault(p.get("level", 0), []).append(p)
    levels = sorted(by_level)
    out: list[dict] = []
    i = 0
    while len(out) < n:
        for lv in levels:
            if i < len(by_level[lv]) and len(out) < n:
                out.append(by_level[lv][i])
        i += 1
    return out


def _mean(xs) -> float | None:
    xs = list(xs)
    return mean(xs) if xs else None


def evaluate_problems(backend, tokenizer, problems: list[dict], *, template: str, max_new_tokens: int,
                      verifier, pool, k: int = 0, temperature: float = 1.0, seed: int = 0) -> dict:
    """Greedy (and, if k > 0, sampled) accuracy of ``backend`` on ``problems``."""
    from octo.verifiers import VerifyResult  # noqa: F401  (documents the result type)

    prompts = [tokenizer(template.format(question=p["question"]), add_special_tokens=False)["input_ids"]
               for p in problems]
    golds = [p["answer"] for p in problems]
    greedy = [c[0] for c in backend.generate(prompts, n=1, max_tokens=max_new_tokens, temperature=0.0,
                                             seed=seed)]
    g_results = pool.verify_batch(golds=golds, completions=[c.text for c in greedy])
    correct = [int(r.correct) for r in g_results]
    lengths = [len(c.token_ids) for c in greedy]
    out = {
        "n": len(problems),
        "acc": _mean(correct),
        "len/mean": _mean(lengths),
        "len/correct": _mean(n for n, c in zip(lengths, correct) if c),
        "len/incorrect": _mean(n for n, c in zip(lengths, correct) if not c),
        "clip_ratio": _mean(int(c.finish_reason == "length") for c in greedy),
        "format_rate": _mean(int(r.n_boxed == 1) for r in g_results),
        "per_problem/greedy": correct,
        "per_problem/level": [p.get("level", 0) for p in problems],
        "k": k,
    }
    if k > 0:
        sampled = backend.generate(prompts, n=k, max_tokens=max_new_tokens, temperature=temperature,
                                   seed=seed + 1)
        flat = [c.text for group in sampled for c in group]
        results = pool.verify_batch(golds=[g for g in golds for _ in range(k)], completions=flat)
        per = [mean(int(r.correct) for r in results[i * k:(i + 1) * k]) for i in range(len(problems))]
        out["acc/sampled"] = _mean(per)
        out["pass@k"] = _mean(int(x > 0) for x in per)
        out["per_problem/sampled"] = per
    out["_greedy"] = (greedy, g_results)
    return out
