"""Data-parallel stages: 2 CPU processes (gloo backend) train on the same global batch as one process, and
resume: DDP (torchrun, through accelerate) and FSDP2 (accelerate launch with recipes/accelerate/fsdp.yaml, or
torchrun with accelerate's FSDP variables), whose checkpoints keep the single-process format and move between
FSDP and one process both ways; the shipped accelerate configs parse.

Tolerance of the loss comparison: rtol 1e-6 (grad_norm: 1e-5). Each step's global batch is the same 4 micro-batches in
both runs, but the gradient is summed in another order (each rank sums its 2 micro-batches, then the
all-reduce adds the ranks' sums, where one process adds all 4 in turn), which differs in float32
rounding (~1e-7 relative); through the 8 steps the loss moved by at most 2.1e-8 relative and the gradient
norm by 1.0e-7 when this test was written.
A wrong share of the data (a rank on the wrong micro-batches, a double-counted token) moves the loss
by more than 1e-3 from the second step on. FSDP reduce-scatters at every micro-batch, another order again,
and matched to the same tolerances (the loss by at most 2.2e-8 relative, the gradient norm by 4.2e-7);
its gathered checkpoint tensors differ from one process's by at most 1.4e-6 of each tensor's largest entry
(asserted: 1e-5), where a misplaced shard or a state under the wrong parameter is off by order 1.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import QUICKSTART, REPO, TINY_OVERRIDES
from tests.engine.poisoned_cpt import scale_loss

pytestmark = [pytest.mark.slow, pytest.mark.multiproc]

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


ACCELERATE = REPO / "recipes" / "accelerate"
# what `accelerate launch` sets from fsdp.yaml, for torchrun
FSDP_ENV = {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2", "FSDP_AUTO_WRAP_POLICY": "TRANSFORMER_BASED_WRAP",
            "FSDP_TRANSFORMER_CLS_TO_WRAP": "LlamaDecoderLayer"}


def _cpt(run_dir: Path, nproc: int, *extra: str, fsdp: str | None = None,
         poison: tuple[int, float] | None = None) -> subprocess.CompletedProcess:
    """``octo cpt`` of the pretrain stage on ``nproc`` processes: DDP under torchrun; ``fsdp="config"``: accelerate
    launch with recipes/accelerate/fsdp.yaml (2 CPU processes, no mixed precision); ``fsdp="env"``: torchrun with
    FSDP_ENV. ``poison`` = (step, factor) scales that step's loss (tests/engine/poisoned_cpt.py)."""
    args = ["cpt", str(QUICKSTART), "--run-dir", str(run_dir), "--stage", "pretrain"]
    for o in OVERRIDES + list(extra):
        args += ["--set", o]
    module = ["-m", "octo.cli"] if poison is None else ["-m", "tests.engine.poisoned_cpt", *map(str, poison)]
    env = _env()
    if nproc == 1:
        cmd = [sys.executable, *module, *args]
    elif fsdp == "config":
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ACCELERATE / "fsdp.yaml"),
               "--num_processes", str(nproc), "--mixed_precision", "no", *module, *args]
    else:
        # --standalone: a local rendezvous on a free port
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
               *module, *args]
        if fsdp == "env":
            env.update(FSDP_ENV)
    # a session of its own, so that a hung run is killed with its worker processes
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
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


def _strip(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("time/step", "tokens_per_s")} for r in rows]


def _close(b: list[dict], a: list[dict]) -> bool:
    """Rows ``b`` have the losses (rtol 1e-6) and gradient norms (1e-5) of rows ``a``, step by step."""
    import torch

    assert [r["step"] for r in b] == [r["step"] for r in a]
    return torch.allclose(torch.tensor([r["loss"] for r in b]), torch.tensor([r["loss"] for r in a]),
                          rtol=1e-6, atol=0) and \
        torch.allclose(torch.tensor([r["grad_norm"] for r in b]), torch.tensor([r["grad_norm"] for r in a]),
                       rtol=1e-5, atol=0)


def _cut_at(src: Path, run_dir: Path, step: int) -> Path:
    """A copy of run ``src`` as a kill after checkpoint step-``step`` leaves it."""
    shutil.copytree(src, run_dir)
    (run_dir / ".lock").unlink(missing_ok=True)
    sdir = run_dir / "cpt" / "pretrain"
    (sdir / "DONE.json").unlink()
    for s in range(step + 2, STEPS + 1, 2):
        shutil.rmtree(sdir / "checkpoints" / f"step-{s}")
    (run_dir / "recipe.resolved.yaml").unlink()  # it names the run directory; the rerun writes its own
    return run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_ctx):
    root = tmp_path_factory.mktemp("dist")
    one, two = _copy_base(tiny_ctx, root / "one"), _copy_base(tiny_ctx, root / "two")
    for run_dir, n in ((one, 1), (two, 2)):
        res = _cpt(run_dir, n)
        assert res.returncode == 0, res.stderr[-4000:]
    return one, two


