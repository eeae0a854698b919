"""The ``octo`` command line.

Each command lives in the module that implements it; this file only maps command names
to modules (one small table) and turns user errors into one line and exit code 2.

A command module provides, for a command named ``name`` (spaces become underscores):

    def add_<name>_arguments(parser: argparse.ArgumentParser) -> None
    def run_<name>(args: argparse.Namespace) -> int | None

Command modules keep torch/transformers/trl imports inside ``run_*`` so that
``octo --help`` and ``octo verify`` start fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from octo import __version__, progress, runlock
from octo.errors import OctoError

# name -> (module, one-line help). Nested commands ("data preview") share a group parser.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("octo.pipeline", "run a whole recipe: pretrain, stable, decay branches, probes, scores, report"),
    "cpt": ("octo.cpt.cli", "run one mid-training stage (or all) of a recipe"),
    "export": ("octo.cpt.export", "write a weights-only copy of a checkpoint (model, config, tokenizer, manifest)"),
    "eval": ("octo.cpt.gates_cli", "CPT gates on saved checkpoints (gates.jsonl); --select picks one"),
    "tokenizer audit": ("octo.cpt.tokenizer", "tokens per word and words split into >= 3 tokens, per data file"),
    "tokenizer extend": ("octo.cpt.tokenizer", "add tokens; new embedding rows = mean of their old sub-tokens"),
    "probe": ("octo.probe.cli", "run a GRPO probe from a checkpoint"),
    "score": ("octo.analysis.cli", "compute RL-readiness scores (scores.json) from a run directory"),
    "report": ("octo.analysis.cli", "write report/index.html and report/report.md for a run directory"),
    "compare": ("octo.analysis.cli", "compare runs or probes side by side"),
    "validate": ("octo.validate", "does the probe readiness ranking predict full RL? Kendall tau, findings, page"),
    "verify": ("octo.verifiers.cli", "score a JSONL file of {completion, gold} rows with the math verifier"),
    "serve": ("octo.rollout.serve", "start a vLLM server for a checkpoint and wait until it is healthy"),
    "data preview": ("octo.data.cli", "draw tokens from a stage's mixture as the trainer would: shares, samples"),
    "import": ("octo.importer", "convert a GGUF model file into an octo checkpoint directory (float32, untied)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="octo",
        description="octo: which mid-training checkpoint and data mixture will scale best under RL?",
    )
    parser.add_argument("--version", action="version", version=f"octo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {}
    for name, (module_name, help_text) in COMMANDS.items():
        attr = name.replace(" ", "_").replace("-", "_")
        module = importlib.import_module(module_name)
        if " " in name:
            group_name, leaf = name.split(" ", 1)
            if group_name not in groups:
                gp = sub.add_parser(group_name, help=f"{group_name} tools")
                groups[group_name] = gp.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
            p = groups[group_name].add_parser(leaf, help=help_text, description=help_text)
        else:
            p = sub.add_parser(name, help=help_text, description=help_text)
        getattr(module, f"add_{attr}_arguments")(p)
        p.set_defaults(_run=getattr(module, f"run_{attr}"))
    return parser


def main(argv: list[str] | None = None) -> int:
    # octo prints its own progress; the libraries' loading bars would interleave with it
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "_run"):
        parser.print_help()
        return 2
    held = runlock.held_locks()
    try:
        code = args._run(args)
    except OctoError as err:
        progress.end_bars()
        print(f"octo: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        progress.end_bars()
        note = progress.interrupt_note()   # which part resumes from which step, and the work redone
        print("\nocto: interrupted; rerun the same command to resume from the last checkpoint"
              + (f": {note}" if note else ""), file=sys.stderr)
        return 130
    finally:
        runlock.release_new(held)  # the run directories this command wrote are free again
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
