"""Data-parallel stages: 2 CPU processes (torchrun, gloo backend, DDP through accelerate) train on the same
global batch as one process, and resume; the shipped accelerate configs parse.

Tolerance of the loss comparison: rtol 1e-6 (grad_norm: 1e-5). Each step's global batch is the same 4 micro-batches in
both runs, but the gradient is summed in another order (each rank sums its 2 micro-batches, then the
all-reduce adds the ranks' sums, where one process adds all 4 in turn), which differs in float32
rounding (~1e-7 relative); through the 8 steps the loss moved by at most 2.1e-8 relative and the gradient
norm by 1.0e-7 when this test was written.
A wrong share of the data (a rank on the wrong micro-batches, a double-counted token) moves the loss
by more than 1e-3 from the second step on.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import QUICKSTART, REPO, TINY_OVERRIDES

pytestmark = pytest.mark.slow

STEPS = 8
# 512 tokens per step = 4 micro-batches of 1 x 128: 2 per rank with 2 processes
OVERRIDES = TINY_OVERRIDES + [
    "cpt.threads=1", "cpt.micro_batch_size=1", f"cpt.stages.pretrain.tokens={STEPS * 512}", "cpt.gates.problems=0",
    "cpt.stages.pretrain.save_every=2", "cpt.stages.pretrain.keep_last=10",
]


def _env() -> dict:
    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1",
                "PYTHONPATH": str(REPO)})
    return env


def _cpt(run_dir: Path, nproc: int, *extra: str) -> subprocess.CompletedProcess:
    args = ["cpt", str(QUICKSTART), "--run-dir", str(run_dir), "--stage", "pretrain"]
    for o in OVERRIDES + list(extra):
        args += ["--set", o]
    if nproc == 1:
        cmd = [sys.executable, "-m", "octo.cli", *args]
    else:
        # --standalone: a local rendezvous on a free port
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
               "-m", "octo.cli", *args]
    # a session of its own, so that a hung run is killed with its worker processes
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=REPO,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(cmd[:6])} ... did not finish in 300 s:\n{err[-3000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _copy_base(tiny_ctx, run_dir: Path) -> Path:
    run_dir.mkdir(parents=True)
    for name in ("world", "tokenizer"):
        shutil.copytree(tiny_ctx.run_dir / name, run_dir / name)
    shutil.copy2(tiny_ctx.run_dir / "manifest.json", run_dir / "manifest.json")
    return run_dir


def _rows(run_dir: Path) -> list[dict]:
    path = run_dir / "cpt" / "pretrain" / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_ctx):
    root = tmp_path_factory.mktemp("dist")
    one, two = _copy_base(tiny_ctx, root / "one"), _copy_base(tiny_ctx, root / "two")
    for run_dir, n in ((one, 1), (two, 2)):
        res = _cpt(run_dir, n)
        assert res.returncode == 0, res.stderr[-4000:]
    return one, two


def test_two_processes_match_one_on_the_same_global_batch(runs):
    import torch

    one, two = runs
    a, b = _rows(one), _rows(two)
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, STEPS + 1))
    assert [r["tokens"] for r in a] == [r["tokens"] for r in b]
    assert torch.allclose(torch.tensor([r["loss"] for r in b]), torch.tensor([r["loss"] for r in a]),
                          rtol=1e-6, atol=0)
    assert torch.allclose(torch.tensor([r["grad_norm"] for r in b]), torch.tensor([r["grad_norm"] for r in a]),
                          rtol=1e-5, atol=0)
    assert a[-1]["loss"] < a[0]["loss"] - 0.5
    # the same data in the same order: realized mixture shares are identical
    assert [{k: v for k, v in r.items() if k.startswith("mix/")} for r in a] == \
           [{k: v for k, v in r.items() if k.startswith("mix/")} for r in b]
    # one writer: one row per step, checkpoints written once, by rank 0
    ckpts = sorted(p.name for p in (two / "cpt" / "pretrain" / "checkpoints").iterdir())
    assert ckpts == [f"step-{s}" for s in range(2, STEPS + 1, 2)]
    assert json.loads((two / "cpt" / "pretrain" / "DONE.json").read_text())["step"] == STEPS


def test_two_processes_resume_from_a_checkpoint(runs, tmp_path):
    """Remove everything after step-4 (as a kill after that checkpoint leaves it); the 2-process rerun
    resumes there and writes the uninterrupted 2-process rows again."""
    _, two = runs
    run_dir = tmp_path / "two"
    shutil.copytree(two, run_dir)
    (run_dir / ".lock").unlink(missing_ok=True)
    sdir = run_dir / "cpt" / "pretrain"
    (sdir / "DONE.json").unlink()
    for s in (6, 8):
        shutil.rmtree(sdir / "checkpoints" / f"step-{s}")
    (run_dir / "recipe.resolved.yaml").unlink()  # it names the run directory; the rerun writes its own
    res = _cpt(run_dir, 2)
    assert res.returncode == 0, res.stderr[-4000:]
    assert "resuming from cpt/pretrain/checkpoints/step-4" in res.stderr
    def strip(rows):
        return [{k: v for k, v in r.items() if k not in ("time/step", "tokens_per_s")} for r in rows]

    assert strip(_rows(run_dir)) == strip(_rows(two))


def test_batch_that_ranks_cannot_share_is_a_config_error(tiny_ctx, tmp_path):
    run_dir = _copy_base(tiny_ctx, tmp_path / "run")
    res = _cpt(run_dir, 2, "cpt.micro_batch_size=4")  # 1 micro-batch per step for 2 processes
    assert res.returncode != 0
    # a rank prints octo's one-line error and exits 2 (torchrun then stops the other and reports both)
    lines = [line for line in res.stderr.splitlines() if line.startswith("octo: error:")]
    assert lines and all("recipe key 'cpt.batch_tokens'" in x and "cannot share evenly" in x for x in lines)
    assert "exitcode  : 2" in res.stderr


ACCELERATE = REPO / "recipes" / "accelerate"


@pytest.mark.parametrize("name,kind", [("ddp", "MULTI_GPU"), ("fsdp", "FSDP"), ("deepspeed-zero2", "DEEPSPEED"),
                                       ("deepspeed-zero3", "DEEPSPEED")])
def test_shipped_accelerate_configs(name, kind):
    from accelerate.commands.config.config_args import ClusterConfig

    path = ACCELERATE / f"{name}.yaml"
    raw = yaml.safe_load(path.read_text())
    assert raw["distributed_type"] == kind and raw["num_processes"] >= 2 and not raw["use_cpu"]
    cfg = ClusterConfig.from_yaml_file(str(path))  # accelerate's own parser accepts every key
    assert cfg.distributed_type.value == kind
    if kind == "FSDP":
        assert raw["fsdp_config"]["fsdp_transformer_layer_cls_to_wrap"] == "LlamaDecoderLayer"
        assert raw["fsdp_config"]["fsdp_sharding_strategy"] == "FULL_SHARD"
    if kind == "DEEPSPEED":
        ds = raw["deepspeed_config"]
        assert ds["zero_stage"] == int(name[-1])
        assert ds["gradient_accumulation_steps"] == 1  # octo accumulates to cpt.batch_tokens itself
    assert {p.stem for p in ACCELERATE.glob("*.yaml")} == {"ddp", "fsdp", "deepspeed-zero2", "deepspeed-zero3"}
