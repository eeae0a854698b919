"""GRPO probes end to end on the toy world: metrics, the length schedule, controls, kill -9 + resume,
and the same probe with rollouts from a real vLLM server (marker ``vllm``)."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import QUICKSTART, TINY_OVERRIDES

pytestmark = pytest.mark.slow

STEPS = 10
PROBE_OVERRIDES = TINY_OVERRIDES + [
    f"probe.steps={STEPS}", "probe.save_every=2", "probe.eval_every=5", "probe.eval_problems=4",
    "probe.max_len.kind=stair", "probe.max_len.stairs={0: 8, 4: 12, 7: 16}", "probe.log_samples=4",
    "probe.start_samples=4", "probe.start_heldout_problems=4", "probe.start_prompt_problems=3",
]


def _env() -> dict:
    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"})
    return env


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _prepare(run_dir: Path, overrides: list[str]) -> Path:
    """The run's world and tokenizer, and a fresh toy model saved as a checkpoint; returns it (the run directory
    released: the `octo probe` processes below write it, one writer at a time)."""
    from octo.config import load_recipe_dict, parse_recipe
    from octo.context import random_init_checkpoint

    recipe = parse_recipe(copy.deepcopy(load_recipe_dict(QUICKSTART)), overrides + [f"run_dir={run_dir}"])
    return random_init_checkpoint(recipe, run_dir / "init-ckpt")


def _probe_cmd(ckpt: Path, run_dir: Path, overrides: list[str], *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "octo.cli", "probe", str(ckpt), "--recipe", str(QUICKSTART),
           "--run-dir", str(run_dir), *extra]
    for o in overrides:
        cmd += ["--set", o]
    return cmd


@pytest.fixture(scope="module")
def probe_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("probe") / "run"
    return run_dir, _prepare(run_dir, PROBE_OVERRIDES)


def _check_metrics(pdir: Path, overrides: list[str]) -> list[dict]:
    from octo.config import load_recipe_dict, parse_recipe
    from octo.probe.length import LengthSchedule

    recipe = parse_recipe(copy.deepcopy(load_recipe_dict(QUICKSTART)), overrides)
    schedule = LengthSchedule(recipe.probe.max_len)
    rows = _rows(pdir / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    # the limit of step s is the schedule's value when its rollouts were generated (after s-1 updates)
    assert [r["max_len"] for r in rows] == [schedule.limit(r["step"] - 1, []) for r in rows]
    assert [r["max_len"] for r in rows][:4] == [8, 8, 8, 8] and rows[-1]["max_len"] == 16
    for r in rows:
        assert -3.5 <= r["reward/mean"] <= 1.5 and 0 <= r["acc"] <= 1 and 0 <= r["clip_ratio"] <= 1
        assert r["len/mean"] <= r["max_len"]
        assert {"reward/correctness", "reward/format", "time/rollout", "time/verify", "time/sync",
                "time/train", "grad_norm", "loss"} <= set(r)
        # successes per prompt group, in TRL's order: what the learnable mass of the RL prompts is read from
        groups = r["per_group/correct"]
        assert len(groups) == recipe.probe.prompts_per_step
        assert all(0 <= c <= recipe.probe.num_generations for c in groups)
        assert sum(groups) == round(r["acc"] * recipe.probe.prompts_per_step * recipe.probe.num_generations)
    # the step-0 sampling pass: once per probe (not again after a resume), at the schedule's largest limit
    start = _rows(pdir / "start.jsonl")
    assert [(r["set"], r["n"], r["samples"], r["max_len"]) for r in start] == [("heldout", 4, 4, 16),
                                                                            ("prompts", 3, 4, 16)]
    for r in start:
        assert len(r["per_problem/correct"]) == r["n"] and all(0 <= c <= 4 for c in r["per_problem/correct"])
        assert r["pass@1"] == pytest.approx(sum(r["per_problem/correct"]) / (4 * r["n"]))
    for s in _rows(pdir / "samples.jsonl"):  # the limit really bounds generation
        assert s["length"] <= next(r["max_len"] for r in rows if r["step"] == s["step"])
    evals = _rows(pdir / "evals.jsonl")
    assert [e["step"] for e in evals] == [0, 5, 10]
    assert all(e["n"] == 4 and 0 <= e["acc"] <= 1 for e in evals)
    done = json.loads((pdir / "probe.json").read_text())
    assert done["steps"] == STEPS and (pdir / "DONE.json").exists()
    return rows


def kill_past_a_checkpoint(proc, out: Path, step: int = 5) -> None:
    """SIGKILL a running probe once a checkpoint exists and the probe has logged step ``step``."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        ckpts = sorted((out / "checkpoints").glob("checkpoint-*/trainer_state.json")) \
            if (out / "checkpoints").exists() else []
        rows = _rows(out / "metrics.jsonl") if (out / "metrics.jsonl").exists() else []
        if ckpts and rows and rows[-1]["step"] >= step:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"the probe ended before it could be killed: {proc.stderr.read()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "DONE.json").exists()


