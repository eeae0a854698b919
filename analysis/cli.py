"""``octo score``, ``octo report`` and ``octo compare``.

    octo score runs/quickstart                      # writes scores.json, prints the ranking
    octo score runs/quickstart --set analysis.weights.learning=2 --dry-run
    octo report runs/quickstart                     # prints the path of report/index.html
    octo report runs/quickstart --wandb octo        # also mirror to wandb (offline)
    octo compare runs/quickstart --out compare/     # Long / Short / Hybrid side by side

Settings come from the run's recipe.resolved.yaml (``analysis:``) and ``--set analysis.<key>=<value>``.
"""

from __future__ import annotations

import argparse
import sys


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="analysis.KEY=VALUE",
                   help="override an analysis setting (repeatable), e.g. --set analysis.bootstrap=2000")
    p.add_argument("--dry-run", action="store_true",
                   help="print the resolved analysis settings and exit without writing anything")


def _config(run_dir, args: argparse.Namespace):
    from octo.analysis.config import load_analysis_config

    return load_analysis_config(run_dir, args.overrides)


def _print_config(cfg) -> None:
    import yaml

    from octo.schema import to_dict

    sys.stdout.write(yaml.safe_dump({"analysis": to_dict(cfg)}, sort_keys=False))


def _check_dir(path: str) -> None:
    from pathlib import Path

    from octo.errors import OctoError

    if not Path(path).exists():
        raise OctoError(f"run directory {path} does not exist; pass the directory `octo run` wrote (runs/<name>)")


def add_score_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN", help="run directory (runs/<name>)")
    _add_common(p)
    p.add_argument("--json", action="store_true", help="print scores.json instead of the table")


def _config_or_dry_run(args: argparse.Namespace):
    """The analysis config of ``args.run_dir``; None after printing it when ``--dry-run``."""
    _check_dir(args.run_dir)
    cfg = _config(args.run_dir, args)
    if args.dry_run:
        _print_config(cfg)
        return None
    return cfg


def run_score(args: argparse.Namespace) -> int:
    import json

    from octo.analysis.score import score_run

    cfg = _config_or_dry_run(args)
    if cfg is None:
        return 0
    scores = score_run(args.run_dir, cfg)
    if args.json:
        print(json.dumps(scores, indent=2, default=str))
        return 0
    print(format_scores(scores))
    from pathlib import Path

    print(f"wrote {Path(args.run_dir) / 'scores.json'}", file=sys.stderr)
    return 0


def format_scores(scores: dict) -> str:
    """The ranking as a terminal table, then the recommendation."""
    from octo.analysis.comparison import text_table
    from octo.analysis.config import COMPONENTS

    def f(x):
        return "–" if x is None else f"{x:.3f}"

    head = ["rank", "checkpoint", "readiness", "CI", *COMPONENTS, "events"]
    rows = []
    for cid in scores["ranking"]:
        c = scores["checkpoints"][cid]
        rows.append([str(c["rank"]), cid, f(c["score"]), f"[{f(c['ci'][0])}, {f(c['ci'][1])}]",
                     *[f(c["components"].get(k)) for k in COMPONENTS],
                     ", ".join(sorted({e["detector"] for e in c["events"]})) or "none"])
    lines = [text_table(head, rows), ""]
    if scores.get("ties"):
        lines.append("ties (CIs overlap): " + "; ".join(", ".join(g) for g in scores["ties"]))
    lines.append(f"recommended checkpoint: {scores['recommended']} — {scores['reason']}")
    for note in scores.get("notes", []):
        lines.append(note)
    return "\n".join(lines)


def add_report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN", help="run directory (runs/<name>)")
    _add_common(p)
    p.add_argument("--wandb", metavar="PROJECT", default=None,
                   help="also mirror the run's metrics and scores to this wandb project")
    p.add_argument("--wandb-mode", choices=["offline", "online"], default="offline",
                   help="wandb mode for --wandb (default offline: files under RUN/wandb, sync later)")


def run_report(args: argparse.Namespace) -> int:
    from octo.analysis.report import write_report

    cfg = _config_or_dry_run(args)
    if cfg is None:
        return 0
    path = write_report(args.run_dir, cfg if args.overrides else None)
    if args.wandb:
        from octo.analysis.wandb_mirror import mirror_to_wandb

        names = mirror_to_wandb(args.run_dir, project=args.wandb, mode=args.wandb_mode)
        print(f"wandb ({args.wandb_mode}): logged {len(names)} runs to project {args.wandb}", file=sys.stderr)
    print(path)
    return 0


def add_compare_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="RUN_OR_PROBE_DIR",
                   help="run directories (every probed checkpoint) and/or probe directories")
    p.add_argument("--out", default=None, metavar="DIR", help="write compare.md, compare.json and plots here")
    p.add_argument("--baseline", default=None, metavar="ENTRY",
                   help="entry the differences are taken against (default: the best-ranked)")
    p.add_argument("--markdown", action="store_true", help="print the Markdown table instead of the text table")
    _add_common(p)


def run_compare(args: argparse.Namespace) -> int:
    from octo.analysis.comparison import collect, compare

    if args.dry_run:
        _, first_run = collect(args.paths)
        _print_config(_config(first_run, args))
        return 0
    result = compare(args.paths, out=args.out, baseline=args.baseline, overrides=args.overrides)
    print(result["markdown"] if args.markdown else result["table"])
    if args.out:
        print(f"wrote {len(result['files'])} files to {args.out}", file=sys.stderr)
    return 0
