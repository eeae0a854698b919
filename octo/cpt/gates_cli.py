"""``octo eval CHECKPOINT|RUN [--stage S] [--select]``: CPT gates on saved checkpoints.

    octo eval runs/quickstart                      # every checkpoint of every stage not yet gated
    octo eval runs/quickstart/cpt/stable/checkpoints/step-100
    octo eval runs/quickstart --select             # then the gate table and the chosen checkpoint

Each checkpoint appends one row (octo.cpt.gates) to its stage's ``gates.jsonl``, kept sorted by step;
a gated checkpoint is skipped unless ``--force``. Only ``cpt.gates.*`` and ``analysis.*`` can be
overridden: anything else would change what the run trained on. ``--select`` prints the run's gate
table (octo.analysis.gates) and chooses the highest J among the Pareto-optimal checkpoints that pass
the stop rule (seed 001 §4.2-4.4).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from octo.errors import OctoError

_OVERRIDABLE = ("cpt.gates.", "analysis.")


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="CHECKPOINT|RUN",
                        help="a run directory (runs/<name>) or one checkpoint in it (cpt/<stage>/checkpoints/step-N)")
    parser.add_argument("--stage", action="append", default=[],
                        help="only this stage's checkpoints (repeatable; with a run directory)")
    parser.add_argument("--force", action="store_true", help="evaluate again checkpoints that already have gates")
    parser.add_argument("--select", action="store_true",
                        help="print the gate table and the chosen checkpoint (highest J on the Pareto set "
                             "among checkpoints that pass the stop rule)")
    parser.add_argument("--json", action="store_true", help="with --select: print the table and choice as JSON")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a cpt.gates.* or analysis.* setting (repeatable)")


def _locate(target: Path) -> tuple[Path, str | None, Path | None]:
    """(run dir, stage or None, checkpoint or None) of a command-line target."""
    from octo.runio import RECIPE_FILE, checkpoint_location

    if not target.exists():
        raise OctoError(f"{target} does not exist; pass a run directory (runs/<name>) or a checkpoint in it")
    if (target / RECIPE_FILE).exists():
        return target, None, None
    where = checkpoint_location(target)
    if where is not None and where[0] is not None and (where[0] / RECIPE_FILE).exists():
        return where[0], where[1], target
    raise OctoError(f"{target} is neither an octo run directory (no {RECIPE_FILE}) nor a checkpoint "
                    "inside one (<run>/cpt/<stage>/checkpoints/step-N)")


def _context(run_dir: Path, overrides: list[str]):
    from octo.config import load_recipe
    from octo.context import RunContext
    from octo.runio import RECIPE_FILE
    from octo.runlock import RunLock

    for item in overrides:
        if not item.startswith(_OVERRIDABLE):
            raise OctoError(f"--set {item}: octo eval only takes cpt.gates.* and analysis.* settings; "
                            "other keys would change what the run trained on")
    recipe = load_recipe(run_dir / RECIPE_FILE, [o for o in overrides if o.startswith("cpt.gates.")]
                         + [f"run_dir={run_dir}"])
    ctx = RunContext(recipe)
    ctx.lock = RunLock.acquire_dir(run_dir)  # gates.jsonl has one writer at a time
    return ctx


def _targets(ctx, stages: list[str], checkpoint: Path | None) -> list[tuple[str, int, Path]]:
    from octo.cpt.checkpoint import list_checkpoints, verify_checkpoint
    from octo.runio import checkpoint_location

    if checkpoint is not None:
        _, stage, step = checkpoint_location(checkpoint)   # _locate recognised it
        problem = verify_checkpoint(checkpoint)
        if problem:
            raise OctoError(f"{checkpoint} is not a complete checkpoint ({problem}); pass another one or the run "
                            "directory")
        return [(stage, step, checkpoint)]
    for name in stages:
        if name not in ctx.recipe.cpt.stages:
            raise OctoError(f"--stage {name}: no such stage; the recipe's stages are "
                            f"{', '.join(ctx.recipe.cpt.stages)}")
    out = []
    for name in ctx.recipe.cpt.stages:
        if stages and name not in stages:
            continue
        for step, path in list_checkpoints(ctx.stage_dir(name) / "checkpoints"):
            if verify_checkpoint(path) is None:
                out.append((name, step, path))
    return out


def evaluate_checkpoint(ctx, stage: str, step: int, path: Path) -> dict:
    """The gates row of one saved checkpoint (not yet written)."""
    from octo.cpt.gates import evaluate_gates
    from octo.model import load_model
    from octo.runio import checkpoint_id, read_json

    manifest = read_json(path / "manifest.json")
    model = load_model(path, attn_implementation=ctx.recipe.model.attn_implementation)
    row = evaluate_gates(ctx, model)
    return {"step": step, "tokens": manifest.get("tokens"), "checkpoint": str(path.relative_to(ctx.run_dir)),
            "checkpoint_id": checkpoint_id(stage, step), **row}


def write_gate_row(path: Path, row: dict) -> None:
    """Put ``row`` into a gates.jsonl (replacing a row of the same step), sorted by step, atomically."""
    from octo.runio import read_jsonl, write_jsonl

    rows = [r for r in (read_jsonl(path) if path.exists() else []) if r.get("step") != row["step"]]
    rows.append(row)
    write_jsonl(path, sorted(rows, key=lambda r: r.get("step", 0)))


def _readiness_view(run_dir: Path, chosen: str | None) -> str:
    """How this choice relates to the RL-readiness recommendation of scores.json (octo score / octo report)."""
    from octo.analysis.gates import relation_text
    from octo.runio import SCORES_FILE, read_json

    path = Path(run_dir) / SCORES_FILE
    if not path.exists():
        return ("RL readiness: no scores.json yet; `octo score RUN` after the probes gives the recommendation for "
                "RL (this choice is by the CPT gates alone, before any RL).")
    scores = read_json(path)
    return "RL readiness: " + relation_text(chosen, scores["recommended"], scores.get("ranking", []))


def _fmt(x, digits=3) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def format_table(table: dict) -> str:
    dm = table["domain_metric"]
    cols = [("checkpoint", "checkpoint_id"), ("ppl/general", "ppl/general"), (dm or "acc", dm),
            ("format", "format_rate"), ("if", "if_adherence"), ("refusal", "refusal_rate"),
            ("gap/ppl", "stab_gap/ppl/general"), ("J", "J"), ("pareto", "pareto"), ("verdict", "verdict")]
    cols = [(h, k) for h, k in cols if k and any(r.get(k) is not None for r in table["rows"])]
    lines = [[h for h, _ in cols]]
    for r in table["rows"]:
        cells = []
        for _, k in cols:
            v = r.get(k)
            if k == dm and r.get(f"{dm}/ci"):
                lo, hi = r[f"{dm}/ci"]
                cells.append(f"{_fmt(v)} [{lo:.3f}, {hi:.3f}]")
            else:
                cells.append(_fmt(v))
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(cols))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)


def run_eval(args: argparse.Namespace) -> int:
    from octo import progress
    from octo.runio import GATES_FILE, read_jsonl

    run_dir, _stage, checkpoint = _locate(Path(args.target))
    if checkpoint is not None and args.stage:
        raise OctoError("--stage goes with a run directory, not with one checkpoint")
    ctx = _context(run_dir, args.overrides)
    done = 0
    for name, step, path in _targets(ctx, args.stage, checkpoint):
        gates_path = ctx.stage_dir(name) / GATES_FILE
        have = {r.get("step") for r in read_jsonl(gates_path)} if gates_path.exists() else set()
        if step in have and not args.force:
            continue
        row = evaluate_checkpoint(ctx, name, step, path)
        write_gate_row(gates_path, row)
        done += 1
        acc_key = next((k for k in row if k.startswith("acc/") and k.count("/") == 1), None)
        progress.info(f"gates {row['checkpoint_id']}: ppl/general {row['ppl/general']:.2f}"
                      + (f", {acc_key} {row[acc_key]:.3f} (n={row[acc_key + '/n']})" if acc_key else ""))
    if not done:
        progress.info("every checkpoint asked for already has gates (pass --force to evaluate again)")
    if args.select:
        from octo.analysis.config import load_analysis_config
        from octo.analysis.gates import cpt_choice, gate_table
        from octo.analysis.load import load_run

        changed = [o for o in args.overrides if o.startswith("analysis.")]
        cfg = load_analysis_config(run_dir, changed)
        # verdicts written during training used the recipe's settings; other settings judge afresh
        table = gate_table(load_run(run_dir, require_probes=False), cfg, recompute=bool(changed))
        best, reason = cpt_choice(table, run_dir)
        view = _readiness_view(run_dir, best["checkpoint_id"] if best else None)
        if args.json:
            from octo.runio import dumps

            sys.stdout.write(dumps({"table": table, "chosen": best["checkpoint_id"] if best else None,
                                    "checkpoint": best["checkpoint"] if best else None, "reason": reason,
                                    "readiness": view}) + "\n")
        else:
            print(format_table(table))
            print()
            if best:
                print(f"chosen: {best['checkpoint_id']} ({best['checkpoint']}) — {reason}")
            else:
                print(f"chosen: none — {reason}")
            print(view)
    return 0

