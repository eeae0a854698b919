"""End to end: `octo run` on a tiny recipe writes the whole run-directory contract, and resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import QUICKSTART, TINY_OVERRIDES

pytestmark = [pytest.mark.slow]   # one `octo run` process at a time, one torch thread: not multiproc

STAGES = ["pretrain", "stable", "decay-long", "decay-short", "decay-hybrid"]
PROBED = ["stable", "decay-long", "decay-short", "decay-hybrid"]


def _cmd(run_dir: Path) -> list[str]:
    args = [sys.executable, "-m", "octo.cli", "run", str(QUICKSTART), "--run-dir", str(run_dir)]
    for o in TINY_OVERRIDES:
        args += ["--set", o]
    return args


def _env():
    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"})
    return env


def _jsonl(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    assert rows, f"{path} is empty"
    return rows


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("e2e") / "run"
    res = subprocess.run(_cmd(run_dir), capture_output=True, text=True, env=_env(), timeout=900)
    assert res.returncode == 0, res.stderr[-4000:]
    return run_dir, res


def test_run_directory_contract(finished_run):
    run_dir, res = finished_run
    recipe = yaml.safe_load((run_dir / "recipe.resolved.yaml").read_text())
    assert recipe["probe"]["steps"] == 2
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["tokenizer_hash"] and set(manifest["data_fingerprints"]) == set(recipe["data"]["sources"])
    for stage in STAGES:
        sdir = run_dir / "cpt" / stage
        rows = _jsonl(sdir / "metrics.jsonl")
        assert [r["step"] for r in rows] == list(range(1, len(rows) + 1))
        for key in ("step", "tokens", "lr", "loss", "grad_norm", "spike", "skipped", "time/step", "tokens_per_s"):
            assert key in rows[-1], (stage, key)
        mixture = recipe["cpt"]["stages"][stage]["mixture"]
        assert {k[4:] for k in rows[-1] if k.startswith("mix/")} == set(mixture)
        gates = _jsonl(sdir / "gates.jsonl")
        assert gates[-1]["ppl/general"] > 1 and 0 <= gates[-1]["acc/toy"] <= 1
        done = json.loads((sdir / "DONE.json").read_text())
        ckpt = run_dir / done["final_checkpoint"]
        for f in ("model.safetensors", "config.json", "trainer_state.pt", "manifest.json", "tokenizer.json"):
            assert (ckpt / f).exists(), (stage, f)
    # the base model learned something: the pretrain stage improved on the random init
    pre = _jsonl(run_dir / "cpt" / "pretrain" / "gates.jsonl")
    assert pre[0]["step"] == 0 and pre[-1]["ppl/general"] < pre[0]["ppl/general"]
    probes = sorted(p.name for p in (run_dir / "probes").iterdir())
    assert len(probes) == len(PROBED)
    for pid in probes:
        pdir = run_dir / "probes" / pid
        meta = json.loads((pdir / "probe.json").read_text())
        assert meta["stage"] in PROBED and meta["rollout_tokens"] > 0
        metrics = _jsonl(pdir / "metrics.jsonl")
        assert [r["step"] for r in metrics] == [1, 2]
        assert [r["max_len"] for r in metrics] == [12, 16]        # the stair schedule reached every rollout
        for key in ("reward/mean", "acc", "len/mean", "clip_ratio", "frac_zero_std", "loss", "time/rollout"):
            assert key in metrics[0], key
        evals = _jsonl(pdir / "evals.jsonl")
        assert [e["step"] for e in evals] == [0, 1, 2]
        assert len(evals[0]["per_problem/greedy"]) == evals[0]["n"] == 6
        samples = _jsonl(pdir / "samples.jsonl")
        assert {"completion", "gold", "reward", "status"} <= set(samples[0])
    scores = json.loads((run_dir / "scores.json").read_text())
    assert set(scores["checkpoints"]) == {json.loads((run_dir / "probes" / p / "probe.json").read_text())
                                          ["checkpoint_id"] for p in probes}
    assert scores["recommended"] in scores["checkpoints"]
    html = (run_dir / "report" / "index.html").read_text()
    assert "data:image/png;base64," in html
    assert (run_dir / "report" / "report.md").exists()
    assert "recommended checkpoint" in res.stdout


def test_rerun_of_finished_run_skips_everything(finished_run):
    run_dir, _ = finished_run
    t0 = time.monotonic()
    res = subprocess.run(_cmd(run_dir), capture_output=True, text=True, env=_env(), timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    for stage in STAGES:
        assert f"stage {stage}: already complete" in res.stderr
    for probe in PROBED:
        assert f"probe {probe}" in res.stderr
    assert res.stderr.count("already complete") >= len(STAGES) + len(PROBED)
    assert time.monotonic() - t0 < 120


def test_score_and_report_rerun_from_the_directory_alone(finished_run, tmp_path):
    run_dir, _ = finished_run
    before = json.loads((run_dir / "scores.json").read_text())
    (run_dir / "scores.json").unlink()
    res = subprocess.run([sys.executable, "-m", "octo.cli", "score", str(run_dir)], capture_output=True, text=True,
                         env=_env(), timeout=300)
    assert res.returncode == 0, res.stderr
    after = json.loads((run_dir / "scores.json").read_text())
    assert after["ranking"] == before["ranking"]
    res = subprocess.run([sys.executable, "-m", "octo.cli", "report", str(run_dir)], capture_output=True,
                         text=True, env=_env(), timeout=300)
    assert res.returncode == 0, res.stderr
    assert (run_dir / "report" / "index.html").exists()


def test_the_terminal_says_where_it_is_and_no_library_speaks(finished_run):
    """Every line of a run is octo's: its part ("[stage 2/5]"), the run's ETA, and no library warning."""
    _, res = finished_run
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    strays = [line for line in lines if not line.startswith("[octo ")]
    assert strays == [], strays
    assert not [line for line in lines if "Warning" in line or "deprecated" in line]
    assert any("] plan: stage 2/5 stable: run; 16 steps x 512 tokens" in line for line in lines)
    assert any("] [stage 2/5] stage stable: start" in line and "; run ETA " in line for line in lines)
    assert any("] [probe 4/4] probe decay-hybrid.step-2: done" in line for line in lines)


def test_kill_mid_stage_then_resume_matches_uninterrupted(finished_run, tmp_path):
    """SIGKILL while the stable stage is training; the rerun resumes from its checkpoint and the
    loss curve equals the uninterrupted run's."""
    ref_dir, _ = finished_run
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(_cmd(run_dir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=_env())
    ckpt = run_dir / "cpt" / "stable" / "checkpoints" / "step-4"
    deadline = time.monotonic() + 300
    while not ckpt.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert ckpt.exists(), "the stable stage never wrote its first checkpoint"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "cpt" / "stable" / "DONE.json").exists(), "killed too late to test a resume"
    res = subprocess.run(_cmd(run_dir), capture_output=True, text=True, env=_env(), timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "stage pretrain: already complete" in res.stderr
    assert "stage stable: resuming from cpt/stable/checkpoints/step-" in res.stderr
    for stage in STAGES:
        got = [(r["step"], r["loss"]) for r in _jsonl(run_dir / "cpt" / stage / "metrics.jsonl")]
        ref = [(r["step"], r["loss"]) for r in _jsonl(ref_dir / "cpt" / stage / "metrics.jsonl")]
        assert got == ref, stage


def test_ctrl_c_during_the_probes_then_rerun_finishes(tmp_path):
    """SIGINT (Ctrl-C) once the probes have started: exit code 130 with one line saying how to resume;
    the rerun keeps every finished stage and completes the run."""
    run_dir = tmp_path / "run"
    # a shell without job control starts background jobs with SIGINT ignored, and children inherit
    # that: give the run the default disposition, as a terminal's foreground process has
    proc = subprocess.Popen(_cmd(run_dir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=_env(), preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    metrics = run_dir / "probes" / "stable.step-16" / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None and not (metrics.exists() and metrics.stat().st_size):
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "interrupted; rerun the same command to resume" in err and "Traceback" not in err
    res = subprocess.run(_cmd(run_dir), capture_output=True, text=True, env=_env(), timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    for stage in STAGES:
        assert f"stage {stage}: already complete" in res.stderr
    assert (run_dir / "scores.json").exists() and (run_dir / "probes" / "stable.step-16" / "DONE.json").exists()
