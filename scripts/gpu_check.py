"""The parts of scripts/gpu-check.sh: what octo does on one GPU, measured in one run of a few minutes.

    python scripts/gpu_check.py [--dry-run] [--out DIR] [--parts env,matmul,cpt,probe,tests]

Parts (a part that fails is recorded with the end of its output; the others still run):

- ``env``: Python, torch and CUDA, the GPU, the versions of the packages octo uses.
- ``matmul``: bf16 ``8192 x 8192 x 8192`` products (10 after 3 warm-ups): the attainable TFLOP/s,
  the denominator of ``mfu_attainable`` below.
- ``cpt``: training throughput of a ~1B Llama-shaped model (hidden 2048, 16 layers, 32 query and 8
  KV heads, MLP 8192, vocabulary 32,768, untied: 1.11B parameters) with torch SDPA, bf16 autocast
  over float32 weights, fused AdamW, rows of 2,048 tokens, the loss of octo's trainer
  (``octo.data.packing.packed_logits`` + token-sum cross-entropy). Two variants: ``packed``
  (documents packed per row, ``position_ids`` restarting per document, so transformers builds the
  block-diagonal mask octo trains with) and ``causal`` (one document per row: SDPA's plain causal
  path). MFU = (6N + 6·L·h·s) · tokens/s / peak (the FLOPs of docs/gpu.md: N parameters without
  the input embedding, causal attention over the whole row), against the GPU's dense bf16 peak
  (989 TFLOP/s for an H100/H200) and against the measured ``matmul`` figure.
- ``probe``: the quickstart's toy world and a ~0.12B toy Llama (hidden 1024, 8 layers) trained for
  one step by ``octo cpt`` (which runs single-process stages on the CPU), then ``octo probe`` for 2
  GRPO steps (TRL on the GPU, rollouts from octo's ``hf`` backend: vLLM's wheel is too large to
  carry to a machine without a registry); reported: the medians of ``time/rollout`` and
  ``time/train`` and the probe process's peak GPU memory (nvidia-smi, sampled each second).
- ``tests``: ``pytest -m gpu``.

``--dry-run`` runs the same parts at toy sizes on whatever device there is (CPU in CI): it checks
the wiring, its figures mean nothing. Writes ``DIR/gpu-check.json`` (default ``$OUT`` when set,
else ``runs/gpu-check``) and prints it; exit code 1 when a part failed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "recipes" / "toy" / "scratch.yaml"  # the quickstart from random init: the probe part sizes its own model
PARTS = ("env", "matmul", "cpt", "probe", "tests")
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12}  # dense bf16 TFLOP/s from NVIDIA's data sheets

# (hidden, layers, heads, kv heads, mlp, vocab, seq_len, micro batch, timed steps)
CPT_SIZES = {"gpu": (2048, 16, 32, 8, 8192, 32768, 2048, 8, 10), "dry": (64, 2, 2, 2, 128, 512, 128, 2, 2)}
PROBE_MODEL = {"gpu": ["model.hidden_size=1024", "model.num_layers=8", "model.num_heads=16", "model.num_kv_heads=4",
                       "model.intermediate_size=4096"],
               "dry": ["model.hidden_size=64", "model.num_layers=2", "model.num_heads=2", "model.num_kv_heads=2",
                       "model.intermediate_size=128"]}
PROBE_SET = ["world.docs_per_source=200", "world.prompts=200", "world.heldout_per_level=10",
             "cpt.seq_len=128", "cpt.micro_batch_size=4", "cpt.batch_tokens=512",
             "cpt.gates.heldout_docs=4", "cpt.gates.problems=8", "cpt.gates.max_new_tokens=16", "cpt.gates.if_items=0",
             "cpt.stages.pretrain.tokens=512", "cpt.stages.pretrain.schedule.warmup_steps=0"]


def _tail(text: str, n: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


def part_env(size: str) -> dict:
    import importlib.metadata as md

    import torch

    out = {"python": sys.version.split()[0], "torch": torch.__version__, "cuda": torch.version.cuda,
           "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        out.update(gpu=p.name, capability=f"{p.major}.{p.minor}", memory_gib=round(p.total_memory / 2**30, 1),
                   multiprocessors=p.multi_processor_count)
    versions = {}
    for dist in ("octo-midtrain", "transformers", "accelerate", "peft", "trl", "datasets", "pyarrow", "math-verify",
                 "tokenizers", "safetensors", "vllm"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            versions[dist] = None
    out["versions"] = versions
    return out


def _sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def part_matmul(size: str) -> dict:
    import torch

    gpu = torch.cuda.is_available()
    n, dtype = (8192, torch.bfloat16) if size == "gpu" else (256, torch.float32)
    dev = "cuda" if gpu else "cpu"
    a, b = torch.randn(n, n, device=dev, dtype=dtype), torch.randn(n, n, device=dev, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync()
    t0 = time.perf_counter()
    for _ in range(10):
        a @ b
    _sync()
    sec = (time.perf_counter() - t0) / 10
    return {"n": n, "dtype": str(dtype).split(".")[1], "device": dev, "tflops": round(2 * n**3 / sec / 1e12, 3)}


def _packed_batch(micro: int, seq: int, vocab: int, gen, *, packed: bool):
    """Random token rows; ``packed``: documents of geometric lengths (mean seq/4) with restarting positions."""
    import torch

    ids = torch.randint(0, vocab, (micro, seq), generator=gen)
    if not packed:
        return ids, None
    pos = torch.empty((micro, seq), dtype=torch.long)
    for r in range(micro):
        i = 0
        while i < seq:
            n = min(seq - i, max(8, int(torch.empty(1).exponential_(4.0 / seq, generator=gen))))
            pos[r, i:i + n] = torch.arange(n)
            i += n
    return ids, pos


def _train_throughput(size: str, *, packed: bool) -> dict:
    import torch
    import torch.nn.functional as F
    from transformers import LlamaConfig, LlamaForCausalLM

    from octo.data.packing import packed_logits

    hidden, layers, heads, kv, mlp, vocab, seq, micro, steps = CPT_SIZES[size]
    gpu = torch.cuda.is_available()
    dev = torch.device("cuda" if gpu else "cpu")
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=mlp, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=kv, head_dim=hidden // heads,
                         max_position_embeddings=seq, tie_word_embeddings=False, attn_implementation="sdpa")
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(dev)  # float32 master weights, as octo's trainer keeps them
    model.train()
    model.config.use_cache = False
    params = sum(p.numel() for p in model.parameters())
    n_flop = params - model.get_input_embeddings().weight.numel()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=gpu)
    gen = torch.Generator().manual_seed(0)
    warmup = 3 if size == "gpu" else 1
    times = []
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    for step in range(warmup + steps):
        ids, pos = _packed_batch(micro, seq, vocab, gen, packed=packed)
        ids = ids.to(dev, non_blocking=True)
        pos = pos.to(dev, non_blocking=True) if pos is not None else None
        _sync()
        t0 = time.perf_counter()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=gpu):
            logits = packed_logits(model, ids, pos) if pos is not None else model(input_ids=ids, use_cache=False).logits
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, vocab).float(), ids[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        _sync()
        if step >= warmup:
            times.append(time.perf_counter() - t0)
    sec = statistics.median(times)
    tokens_per_s = micro * seq / sec
    flops_per_token = 6 * n_flop + 6 * layers * hidden * seq
    out = {"params": params, "tokens_per_step": micro * seq, "step_s": round(sec, 4),
           "tokens_per_s": round(tokens_per_s, 1), "model_tflops": round(flops_per_token * tokens_per_s / 1e12, 4),
           "loss": round(float(loss), 4)}
    if gpu:
        out["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
    del model, opt
    if gpu:
        torch.cuda.empty_cache()
    return out


def part_cpt(size: str, results: dict) -> dict:
    import torch

    hidden, layers, heads, kv, mlp, vocab, seq, micro, steps = CPT_SIZES[size]
    out = {"shape": {"hidden": hidden, "layers": layers, "heads": heads, "kv_heads": kv, "mlp": mlp, "vocab": vocab,
                     "seq_len": seq, "micro_batch": micro, "timed_steps": steps},
           "attention": "sdpa", "dtype": "bf16 autocast, float32 weights" if torch.cuda.is_available() else "float32"}
    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else ""
    peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
    attainable = (results.get("matmul") or {}).get("tflops")
    for variant in ("packed", "causal"):
        fig = _train_throughput(size, packed=variant == "packed")
        if peak:
            fig["mfu"] = round(fig["model_tflops"] * 1e12 / peak, 4)
        if attainable and torch.cuda.is_available():
            fig["mfu_attainable"] = round(fig["model_tflops"] / attainable, 4)
        out[variant] = fig
    out["peak_tflops"] = peak / 1e12 if peak else None
    return out


class _GpuMemory:
    """Peak GPU memory (MiB) nvidia-smi reports for one process, sampled every second in a thread."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, None, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(1.0):
            try:
                res = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,"
                                      "nounits"], capture_output=True, text=True, timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                return
            for line in res.stdout.splitlines():
                pid, _, mib = line.partition(",")
                if pid.strip() == str(self.pid) and mib.strip().isdigit():
                    self.peak = max(self.peak or 0, int(mib))

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=15)


