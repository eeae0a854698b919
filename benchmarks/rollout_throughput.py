"""Rollout throughput: the embedded ``hf`` backend vs ``vllm-server`` on the same toy checkpoint.

    python benchmarks/rollout_throughput.py [--prompts 16] [--n 8] [--max-tokens 64] [--repeats 3]
                                            [--python .venv-vllm/bin/python] [--threads N]
                                            [--hidden 64] [--layers 2] [--train-steps 150]

Builds the toy checkpoint of the rollout tests (tests/rollout/toymodel.py), starts its own vLLM
server with ``start_server`` (the venv from scripts/install-vllm-server.sh, or --python /
$OCTO_VLLM_PYTHON), and generates the same prompts x n x max_tokens at temperature 1 with both
backends: once with the trained weights (sentences end with EOS after ~8 tokens) and once with
freshly initialised weights pushed to the server with ``update_weights`` (completions run to
``max_tokens``). Each figure is the median of ``--repeats`` timed calls after one warm-up call.
Plain ``model.generate`` (transformers, sampling, KV cache, one left-padded batch) runs the same
request as a second baseline. Weight sync is timed over 5 ``update_weights`` calls (save model.safetensors + reload_weights +
reset_prefix_cache). Prints one JSON object; the server is stopped on the way out.

Probe-step breakdown (``--probe-steps``, 0 to skip): the quickstart's GRPO probe (its model size,
8 prompts x 8 generations, stair max length 128 -> 256) from a freshly initialised checkpoint,
run with ``octo probe`` once per backend (vllm-server against a server of its own); reported are
the medians over steps 2.. of ``time/rollout``, ``time/verify``, ``time/sync`` and ``time/train``
from the probe's metrics.jsonl, and the share of the step spent in weight sync.

Real model (``--model DIR``, e.g. the import of ``octo import --from-package qwen2.5-coder-0.5b``):
the same request from that checkpoint, prompts = two-to-three-term sums (``--prompts`` of them) in
the model's chat template asking for a boxed answer; defaults 8 prompts x 8 samples x 96 tokens
(a phase-2 probe step), one timed call per backend after a 4-token warm-up. The three run one
after the other, each alone on the machine as far as octo is concerned: octo's ``hf`` backend and
plain ``model.generate`` first, then the vLLM server is started and timed (its start and two weight
syncs of the 2.5 GB float32 model too). ``uptime``'s load average is recorded before and after
each part, since other jobs share the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def timed(backend, prompts, args, *, warmup_tokens: int | None = None) -> dict:
    kw = dict(n=args.n, max_tokens=args.max_tokens, temperature=1.0)
    backend.generate(prompts, seed=0, **dict(kw, max_tokens=warmup_tokens or args.max_tokens))  # warm-up
    times, tokens = [], []
    for r in range(args.repeats):
        t0 = time.perf_counter()
        groups = backend.generate(prompts, seed=r + 1, **kw)
        times.append(time.perf_counter() - t0)
        tokens.append(sum(len(c.token_ids) for g in groups for c in g))
    return figures(times, tokens, len(prompts) * args.n)


def figures(times: list[float], tokens: list[int], sequences: int) -> dict:
    """Medians of timed repeats: completion tokens, seconds, tokens/s, mean completion length."""
    sec, tok = statistics.median(times), statistics.median(tokens)
    return {"completion_tokens": tok, "seconds": round(sec, 4), "tokens_per_s": round(tok / sec, 1),
            "mean_len": round(tok / sequences, 2)}


PROBE_PARTS = ("time/rollout", "time/verify", "time/sync", "time/train")


def probe_breakdown(steps: int, python: str) -> dict:
    """Median seconds per probe step in each part, with the hf and the vllm-server backend."""
    import subprocess

    from octo.rollout.serve import start_server
    from tests.conftest import QUICKSTART
    from tests.probe.test_probe import _prepare

    overrides = ["world.docs_per_source=200", "world.prompts=200", "world.heldout_per_level=10",
                 f"probe.steps={steps}", f"probe.eval_every={steps}", "probe.eval_problems=8",
                 f"probe.save_every={steps}"]
    out: dict = {}
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    with tempfile.TemporaryDirectory(prefix="octo-bench-probe-") as tmp:
        ckpt = _prepare(Path(tmp) / "run-hf", overrides)
        log = Path(tempfile.gettempdir()) / "octo-bench-probe-vllm.log"
        with start_server(ckpt, python=python, max_model_len=512, log_path=log) as server:
            for backend, extra in (("hf", []), ("vllm_server", ["probe.rollout.backend=vllm-server",
                                                                f"probe.rollout.servers=[{server.url}]"])):
                run_dir = Path(tmp) / f"run-{backend}"
                cmd = [sys.executable, "-m", "octo.cli", "probe", str(ckpt), "--recipe", str(QUICKSTART),
                       "--run-dir", str(run_dir)]
                for o in overrides + extra:
                    cmd += ["--set", o]
                res = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if res.returncode != 0:
                    raise SystemExit(f"octo probe with {backend} failed (server log: {log}):\n{res.stderr[-3000:]}")
                rows = [json.loads(x) for x in (run_dir / "probes" / ckpt.name / "metrics.jsonl")
                        .read_text().splitlines() if x.strip()][1:]  # step 1 includes warm-up
                part = {k.split("/")[1]: round(statistics.median(r[k] for r in rows), 4) for k in PROBE_PARTS}
                part["step"] = round(sum(part.values()), 4)
                part["sync_share"] = round(part["sync"] / part["step"], 4)
                part["mean_len"] = round(statistics.median(r["len/mean"] for r in rows), 1)
                out[backend] = part
    return out


def timed_plain_generate(model, tokenizer, prompts, args, *, warmup_tokens: int | None = None) -> dict:
    """The same request with plain ``model.generate`` (left-padded batch, sampling, KV cache):
    what a user gets from transformers without octo's rollout loop."""
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    kw = dict(attention_mask=mask, do_sample=True, temperature=1.0, top_k=0, max_new_tokens=args.max_tokens,
              num_return_sequences=args.n, eos_token_id=tokenizer.eos_token_id, pad_token_id=pad)
    with torch.no_grad():
        model.generate(ids, **dict(kw, max_new_tokens=warmup_tokens or args.max_tokens))  # warm-up
        times, tokens = [], []
        for r in range(args.repeats):
            torch.manual_seed(r + 1)
            t0 = time.perf_counter()
            out = model.generate(ids, **kw)[:, width:]
            times.append(time.perf_counter() - t0)
            # tokens up to and including the first EOS of each row
            n = 0
            for row in out.tolist():
                n += row.index(tokenizer.eos_token_id) + 1 if tokenizer.eos_token_id in row else len(row)
            tokens.append(n)
    return figures(times, tokens, len(prompts) * args.n)


