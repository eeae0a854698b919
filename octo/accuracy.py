"""Held-out accuracy of a model on problems, shared by the CPT gates and the probes' evaluations.

Greedy accuracy and, when ``k > 0``, sampled accuracy and pass@k from ``k`` samples per problem,
generated through an octo rollout backend and checked by ``octo.verifiers``. Per-problem vectors and
success counts are kept, so that analysis can bootstrap over problems and estimate pass@j for any
j <= k without bias (Chen et al. 2021). ``start_pass`` is a probe's step-0 sampling pass, which feeds
the predictors of octo.analysis.predictors.
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


def _prompt_ids(tokenizer, problems: list[dict], template: str) -> list[list[int]]:
    return [tokenizer(template.format(question=p["question"]), add_special_tokens=False)["input_ids"]
            for p in problems]


def evaluate_problems(backend, tokenizer, problems: list[dict], *, template: str, max_new_tokens: int,
                      verifier, pool, k: int = 0, temperature: float = 1.0, seed: int = 0) -> dict:
    """Greedy (and, if k > 0, sampled) accuracy of ``backend`` on ``problems``."""
    from octo.verifiers import VerifyResult  # noqa: F401  (documents the result type)

    prompts = _prompt_ids(tokenizer, problems, template)
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
        counts = success_counts(backend, tokenizer, problems, template=template, max_new_tokens=max_new_tokens,
                                pool=pool, samples=k, temperature=temperature, seed=seed + 1)["per_problem/correct"]
        per = [c / k for c in counts]
        out["acc/sampled"] = _mean(per)
        out["pass@k"] = _mean(int(c > 0) for c in counts)
        out["per_problem/sampled"] = per
        out["per_problem/sampled_correct"] = counts
    out["_greedy"] = (greedy, g_results)
    return out


def success_counts(backend, tokenizer, problems: list[dict], *, template: str, max_new_tokens: int, pool,
                   samples: int, temperature: float = 1.0, seed: int = 0) -> dict:
    """``samples`` completions per problem; how many of each are correct (counts: pass@k and p(1-p) need them)."""
    prompts = _prompt_ids(tokenizer, problems, template)
    groups = backend.generate(prompts, n=samples, max_tokens=max_new_tokens, temperature=temperature, seed=seed)
    flat = [c for group in groups for c in group]
    results = pool.verify_batch(golds=[p["answer"] for p in problems for _ in range(samples)],
                                completions=[c.text for c in flat])
    counts = [sum(int(r.correct) for r in results[i * samples:(i + 1) * samples]) for i in range(len(problems))]
    return {
        "n": len(problems), "samples": samples,
        "per_problem/correct": counts,
        "per_problem/level": [p.get("level", 0) for p in problems],
        "len/mean": _mean(len(c.token_ids) for c in flat),
        "clip_ratio": _mean(int(c.finish_reason == "length") for c in flat),
    }


def group_success_counts(correct: list[int], group: int) -> list[int]:
    """Correct completions per prompt group of a GRPO step (TRL's order): a metrics row's ``per_group/correct``."""
    if group < 1 or len(correct) % group:
        raise ValueError(f"{len(correct)} completions do not split into groups of {group}")
    return [int(sum(correct[i:i + group])) for i in range(0, len(correct), group)]


def problems_hash(problems: list[dict]) -> str:
    """Identity of a problem set (question and answer, in order): equal hashes mean paired per-problem vectors."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps([(p["question"], p["answer"]) for p in problems]).encode()).hexdigest()[:16]


def start_pass(backend, tokenizer, *, heldout: list[dict], prompts: list[dict], template: str, max_new_tokens: int,
               pool, samples: int, heldout_problems: int, prompt_problems: int, temperature: float = 1.0,
               seed: int = 0) -> list[dict]:
    """The step-0 sampling pass of a probe: rows for ``start.jsonl`` (docs/run-directory.md). ``samples`` completions
    per problem on deterministic subsets (so every checkpoint's predictors are paired) of ``heldout_problems`` held-out
    problems (pass@k, headroom: arXiv 2504.13837) and ``prompt_problems`` RL prompts (learnable mass: arXiv 2504.03380);
    a size of 0 skips that set."""
    from octo.analysis.predictors import learnable_mass, pass_at_k

    rows = []
    for name, pool_of, size, offset in (("heldout", heldout, heldout_problems, 0),
                                        ("prompts", prompts, prompt_problems, 1)):
        if size <= 0 or not pool_of:
            continue
        subset = select_problems(pool_of, size)
        res = success_counts(backend, tokenizer, subset, template=template, max_new_tokens=max_new_tokens,
                             pool=pool, samples=samples, temperature=temperature, seed=seed + offset)
        counts = res["per_problem/correct"]
        row = {"step": 0, "set": name, "n": res["n"], "samples": samples, "temperature": temperature,
               "max_len": max_new_tokens, "problems_hash": problems_hash(subset),
               "pass@1": float(pass_at_k(counts, samples, 1).mean()),
               f"pass@{samples}": float(pass_at_k(counts, samples, samples).mean()),
               "learnable_mass": float(learnable_mass(counts, samples).mean()) if samples >= 2 else None,
               "len/mean": res["len/mean"], "clip_ratio": res["clip_ratio"],
               "per_problem/correct": counts, "per_problem/level": res["per_problem/level"]}
        rows.append(row)
    return rows