def _octo(args: list[str], log: Path, timeout_s: float, *, threads: int | None = None) -> tuple[int, str, int | None]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", TRL_EXPERIMENTAL_SILENCE="1")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "octo.cli", *args], stdout=fh, stderr=subprocess.STDOUT,
                                env=env, cwd=REPO)
        mem = _GpuMemory(proc.pid)
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        mem.stop()
    return code, log.read_text(errors="replace"), mem.peak


def part_probe(size: str, out_dir: Path) -> dict:
    run = out_dir / "probe-run"
    probe = ["probe.steps=2", "probe.eval_every=2", "probe.eval_problems=8", "probe.eval_samples=1",
             "probe.save_every=2", "probe.prompts_per_step=8", "probe.num_generations=8",
             "probe.max_len={kind: constant, max_len: 64}", "probe.rollout.backend=hf"]
    if size == "dry":
        probe = [s.replace("prompts_per_step=8", "prompts_per_step=2").replace("num_generations=8", "num_generations=2")
                 for s in probe]
    # one recipe for both commands: the run directory binds them to it
    overrides = [a for s in PROBE_SET + PROBE_MODEL[size] + probe for a in ("--set", s)]
    t0 = time.perf_counter()
    code, text, _ = _octo(["cpt", str(QUICKSTART), "--stage", "pretrain", "--run-dir", str(run), *overrides],
                          out_dir / "probe-cpt.log", 900, threads=1 if size == "dry" else None)
    if code != 0:
        raise RuntimeError(f"octo cpt --stage pretrain exited {code}:\n{_tail(text)}")
    cpt_s = time.perf_counter() - t0
    ckpts = sorted((run / "cpt" / "pretrain" / "checkpoints").glob("step-*"), key=lambda p: int(p.name[5:]))
    t0 = time.perf_counter()
    code, text, peak = _octo(["probe", str(ckpts[-1]), "--recipe", str(QUICKSTART), "--run-dir", str(run),
                              *overrides], out_dir / "probe.log", 900, threads=1 if size == "dry" else None)
    if code != 0:
        raise RuntimeError(f"octo probe exited {code}:\n{_tail(text)}")
    rows = [json.loads(x) for f in (run / "probes").glob("*/metrics.jsonl") for x in f.read_text().splitlines()
            if x.strip()]
    med = {k: round(statistics.median(r[k] for r in rows), 3) for k in ("time/rollout", "time/train", "reward/mean")}
    return {"steps": len(rows), "cpt_pretrain_s": round(cpt_s, 1), "probe_s": round(time.perf_counter() - t0, 1),
            **med, "probe_gpu_memory_mib": peak, "rollout_backend": "hf"}