def real_prompts(tokenizer, count: int) -> list[list[int]]:
    """``count`` chat-template prompts of 2-3-term sums of 1-2-digit numbers (fixed by a seed)."""
    import random

    rng = random.Random(0)
    out = []
    for _ in range(count):
        terms = [str(rng.randint(1, 99)) for _ in range(rng.randint(2, 3))]
        question = f"What is {' + '.join(terms)}? Put the final answer in \\boxed{{}}."
        text = tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                             add_generation_prompt=True)
        out.append(tokenizer(text, add_special_tokens=False)["input_ids"])
    return out


def load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def real_model(args) -> dict:
    """hf backend, plain generate, then a vLLM server, on the checkpoint ``args.model``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from octo.rollout import make_backend
    from octo.rollout.config import RolloutConfig
    from octo.rollout.serve import resolve_python, start_server

    if args.threads:
        torch.set_num_threads(args.threads)
    python = resolve_python(args.python or (str(REPO / ".venv-vllm/bin/python")
                                            if not os.environ.get("OCTO_VLLM_PYTHON") else None))
    ckpt = Path(args.model).expanduser()
    tokenizer = AutoTokenizer.from_pretrained(ckpt)
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(ckpt, dtype="float32").eval()
    load_s = time.perf_counter() - t0
    prompts = real_prompts(tokenizer, args.prompts)
    out: dict = {"benchmark": "rollout_throughput", "model": str(ckpt),
                 "workload": {"prompts": args.prompts, "n": args.n, "max_tokens": args.max_tokens, "temperature": 1.0,
                              "repeats": args.repeats, "prompt_tokens_mean": round(sum(map(len, prompts)) / len(prompts), 1)},
                 "checkpoint": {"params": sum(p.numel() for p in model.parameters()),
                                "layers": model.config.num_hidden_layers, "hidden": model.config.hidden_size,
                                "vocab": model.config.vocab_size, "hf_load_s": round(load_s, 1)},
                 "load_avg": {"start": load_avg()}}
    hf = make_backend(RolloutConfig(backend="hf"), tokenizer=tokenizer, model=model)
    out["hf"] = timed(hf, prompts, args, warmup_tokens=4)
    out["load_avg"]["after_hf"] = load_avg()
    out["plain_generate"] = timed_plain_generate(model, tokenizer, prompts, args, warmup_tokens=4)
    out["load_avg"]["after_plain_generate"] = load_avg()
    with tempfile.TemporaryDirectory(prefix="octo-bench-real-") as tmp:
        t0 = time.perf_counter()
        with start_server(ckpt, python=python, max_model_len=1024, log_path=Path(tmp) / "vllm.log") as server:
            out["server_start_s"] = round(time.perf_counter() - t0, 1)
            vs = make_backend(RolloutConfig(backend="vllm-server", servers=[server.url], sync_on_start=False),
                              tokenizer=tokenizer, model=model)
            out["vllm_server"] = timed(vs, prompts, args, warmup_tokens=4)
            out["load_avg"]["after_vllm_server"] = load_avg()
            syncs = []
            for step in range(2):
                vs.update_weights(model, step=step)
                syncs.append(round(vs.last_sync_s, 2))
            out["weight_sync_s"] = syncs
            vs.close()
    out["ratio_vllm_server_vs_hf"] = round(out["vllm_server"]["tokens_per_s"] / out["hf"]["tokens_per_s"], 2)
    out["ratio_vllm_server_vs_plain_generate"] = round(
        out["vllm_server"]["tokens_per_s"] / out["plain_generate"]["tokens_per_s"], 2)
    out["machine"] = {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                      "gpu": torch.cuda.is_available()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--python", default=None, help="vLLM server venv python (default: $OCTO_VLLM_PYTHON, ./.venv-vllm)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads for hf (default: torch's default)")
    ap.add_argument("--hidden", type=int, default=64, help="toy model width (head_dim stays 32)")
    ap.add_argument("--layers", type=int, default=2, help="toy model depth")
    ap.add_argument("--train-steps", type=int, default=150, help="training steps of the toy checkpoint")
    ap.add_argument("--probe-steps", type=int, default=6, help="steps of the probe-step breakdown (0: skip)")
    ap.add_argument("--model", default=None,
                    help="a real checkpoint directory instead of the toy model (defaults: 8 prompts, 96 tokens, "
                         "1 repeat)")
    args = ap.parse_args()
    if args.model:
        for flag, value in (("prompts", 8), ("max_tokens", 96), ("repeats", 1)):
            if f"--{flag.replace('_', '-')}" not in sys.argv:
                setattr(args, flag, value)
        print(json.dumps(real_model(args), indent=1))
        return

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from octo.rollout import make_backend
    from octo.rollout.config import RolloutConfig
    from octo.rollout.serve import resolve_python, start_server
    from tests.rollout.toymodel import build_checkpoint, build_model, prompts as make_prompts

    if args.threads:
        torch.set_num_threads(args.threads)
    python = resolve_python(args.python or (str(REPO / ".venv-vllm/bin/python")
                                            if not os.environ.get("OCTO_VLLM_PYTHON") else None))
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="octo-bench-") as tmp:
        ckpt = build_checkpoint(Path(tmp) / "toy", hidden=args.hidden, layers=args.layers,
                                train_steps=args.train_steps)
        tokenizer = AutoTokenizer.from_pretrained(ckpt)
        model = AutoModelForCausalLM.from_pretrained(ckpt).eval()
        prompts = make_prompts(tokenizer, args.prompts)
        t0 = time.perf_counter()
        with start_server(ckpt, python=python, max_model_len=256, log_path=Path(tmp) / "vllm.log") as server:
            start_s = time.perf_counter() - t0
            hf = make_backend(RolloutConfig(backend="hf"), tokenizer=tokenizer, model=model)
            vs = make_backend(RolloutConfig(backend="vllm-server", servers=[server.url]), tokenizer=tokenizer,
                              model=model)
            trained = {"hf": timed(hf, prompts, args), "vllm_server": timed(vs, prompts, args),
                       "plain_generate": timed_plain_generate(model, tokenizer, prompts, args)}
            syncs, saves = [], []
            for _ in range(5):
                vs.update_weights(model, step=0)
                syncs.append(vs.last_sync_s)
                from octo.rollout.weights import save_weights

                t1 = time.perf_counter()
                save_weights(model, Path(tmp) / "save-only")
                saves.append(time.perf_counter() - t1)
            fresh = build_model(tokenizer, hidden=args.hidden, layers=args.layers, heads=args.hidden // 32,
                                seed=1).eval()  # untrained: completions run to max_tokens
            hf_fresh = make_backend(RolloutConfig(backend="hf"), tokenizer=tokenizer, model=fresh)
            vs.update_weights(fresh, step=1)
            full = {"hf": timed(hf_fresh, prompts, args), "vllm_server": timed(vs, prompts, args),
                    "plain_generate": timed_plain_generate(fresh, tokenizer, prompts, args)}
            vs.close()
    for case in (trained, full):
        case["ratio"] = round(case["vllm_server"]["tokens_per_s"] / case["hf"]["tokens_per_s"], 2)
        case["ratio_vs_plain_generate"] = round(
            case["vllm_server"]["tokens_per_s"] / case["plain_generate"]["tokens_per_s"], 2)
        case["hf_vs_plain_generate"] = round(case["hf"]["tokens_per_s"] / case["plain_generate"]["tokens_per_s"], 2)
    params = sum(p.numel() for p in model.parameters())
    breakdown = probe_breakdown(args.probe_steps, python) if args.probe_steps > 0 else None
    print(json.dumps({
        "benchmark": "rollout_throughput",
        "workload": {"prompts": args.prompts, "n": args.n, "max_tokens": args.max_tokens, "temperature": 1.0,
                     "repeats": args.repeats},
        "checkpoint": {"kind": "toy llama", "params": params, "layers": model.config.num_hidden_layers,
                       "hidden": model.config.hidden_size, "vocab": model.config.vocab_size},
        "trained_weights": trained,
        "fresh_weights_full_length": full,
        "ratio": full["ratio"],
        "weight_sync_s": {"median": round(statistics.median(syncs), 4), "max": round(max(syncs), 4),
                          "save_only_median": round(statistics.median(saves), 4)},
        "server_start_s": round(start_s, 1),
        "probe_step_breakdown_s": breakdown,
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "load_avg_before": [round(x, 2) for x in load_before],
                    "load_avg_after": [round(x, 2) for x in os.getloadavg()], "gpu": torch.cuda.is_available()},
    }, indent=1))


if __name__ == "__main__":
    main()
