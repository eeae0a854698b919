"""``octo verify FILE.jsonl``: score a file of {completion, gold} rows with the math verifier.

    octo verify samples.jsonl --out verified.jsonl
    octo verify samples.jsonl --gold-key answer --completion-key response --set timeout_s=2

Writes every row plus ``status, correct, extracted, method, reason, n_boxed, checked_by`` (default
``FILE.verified.jsonl``) and prints a table of statuses; ``--set KEY=VALUE`` overrides a ``VerifierConfig``
field. A missing file, bad JSON line or missing key is one line naming the file and line (exit 2).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from octo.errors import ConfigError, OctoError

_BATCH = 256
_RESULT_KEYS = ("status", "correct", "extracted", "method", "reason", "n_boxed", "checked_by")


def add_verify_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE.jsonl", help="JSONL file with one {completion, gold} object per line")
    parser.add_argument("--out", metavar="OUT.jsonl", default=None,
                        help="where to write the rows with their verdicts (default: FILE.verified.jsonl)")
    parser.add_argument("--gold-key", default="gold", help="key of the gold answer in each row (default: gold)")
    parser.add_argument("--completion-key", default="completion",
                        help="key of the model completion in each row (default: completion)")
    parser.add_argument("--task-key", default=None,
                        help="key of a task name used with verifier.extract_by_task (default: none)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a verifier setting, e.g. --set timeout_s=2 --set workers=4")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved verifier config and exit")


def _config(overrides: list[str]):
    from octo.schema import apply_overrides, from_dict
    from octo.verifiers.config import VerifierConfig

    raw: dict = {}
    items = [o[len("verifier."):] if o.startswith("verifier.") else o for o in overrides]
    try:
        apply_overrides(raw, items)
        return from_dict(VerifierConfig, raw)
    except ConfigError as err:
        where = f"--set {err.key}: " if err.key else ""
        raise OctoError(f"{where}{err.message} (see the settings with: octo verify FILE --dry-run)") from None


def _read_rows(path: Path, gold_key: str, completion_key: str, task_key: str | None):
    if not path.exists():
        raise OctoError(f"{path} does not exist; pass a JSONL file with one {{completion, gold}} object per line")
    if path.is_dir():
        raise OctoError(f"{path} is a directory; pass a JSONL file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise OctoError(f"{path} is not UTF-8 text; pass a JSONL file") from None
    except OSError as err:
        raise OctoError(f"cannot read {path} ({err.strerror})") from None
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise OctoError(f"{path} line {lineno} is not valid JSON ({err.msg}); fix or remove that line") from None
        if not isinstance(row, dict):
            raise OctoError(f"{path} line {lineno} is not a JSON object; each line must be "
                            f'{{"{completion_key}": ..., "{gold_key}": ...}}')
        for key in (completion_key, gold_key) + ((task_key,) if task_key else ()):
            if key not in row:
                have = ", ".join(sorted(row)) or "none"
                raise OctoError(f"{path} line {lineno} has no '{key}' key (keys: {have}); "
                                f"name the right one with --{_flag_for(key, gold_key, completion_key)}")
        gold = row[gold_key]
        if isinstance(gold, bool) or not isinstance(gold, (str, int, float)):
            raise OctoError(f"{path} line {lineno}: '{gold_key}' must be a string or a number")
        if not isinstance(row[completion_key], str):
            raise OctoError(f"{path} line {lineno}: '{completion_key}' must be a string")
        rows.append(row)
    return rows


def _flag_for(key: str, gold_key: str, completion_key: str) -> str:
    return "gold-key" if key == gold_key else "completion-key" if key == completion_key else "task-key"


def _summary(counts: dict[str, int], total: int, seconds: float) -> str:
    from octo.verifiers.check import STATUSES

    lines = [f"{'status':<18}{'count':>8}{'share':>9}"]
    for status in STATUSES:
        n = counts.get(status, 0)
        share = f"{100.0 * n / total:.1f}%" if total else "-"
        lines.append(f"{status:<18}{n:>8}{share:>9}")
    lines.append(f"{'total':<18}{total:>8}")
    acc = f"{counts.get('ok', 0) / total:.4f}" if total else "-"
    rate = f"{total / seconds:.0f}/s" if seconds > 0 else "-"
    lines.append(f"accuracy {acc}   ({seconds:.2f} s, {rate})")
    return "\n".join(lines)


def run_verify(args: argparse.Namespace) -> int:
    from octo.runio import JsonlWriter
    from octo.schema import to_dict
    from octo.verifiers.pool import VerifierPool

    config = _config(args.overrides)
    if args.dry_run:
        import yaml

        print(yaml.safe_dump({"verifier": to_dict(config)}, sort_keys=False), end="")
        return 0
    path = Path(args.file)
    out = Path(args.out) if args.out else path.with_name(path.name.removesuffix(".jsonl") + ".verified.jsonl")
    if out.resolve() == path.resolve():
        raise OctoError(f"--out {out} is the input file; choose another output path")
    rows = _read_rows(path, args.gold_key, args.completion_key, args.task_key)
    counts: dict[str, int] = {}
    t0 = time.perf_counter()
    show_progress = sys.stderr.isatty() and len(rows) > _BATCH
    with VerifierPool(config) as pool, JsonlWriter(out, mode="w") as writer:
        for start in range(0, len(rows), _BATCH):
            chunk = rows[start:start + _BATCH]
            results = pool.verify_batch(
                golds=[r[args.gold_key] if isinstance(r[args.gold_key], str) else str(r[args.gold_key])
                       for r in chunk],
                completions=[r[args.completion_key] for r in chunk],
                tasks=[r[args.task_key] for r in chunk] if args.task_key else None)
            for row, res in zip(chunk, results):
                d = res.to_dict()
                writer.write({**row, **{k: d[k] for k in _RESULT_KEYS}})
                counts[res.status] = counts.get(res.status, 0) + 1
            if show_progress:
                print(f"\rverified {min(start + _BATCH, len(rows))}/{len(rows)}", end="", file=sys.stderr)
    if show_progress:
        print(file=sys.stderr)
    print(_summary(counts, len(rows), time.perf_counter() - t0))
    print(f"wrote {out}")
    return 0