def part_tests(size: str, out_dir: Path) -> dict:
    # only the files that mark a test gpu: collecting the whole suite costs a minute on 2 CPU cores
    files = sorted(str(f.relative_to(REPO)) for f in (REPO / "tests").rglob("test_*.py")
                   if "mark.gpu" in f.read_text(errors="replace"))
    # one process (the GPU tests share one GPU), and no pytest-xdist options: the GPU machine may not have it
    cmd = [sys.executable, "-m", "pytest", "-o", "addopts=-ra --strict-markers", "-m", "gpu", "-q",
           "-p", "no:cacheprovider", *(files or ["tests"])]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    (out_dir / "tests.log").write_text(res.stdout + res.stderr)
    last = next((ln for ln in reversed(res.stdout.strip().splitlines()) if ln.strip()), "")
    if res.returncode not in (0, 5):  # 5: no test selected
        raise RuntimeError(f"pytest -m gpu exited {res.returncode}:\n{_tail(res.stdout + res.stderr)}")
    return {"summary": last.strip("= ")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="toy sizes on any device: checks the wiring only")
    ap.add_argument("--out", default=os.environ.get("OUT") or str(REPO / "runs" / "gpu-check"))
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma list of {', '.join(PARTS)}")
    args = ap.parse_args()
    size = "dry" if args.dry_run else "gpu"
    parts = [p for p in args.parts.split(",") if p]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        ap.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.dry_run:
        import torch

        torch.set_num_threads(1)  # toy matmuls: one thread is faster than two on a shared 2-core machine
    results: dict = {}
    report = {"dry_run": args.dry_run, "parts": {}}
    t_all = time.perf_counter()
    for name in parts:
        print(f"gpu-check: {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            if name == "env":
                fig = part_env(size)
            elif name == "matmul":
                fig = part_matmul(size)
            elif name == "cpt":
                fig = part_cpt(size, results)
            elif name == "probe":
                fig = part_probe(size, out_dir)
            else:
                fig = part_tests(size, out_dir)
            results[name] = fig
            entry = {"ok": True, **fig}
        except Exception as err:  # noqa: BLE001 - one part's failure is a finding; the other parts still run
            entry = {"ok": False, "error": f"{type(err).__name__}: {_tail(str(err))}"}
        entry["seconds"] = round(time.perf_counter() - t0, 1)
        report["parts"][name] = entry
        print(f"gpu-check: {name} {'ok' if entry['ok'] else 'FAILED'} in {entry['seconds']} s", file=sys.stderr,
              flush=True)
        (out_dir / "gpu-check.json").write_text(json.dumps(report, indent=1))  # kept if a later part hangs
    report["seconds"] = round(time.perf_counter() - t_all, 1)
    report["ok"] = all(p["ok"] for p in report["parts"].values())
    (out_dir / "gpu-check.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
