"""Synthetic run directories with known dynamics, written exactly as docs/run-directory.md says.

A probe is drawn from a *kind*: true curves (held-out accuracy, train reward, lengths, clip
ratio, repetition, entropy, KL, ...) as functions of the GRPO step, plus noise. Failures are
step changes at a known step, so each detector's onset is known exactly (``EXPECTED``).

Per-problem held-out vectors are coupled across evaluations (problem i is answered correctly
greedily iff u_i < p(t) + offset(level_i), u_i fixed per probe), as a real model keeps answering
the problems it knows; sampled shares are binomial(k) draws around the same probabilities.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

LEVEL_OFFSET = {1: 0.2, 2: 0.07, 3: -0.07, 4: -0.2}


def const(v):
    return lambda t: v


def ramp(a, b, over=300):
    return lambda t: a + (b - a) * min(t, over) / over


def jump(at, before, after):
    return lambda t: before if t < at else after


def _collapse(t):
    return 0.3 + 0.35 * t / 150 if t <= 150 else 0.2


BASE = dict(heldout=ramp(0.3, 0.6), train_acc=None, reward=None, length=ramp(200, 260),
            len_correct=ramp(180, 250), len_incorrect=ramp(220, 270), clip=const(0.02), max_len=const(1024),
            repeat=const(0.01), multi_boxed=const(0.01), entropy=ramp(0.8, 0.65), kl=ramp(0.01, 0.04),
            format_rate=0.9)

KINDS: dict[str, dict] = {
    "clean": {},
    "flat": dict(heldout=const(0.3), len_correct=const(190), len_incorrect=const(220)),
    "weak": dict(heldout=ramp(0.3, 0.45)),
    "length_explosion": dict(heldout=ramp(0.3, 0.4), length=jump(120, 200, 900), clip=jump(120, 0.02, 0.5),
                             len_correct=const(190), len_incorrect=jump(120, 220, 1000)),
    "collapse": dict(heldout=_collapse),
    "reward_hacker": dict(heldout=ramp(0.3, 0.27), train_acc=const(0.3), reward=jump(100, -0.4, 0.3)),
    "repetition": dict(heldout=ramp(0.3, 0.45), repeat=jump(80, 0.01, 0.3)),
    "multi_boxed": dict(heldout=ramp(0.3, 0.45), multi_boxed=jump(60, 0.01, 0.4)),
    "entropy_collapse": dict(heldout=ramp(0.3, 0.45), entropy=jump(90, 0.8, 0.1)),
    "kl_blowup": dict(heldout=ramp(0.3, 0.45), kl=jump(110, 0.02, 1.5)),
    # the limit cuts many answers without any length growth (a limit too short for the checkpoint)
    "truncation": dict(heldout=ramp(0.3, 0.4), clip=jump(70, 0.02, 0.45)),
    # OctoThinker's long-CoT branch: lengths run to the limit, then accuracy collapses (seed 004)
    "long_cot": dict(heldout=_collapse, length=jump(140, 220, 950), clip=jump(140, 0.03, 0.6),
                     len_incorrect=jump(140, 240, 1010)),
    # a negative control (random reward): held-out accuracy drifts a little, reward is noise around 0
    "control": dict(heldout=ramp(0.3, 0.32), reward=const(0.0)),
}

# detector -> onset step, for a 300-step probe evaluated every 25 steps
EXPECTED: dict[str, dict[str, int]] = {
    "clean": {}, "flat": {}, "weak": {}, "control": {},
    "length_explosion": {"length_explosion": 120},
    "collapse": {"collapse": 175},
    "reward_hacker": {"reward_hacking": 125},
    "repetition": {"repetition": 80},
    "multi_boxed": {"multi_boxed": 60},
    "entropy_collapse": {"entropy_collapse": 90},
    "kl_blowup": {"kl_blowup": 110},
    "truncation": {"truncation": 70},
    "long_cot": {"length_explosion": 140, "collapse": 175},
}


def curves(kind: str, **overrides) -> dict:
    spec = {**BASE, **KINDS[kind], **overrides}
    if spec["train_acc"] is None:
        spec["train_acc"] = spec["heldout"]
    if spec["reward"] is None:
        train = spec["train_acc"]
        spec["reward"] = lambda t: 2 * train(t) - 1
    return spec


def metrics_rows(spec: dict, *, steps: int, rng: np.random.Generator, spikes: dict | None = None) -> list[dict]:
    rows = []
    for t in range(1, steps + 1):
        acc = float(np.clip(spec["train_acc"](t) + rng.normal(0, 0.03), 0, 1))
        row = {
            "step": t, "max_len": spec["max_len"](t),
            "reward/mean": float(spec["reward"](t) + rng.normal(0, 0.05)), "reward/std": 0.8,
            "reward/correctness": 2 * acc - 1, "reward/format": 0.0,
            "acc": acc, "frac_zero_std": 0.2,
            "len/mean": float(spec["length"](t) * (1 + rng.normal(0, 0.03))),
            "len/correct": float(spec["len_correct"](t) * (1 + rng.normal(0, 0.03))),
            "len/incorrect": float(spec["len_incorrect"](t) * (1 + rng.normal(0, 0.03))),
            "clip_ratio": float(np.clip(spec["clip"](t) + rng.normal(0, 0.01), 0, 1)),
            "repeat_rate": float(np.clip(spec["repeat"](t) + abs(rng.normal(0, 0.005)), 0, 1)),
            "multi_boxed_rate": float(np.clip(spec["multi_boxed"](t) + abs(rng.normal(0, 0.005)), 0, 1)),
            "no_answer_rate": 0.05,
            "entropy": float(spec["entropy"](t) * (1 + rng.normal(0, 0.03))),
            "kl": float(spec["kl"](t) * (1 + rng.normal(0, 0.05))),
            "loss": 0.01, "grad_norm": 0.5, "lr": 1e-6,
            "time/rollout": 1.0, "time/verify": 0.1, "time/train": 0.5,
        }
        for key, (at, value) in (spikes or {}).items():
            if t == at:
                row[key] = value
        rows.append(row)
    return rows


def eval_rows(spec: dict, *, steps: int, eval_every: int, n: int, k: int, rng: np.random.Generator,
              true_curve: bool = False) -> list[dict]:
    levels = np.array([1 + i % 4 for i in range(n)])
    offset = np.array([LEVEL_OFFSET[lv] for lv in levels])
    u = rng.random(n)
    rows = []
    eval_steps = sorted(set(range(0, steps + 1, eval_every)) | {steps})
    for t in eval_steps:
        q = np.clip(spec["heldout"](t) + offset, 0, 1)
        greedy = (u < q).astype(int)
        sampled = rng.binomial(k, q) / k
        length = spec["length"](t)
        rows.append({
            "step": t, "n": n, "k": k, "acc": float(greedy.mean()), "acc/sampled": float(sampled.mean()),
            "pass@k": float((sampled > 0).mean()), "len/mean": length, "len/correct": spec["len_correct"](t),
            "len/incorrect": spec["len_incorrect"](t), "clip_ratio": spec["clip"](t),
            "format_rate": spec["format_rate"], "max_len": spec["max_len"](t),
            "per_problem/greedy": greedy.tolist(), "per_problem/sampled": sampled.tolist(),
            "per_problem/level": levels.tolist(),
        })
        if true_curve:
            rows[-1]["_true"] = float(q.mean())
    return rows


def true_heldout(spec: dict, t: float, n: int = 200) -> float:
    """The population value of greedy (and sampled) accuracy at step t."""
    levels = np.array([1 + i % 4 for i in range(n)])
    offset = np.array([LEVEL_OFFSET[lv] for lv in levels])
    return float(np.clip(spec["heldout"](t) + offset, 0, 1).mean())


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


class RunBuilder:
    """Writes a run directory: recipe.resolved.yaml, cpt/<stage>/..., probes/<probe-id>/..."""

    def __init__(self, root: Path, *, name: str = "synthetic", analysis: dict | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.recipe = {"name": name, "seed": 0, "cpt": {"stages": {}}, "probe": {"steps": 300}}
        if analysis is not None:
            self.recipe["analysis"] = analysis
        self.write_recipe()

    def write_recipe(self) -> None:
        (self.root / "recipe.resolved.yaml").write_text(yaml.safe_dump(self.recipe, sort_keys=False))

    def probe(self, checkpoint_id: str, kind: str, *, seed: int = 0, first_seed: bool = True,
              control: str | None = None, steps: int = 300, eval_every: int = 25, n: int = 200, k: int = 4,
              rng_seed: int | None = None, spikes: dict | None = None, done: bool = True, **overrides) -> Path:
        probe_id = checkpoint_id + ("" if first_seed else f".seed-{seed}") + (f".control-{control}" if control else "")
        rng = np.random.default_rng(rng_seed if rng_seed is not None else abs(hash((probe_id, kind))) % 2**32)
        spec = curves(kind, **overrides)
        pdir = self.root / "probes" / probe_id
        pdir.mkdir(parents=True, exist_ok=True)
        metrics = metrics_rows(spec, steps=steps, rng=rng, spikes=spikes)
        _write_jsonl(pdir / "metrics.jsonl", metrics)
        _write_jsonl(pdir / "evals.jsonl", eval_rows(spec, steps=steps, eval_every=eval_every, n=n, k=k, rng=rng))
        _write_jsonl(pdir / "samples.jsonl", [{"step": 1, "prompt": "User: 1+1?", "completion": "\\boxed{2}",
                                               "gold": "2", "reward": 1.0, "status": "ok", "extracted": "2",
                                               "length": 5, "finish_reason": "stop"}])
        stage = checkpoint_id.rsplit(".step-", 1)[0]
        meta = {"probe_id": probe_id, "checkpoint_id": checkpoint_id,
                "checkpoint": f"cpt/{stage}/checkpoints/step-{checkpoint_id.rsplit('-', 1)[-1]}", "stage": stage,
                "cpt_step": int(checkpoint_id.rsplit("-", 1)[-1]), "cpt_tokens": 1000, "seed": seed,
                "control": control, "backend": "hf", "steps": steps, "prompts_per_step": 8, "num_generations": 8,
                "lr": 1e-6, "temperature": 1.0, "max_len": {"kind": "constant", "max_len": 1024, "stairs": {}},
                "eval_every": eval_every,
                "rollout_tokens": int(sum(r["len/mean"] for r in metrics) * 64)}
        (pdir / "probe.json").write_text(json.dumps(meta))
        if done:
            (pdir / "DONE.json").write_text(json.dumps({"probe_id": probe_id, "steps": steps}))
        return pdir

    def stage(self, name: str, *, init: str, gates: list[dict], mixture: dict[str, float] | None = None,
              steps: int = 40, loss0: float = 3.0) -> Path:
        mixture = mixture or {"web": 0.5, "mathweb": 0.5}
        self.recipe["cpt"]["stages"][name] = {"init": init, "mixture": mixture, "tokens": steps * 4096}
        self.write_recipe()
        sdir = self.root / "cpt" / name
        rows = []
        for t in range(1, steps + 1):
            row = {"step": t, "tokens": t * 4096, "lr": 1e-3, "loss": loss0 * (0.98 ** t), "grad_norm": 0.5,
                   "spike": False, "skipped": False, "time/step": 0.1, "tokens_per_s": 40000.0}
            row.update({f"mix/{src}": share for src, share in mixture.items()})
            rows.append(row)
        _write_jsonl(sdir / "metrics.jsonl", rows)
        full = []
        for g in gates:
            step = g["step"]
            full.append({"tokens": step * 4096, "checkpoint": f"cpt/{name}/checkpoints/step-{step}",
                         "checkpoint_id": f"{name}.step-{step}", "acc/toy/n": 200, **g})
        _write_jsonl(sdir / "gates.jsonl", full)
        (sdir / "DONE.json").write_text(json.dumps({"stage": name, "final_checkpoint": f"cpt/{name}/checkpoints/"
                                                    f"step-{steps}", "step": steps, "tokens": steps * 4096,
                                                    "final_lr": 1e-3}))
        return sdir


def branches_run(root: Path, *, controls: bool = False, analysis: dict | None = None) -> Path:
    """The OctoThinker picture in miniature: base (pretrain) -> stable -> Long / Short / Hybrid decays.

    Known truth: Short learns cleanly (two seeds), Hybrid learns less, the base is flat, Long's
    lengths run to the limit and its accuracy collapses (seed 004). Ranking: short, hybrid, base, long.
    """
    b = RunBuilder(root, name="branches", analysis=analysis)
    b.stage("pretrain", init="random", gates=[
        {"step": 0, "ppl/general": 500.0, "acc/toy": 0.0, "format_rate": 0.0},
        {"step": 40, "ppl/general": 12.0, "acc/toy": 0.20, "format_rate": 0.60}],
        mixture={"web": 0.6, "mathweb": 0.3, "qa": 0.1})
    b.stage("stable", init="pretrain", gates=[{"step": 40, "ppl/general": 11.0, "acc/toy": 0.25,
                                                "format_rate": 0.70}], mixture={"web": 0.2, "mathweb": 0.8})
    b.stage("decay-long", init="stable", gates=[{"step": 20, "ppl/general": 12.5, "acc/toy": 0.33,
                                                  "format_rate": 0.55}],
            mixture={"web": 0.05, "mathweb": 0.55, "long": 0.4})
    b.stage("decay-short", init="stable", gates=[{"step": 20, "ppl/general": 11.2, "acc/toy": 0.31,
                                                   "format_rate": 0.85}],
            mixture={"web": 0.05, "mathweb": 0.55, "short": 0.4})
    b.stage("decay-hybrid", init="stable", gates=[{"step": 20, "ppl/general": 11.5, "acc/toy": 0.30,
                                                    "format_rate": 0.75}],
            mixture={"web": 0.05, "mathweb": 0.55, "short": 0.2, "long": 0.2})
    b.probe("pretrain.step-40", "flat", rng_seed=1)
    b.probe("decay-long.step-20", "long_cot", rng_seed=2)
    b.probe("decay-short.step-20", "clean", rng_seed=3)
    b.probe("decay-short.step-20", "clean", seed=1, first_seed=False, rng_seed=4)
    b.probe("decay-hybrid.step-20", "weak", rng_seed=5)
    if controls:
        for i, ckpt in enumerate(["pretrain.step-40", "decay-long.step-20", "decay-short.step-20",
                                  "decay-hybrid.step-20"]):
            b.probe(ckpt, "control", control="random", rng_seed=10 + i)
    return root