def test_ten_step_probe_then_kill_and_resume(probe_run):
    run_dir, ckpt = probe_run
    out = run_dir / "probes" / "killed"
    proc = subprocess.Popen(_probe_cmd(ckpt, run_dir, PROBE_OVERRIDES, "--out", str(out)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env())
    kill_past_a_checkpoint(proc, out)
    # the probe's length may change in the run directory (octo.reuse.PER_RUN_KEYS), but a run with a checkpoint
    # keeps the settings it started with: resuming it with another evaluation cadence is refused by name
    other = PROBE_OVERRIDES + ["probe.eval_every=3"]
    refused = subprocess.run(_probe_cmd(ckpt, run_dir, other, "--out", str(out)), capture_output=True, text=True,
                             env=_env(), timeout=300)
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert f"{out} was run with other settings (eval_every 5 there, 3 here); delete that directory" \
        in refused.stderr and "Traceback" not in refused.stderr
    assert json.loads((out / "probe.json").read_text())["eval_every"] == 5   # its record is left as it was
    res = subprocess.run(_probe_cmd(ckpt, run_dir, PROBE_OVERRIDES, "--out", str(out)),
                         capture_output=True, text=True, env=_env(), timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resuming from checkpoint-" in res.stderr
    _check_metrics(out, PROBE_OVERRIDES)
    # a finished probe is not run again
    again = subprocess.run(_probe_cmd(ckpt, run_dir, PROBE_OVERRIDES, "--out", str(out)),
                           capture_output=True, text=True, env=_env(), timeout=600)
    assert again.returncode == 0 and "already complete" in again.stderr
    # nor is a finished probe taken for a longer one
    longer = subprocess.run(_probe_cmd(ckpt, run_dir, PROBE_OVERRIDES + ["probe.steps=12"], "--out", str(out)),
                            capture_output=True, text=True, env=_env(), timeout=300)
    assert longer.returncode == 2 and "was run with other settings (steps 10 there, 12 here)" in longer.stderr


@pytest.mark.parametrize("control", ["random", "format"])
def test_negative_controls_replace_the_reward(probe_run, control):
    run_dir, ckpt = probe_run
    overrides = PROBE_OVERRIDES + ["probe.steps=3", "probe.eval_every=3"]
    # how a probe trains is the run directory's: another learning rate there is refused
    res = subprocess.run(_probe_cmd(ckpt, run_dir, overrides + ["probe.lr=0.0003"], "--control", control),
                         capture_output=True, text=True, env=_env(), timeout=600)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "was made by a different recipe (differs in: probe.lr)" in res.stderr
    # how long it runs is the probe's own (octo.reuse.PER_RUN_KEYS): a shorter control probe runs beside the others,
    # and so is the step-0 sampling pass's limit (probe.start_max_len)
    res = subprocess.run(_probe_cmd(ckpt, run_dir, overrides + ["probe.start_max_len=20"], "--control", control),
                         capture_output=True, text=True, env=_env(), timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    pdir = run_dir / "probes" / f"{ckpt.name}.control-{control}"
    rewards = [s["reward"] for s in _rows(pdir / "samples.jsonl")]
    assert rewards
    if control == "random":
        assert set(rewards) <= {-1.0, 1.0}
    else:
        boxed = [s["completion"].count("\\boxed{") == 1 for s in _rows(pdir / "samples.jsonl")]
        assert rewards == [1.0 if b else 0.0 for b in boxed]
    assert json.loads((pdir / "probe.json").read_text())["control"] == control
    assert [r["max_len"] for r in _rows(pdir / "start.jsonl")] == [20, 20]


@pytest.mark.vllm
def test_same_probe_with_rollouts_from_a_vllm_server(tmp_path):
    from tests.rollout.conftest import find_vllm_python

    python, why = find_vllm_python()
    if python is None:
        pytest.skip(why)
    from octo.rollout.serve import _die_with_parent, free_port

    run_dir = tmp_path / "run"
    ckpt = _prepare(run_dir, PROBE_OVERRIDES)
    serve = subprocess.Popen([sys.executable, "-m", "octo.cli", "serve", str(ckpt), "--python", python,
                              "--port", str(free_port()),
                              "--max-model-len", "256", "--log", str(tmp_path / "vllm.log")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                             preexec_fn=_die_with_parent)
    try:
        url = serve.stdout.readline().strip()
        assert url.startswith("http://"), serve.stderr.read()[-3000:] if serve.poll() is not None else url
        overrides = PROBE_OVERRIDES + ["probe.rollout.backend=vllm-server", f"probe.rollout.servers=[{url}]"]
        vrun = tmp_path / "vrun"
        res = subprocess.run(_probe_cmd(ckpt, vrun, overrides), capture_output=True, text=True, env=_env(),
                             timeout=900)
        assert res.returncode == 0, res.stderr[-3000:]
        rows = _check_metrics(vrun / "probes" / ckpt.name, overrides)
        assert all(r["time/sync"] > 0 for r in rows[1:])  # weights pushed to the server before each step
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(timeout=60)
        except subprocess.TimeoutExpired:
            serve.kill()


def test_rollout_server_dying_mid_probe_stops_naming_it_then_resumes(probe_run, tmp_path):
    """The vllm-server path against a fake OpenAI-compatible peer (tests/rollout/fake_peer.py): when the
    only server starts failing, the probe stops with exit 2 naming the server and the step, keeps its
    last checkpoint, and resumes from it once the server is back."""
    from tests.rollout.fake_peer import FakePeer

    _, ckpt = probe_run
    peer = FakePeer(max_model_len=512)
    try:
        overrides = PROBE_OVERRIDES + ["probe.rollout.backend=vllm-server", f"probe.rollout.servers=[{peer.url}]",
                                       "probe.rollout.max_retries=1", "probe.rollout.retry_backoff_s=0.05"]
        run_dir = tmp_path / "run"
        pdir = run_dir / "probes" / ckpt.name
        proc = subprocess.Popen(_probe_cmd(ckpt, run_dir, overrides), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, env=_env())
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            rows = _rows(pdir / "metrics.jsonl") if (pdir / "metrics.jsonl").exists() else []
            if rows and rows[-1]["step"] >= 3:
                break
            time.sleep(0.02)
        peer.fail_status = 502
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 2, err[-3000:]
        line = [ln for ln in err.splitlines() if ln.startswith("octo: error:")]
        assert len(line) == 1 and peer.url in line[0] and "at step" in line[0] and "HTTP 502" in line[0]
        assert "Traceback" not in err
        assert sorted(p.name for p in (pdir / "checkpoints").glob("checkpoint-*"))  # the last one is kept
        peer.fail_status = None
        res = subprocess.run(_probe_cmd(ckpt, run_dir, overrides), capture_output=True, text=True, env=_env(),
                             timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
        assert "resuming from checkpoint-" in res.stderr
        assert [r["step"] for r in _rows(pdir / "metrics.jsonl")] == list(range(1, STEPS + 1))
    finally:
        peer.close()


def _random_reward_probes(tmp_path: Path, steps: int, variants: dict, *shared: str) -> tuple[Path, list[str], dict]:
    """A fresh tiny checkpoint and one short random-reward probe from it per variant (its extra overrides): the
    checkpoint, the overrides the probes share, and each variant's probe directory. The random-reward control,
    because a random-init model earns no real reward and so would get no gradient to compare."""
    base = PROBE_OVERRIDES + [f"probe.steps={steps}", f"probe.save_every={steps}", "probe.prompts_per_step=4",
                              "probe.num_generations=4", "probe.start_samples=0", *shared]
    run_dir = tmp_path / "run"
    ckpt = _prepare(run_dir, base)
    outs = {}
    for key, extra in variants.items():
        out = run_dir / "probes" / f"variant-{key}"
        res = subprocess.run(_probe_cmd(ckpt, run_dir, base + extra, "--out", str(out), "--control", "random"),
                             capture_output=True, text=True, env=_env(), timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
        outs[key] = out
    return ckpt, base, outs


def test_micro_batches_train_the_same_step_as_one_pass(tmp_path):
    """probe.micro_batch_size splits an optimizer step's completions into accumulated passes (a memory knob): the
    same rollouts, rewards and, up to float rounding, the same trained weights as one pass over the batch."""
    from safetensors.torch import load_file

    ckpt, base, outs = _random_reward_probes(tmp_path, 2, {m: [f"probe.micro_batch_size={m}"] for m in (0, 4)},
                                             "probe.eval_every=2")
    run_dir = tmp_path / "run"
    rows = {m: _rows(o / "metrics.jsonl") for m, o in outs.items()}
    assert [r["reward/mean"] for r in rows[0]] == [r["reward/mean"] for r in rows[4]]
    assert len(rows[4]) == 2 and [r["step"] for r in rows[4]] == [1, 2]
    w = {m: load_file(str(o / "checkpoints" / "checkpoint-2" / "model.safetensors")) for m, o in outs.items()}
    assert w[0].keys() == w[4].keys()
    moved = max(float((w[0][k] - load_file(str(ckpt / "model.safetensors"))[k]).abs().max()) for k in w[0])
    assert moved > 1e-4   # the step trained
    for k in w[0]:
        assert (w[0][k] - w[4][k]).abs().max() < 1e-3 * moved, k
    # not a setting of the probe: a rerun with another micro batch finds it complete
    again = subprocess.run(_probe_cmd(ckpt, run_dir, base + ["probe.micro_batch_size=8"], "--out", str(outs[0]),
                                      "--control", "random"), capture_output=True, text=True, env=_env(), timeout=300)
    assert again.returncode == 0 and "already complete" in again.stderr
    bad = subprocess.run(_probe_cmd(ckpt, run_dir, base + ["probe.micro_batch_size=5"], "--dry-run"),
                         capture_output=True, text=True, env=_env(), timeout=300)
    assert bad.returncode == 2 and "micro_batch_size" in bad.stderr and "Traceback" not in bad.stderr


def test_heldout_evaluations_do_not_change_what_the_probe_trains(tmp_path):
    """How often a run is evaluated is a measuring choice: evaluating after every step trains the same rollouts,
    rewards and weights as evaluating only at the start and the end (the evaluation samples with its own seed and
    leaves no state behind), so a recipe can evaluate less without changing the run it measures. Variant 3 names
    its evaluation steps (probe.eval_steps, what validation.full_eval_steps sets) with an eval_every past the end."""
    from safetensors.torch import load_file

    ckpt, _, outs = _random_reward_probes(tmp_path, 3, {1: ["probe.eval_every=1"],
                                                        3: ["probe.eval_every=100", "probe.eval_steps=[2]"]})
    assert [r["step"] for r in _rows(outs[1] / "evals.jsonl")] == [0, 1, 2, 3]
    assert [r["step"] for r in _rows(outs[3] / "evals.jsonl")] == [0, 2, 3]
    assert json.loads((outs[3] / "probe.json").read_text())["eval_steps"] == [2]

    def trained(out: Path) -> list[dict]:
        return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in _rows(out / "metrics.jsonl")]

    assert trained(outs[1]) == trained(outs[3])
    samples = {e: [(s["step"], s["completion"], s["reward"]) for s in _rows(o / "samples.jsonl")] for e, o in outs.items()}
    assert samples[1] == samples[3] and samples[1]
    w = {e: load_file(str(o / "checkpoints" / "checkpoint-3" / "model.safetensors")) for e, o in outs.items()}
    moved = max(float((w[1][k] - load_file(str(ckpt / "model.safetensors"))[k]).abs().max()) for k in w[1])
    assert moved > 1e-4   # the steps trained
    for k in w[1]:
        assert (w[1][k] == w[3][k]).all(), k
    # the last evaluation sees the same model
    last = {e: _rows(o / "evals.jsonl")[-1] for e, o in outs.items()}
    assert last[1]["per_problem/greedy"] == last[3]["per_problem/greedy"]