def test_two_processes_match_one_on_the_same_global_batch(runs):
    one, two = runs
    a, b = _rows(one), _rows(two)
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, STEPS + 1))
    assert [r["tokens"] for r in a] == [r["tokens"] for r in b]
    assert _close(b, a)
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
    run_dir = _cut_at(two, tmp_path / "two", 4)
    res = _cpt(run_dir, 2)
    assert res.returncode == 0, res.stderr[-4000:]
    assert "resuming from cpt/pretrain/checkpoints/step-4" in res.stderr
    assert _strip(_rows(run_dir)) == _strip(_rows(two))


def test_batch_that_ranks_cannot_share_is_a_config_error(tiny_ctx, tmp_path):
    run_dir = _copy_base(tiny_ctx, tmp_path / "run")
    res = _cpt(run_dir, 2, "cpt.micro_batch_size=4")  # 1 micro-batch per step for 2 processes
    assert res.returncode != 0
    # a rank prints octo's one-line error and exits 2 (torchrun then stops the other and reports both)
    lines = [line for line in res.stderr.splitlines() if line.startswith("octo: error:")]
    assert lines and all("recipe key 'cpt.batch_tokens'" in x and "cannot share evenly" in x for x in lines)
    assert "exitcode  : 2" in res.stderr


@pytest.fixture(scope="module")
def fsdp2():
    from octo.cpt.parallel import is_fsdp2_available

    if not is_fsdp2_available():
        pytest.skip("this torch/accelerate has no FSDP2 (torch.distributed.fsdp.fully_shard)")


@pytest.fixture(scope="module")
def fsdp_run(fsdp2, tmp_path_factory, tiny_ctx):
    """The stage of ``runs`` under FSDP2: accelerate launch with the shipped fsdp.yaml, 2 CPU processes."""
    run_dir = _copy_base(tiny_ctx, tmp_path_factory.mktemp("fsdp") / "run")
    res = _cpt(run_dir, 2, fsdp="config")
    assert res.returncode == 0, res.stderr[-4000:]
    return run_dir


def _same_up_to_rounding(b, a) -> bool:
    """Tensor ``b`` is ``a`` up to rounding (same shape and dtype): the difference's norm within 1e-4 of ``a``'s, and
    every entry within 1e-3 of ``a``'s largest. FSDP sums the ranks' gradients in another order than one process
    does, and Adam divides by the root of a second moment that is tiny for a few entries, so there a last-bit
    gradient difference moves the update by much more: on an Intel Xeon (2026-12-07) one entry in 4,096 differed by
    1.0e-4 of the largest, the norms by 5.7e-6, where an AMD EPYC stayed within 1e-5. A sharding or gathering
    mistake (a shard in the wrong place, a missing average in the second moment) differs by order 1."""
    if b.shape != a.shape or b.dtype != a.dtype:
        return False
    diff = (b - a).abs()
    return float(diff.norm()) <= 1e-4 * float(a.norm()) and float(diff.max()) <= 1e-3 * float(a.abs().max())


def test_fsdp_matches_one_process_and_writes_its_checkpoint_format(runs, fsdp_run):
    import torch
    from safetensors.torch import load_file

    from octo.cpt.checkpoint import load_trainer_state

    one, _ = runs
    a, b = _rows(one), _rows(fsdp_run)
    assert [r["step"] for r in b] == list(range(1, STEPS + 1))
    assert _close(b, a)
    assert [{k: v for k, v in r.items() if k.startswith("mix/")} for r in a] == \
           [{k: v for k, v in r.items() if k.startswith("mix/")} for r in b]
    ckpts = fsdp_run / "cpt" / "pretrain" / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == [f"step-{s}" for s in range(2, STEPS + 1, 2)]
    # gathered to rank 0 and written in one process's format: full weights, optimizer state keyed by index
    for step in (2, STEPS):
        mine, theirs = ckpts / f"step-{step}", one / "cpt" / "pretrain" / "checkpoints" / f"step-{step}"
        assert sorted(p.name for p in mine.iterdir()) == sorted(p.name for p in theirs.iterdir())
        wb, wa = load_file(str(mine / "model.safetensors")), load_file(str(theirs / "model.safetensors"))
        assert wb.keys() == wa.keys() and all(_same_up_to_rounding(wb[k], wa[k]) for k in wa)
        sb, sa = load_trainer_state(mine), load_trainer_state(theirs)
        ob, oa = sb.pop("optimizer"), sa.pop("optimizer")
        assert ob["param_groups"] == oa["param_groups"]
        assert ob["state"].keys() == oa["state"].keys() == set(range(len(wa)))
        for i, state in oa["state"].items():
            assert ob["state"][i].keys() == state.keys() == {"step", "exp_avg", "exp_avg_sq"}
            assert torch.equal(ob["state"][i]["step"], state["step"])
            assert _same_up_to_rounding(ob["state"][i]["exp_avg"], state["exp_avg"])
            assert _same_up_to_rounding(ob["state"][i]["exp_avg_sq"], state["exp_avg_sq"])
        assert torch.allclose(torch.tensor(sb.pop("norms")), torch.tensor(sa.pop("norms")), rtol=1e-5, atol=0)
        assert torch.equal(sb["rng"].pop("torch"), sa["rng"].pop("torch"))
        assert sb == sa  # packer, RNG, step, tokens
    assert json.loads((fsdp_run / "cpt" / "pretrain" / "DONE.json").read_text())["step"] == STEPS


def test_fsdp_checkpoint_resumes_in_one_process(runs, fsdp_run, tmp_path):
    """Cut the FSDP run after step-4; one process resumes there and continues as the 1-process run."""
    one, _ = runs
    run_dir = _cut_at(fsdp_run, tmp_path / "run", 4)
    res = _cpt(run_dir, 1)
    assert res.returncode == 0, res.stderr[-4000:]
    assert "resuming from cpt/pretrain/checkpoints/step-4" in res.stderr
    rows = _rows(run_dir)
    assert _strip(rows[:4]) == _strip(_rows(fsdp_run)[:4])
    assert _close(rows[4:], _rows(one)[4:])


def test_one_process_checkpoint_resumes_under_fsdp_and_rolls_back(runs, fsdp2, tmp_path, quickstart_raw,
                                                                  monkeypatch):
    """Cut the 1-process run after step-4; FSDP (torchrun with accelerate's variables) resumes there (step 5
    as the 1-process run), then step 6's loss is made non-finite and cpt.spike.action rollback reloads
    step-4 into the sharded model and optimizer: steps 6-8 as one process doing the same."""
    from octo.config import parse_recipe
    from octo.context import RunContext
    from octo.cpt import trainer

    one, _ = runs
    action = "cpt.spike.action=rollback"
    run_dir = _cut_at(one, tmp_path / "fsdp", 4)
    res = _cpt(run_dir, 2, action, fsdp="env", poison=(6, math.inf))
    assert res.returncode == 0, res.stderr[-4000:]
    assert "resuming from cpt/pretrain/checkpoints/step-4" in res.stderr
    assert "rolled back to checkpoint step-4" in res.stderr
    # the same in this process
    ref_dir = _cut_at(one, tmp_path / "ref", 4)
    ctx = RunContext(parse_recipe(copy.deepcopy(quickstart_raw), OVERRIDES + [action, f"run_dir={ref_dir}"]))
    ctx.prepare()
    scale_loss(lambda step: math.inf if step == 6 else 1.0, monkeypatch.setattr)
    try:
        trainer.run_stage(ctx, "pretrain")
    finally:
        ctx.release()
    rows, ref = _rows(run_dir), _rows(ref_dir)
    assert _strip(rows[:4]) == _strip(_rows(one)[:4])
    assert _close(rows[4:5], _rows(one)[4:5])
    assert [(r["rollback"], r.get("rollback_to")) for r in rows] == [(r["rollback"], r.get("rollback_to")) for r in ref]
    assert rows[5]["rollback"] and rows[5]["rollback_to"] == 4
    assert _close(rows[6:], ref[6:])
    assert not _close(rows[6:], _rows(one)[6:])  # the rollback changed the run


def test_deepspeed_and_fsdp1_are_refused(monkeypatch):
    from octo.cpt.parallel import World
    from octo.errors import OctoError

    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    with pytest.raises(OctoError, match="does not run under DeepSpeed .* cannot be verified on the CPU"):
        World(4)
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED")
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_VERSION", "1")
    with pytest.raises(OctoError, match="FSDP2 .* only.*set fsdp_version: 2"):
        World(4)


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
        fsdp = raw["fsdp_config"]
        assert fsdp["fsdp_version"] == 2  # octo shards with FSDP2 only
        assert fsdp["fsdp_transformer_layer_cls_to_wrap"] == "LlamaDecoderLayer"
        assert fsdp["fsdp_reshard_after_forward"] is True  # FSDP2's FULL_SHARD
        assert not fsdp["fsdp_activation_checkpointing"]  # not implemented in octo's trainer
    if kind == "DEEPSPEED":
        ds = raw["deepspeed_config"]
        assert ds["zero_stage"] == int(name[-1])
        assert ds["gradient_accumulation_steps"] == 1  # octo accumulates to cpt.batch_tokens itself
    assert {p.stem for p in ACCELERATE.glob("*.yaml")} == {"ddp", "fsdp", "deepspeed-zero2", "deepspeed-zero3"}
