"""The run report: ``report/index.html`` (self-contained) and ``report/report.md`` with its PNGs.

    path = write_report("runs/quickstart")        # -> runs/quickstart/report/index.html

Both are renderings of one model (:func:`report_document`, octo.analysis.document): index.html embeds
every image as a base64 ``data:`` URI and its CSS inline; report.md links the PNG files written beside it. Scores are (re)computed when scores.json is missing, was
written by another version, or is older than any probe or gate log of the run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from octo.analysis.config import COMPONENTS, AnalysisConfig, load_analysis_config
from octo.analysis.document import Code, Document, Figure, Heading, Para, Table
from octo.analysis.load import Run, load_run, num
from octo.analysis.plots import Plot, cpt_plots, gates_plot, probe_plots, readiness_plot
from octo.analysis.score import VERSION, score_run
from octo.errors import OctoError
from octo.runio import (CPT_DIR, EVALS_FILE, GATES_FILE, METRICS_FILE, PROBES_DIR, RECIPE_FILE, REPORT_DIR,
                        SCORES_FILE, read_json, write_text_atomic)

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1250px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.6em 0; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: right; white-space: nowrap; }
th { background: #f4f4f4; } td.l, th.l { text-align: left; }
tr.rec td { background: #fff4e5; font-weight: 600; }
.box { background: #f0f7ff; border-left: 4px solid #1f77b4; padding: 0.7em 1em; margin: 1em 0; }
.muted { color: #777; font-size: 0.85em; } .tie { color: #b35c00; font-size: 0.8em; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; } code { font-size: 0.9em; }
.scroll { overflow-x: auto; }
"""


def _f(x, nd: int = 3) -> str:
    x = num(x)
    return "–" if x is None else f"{x:.{nd}f}"


def _ci(ci, nd: int = 3) -> str:
    if not ci or num(ci[0]) is None:
        return "–"
    return f"[{_f(ci[0], nd)}, {_f(ci[1], nd)}]"


def _newest_input(run_dir: Path) -> float:
    newest = 0.0
    paths = [run_dir / RECIPE_FILE]
    for name in (EVALS_FILE, METRICS_FILE):
        paths += list((run_dir / PROBES_DIR).glob(f"*/{name}"))
    paths += list((run_dir / CPT_DIR).glob(f"*/{GATES_FILE}"))
    for p in paths:
        try:
            newest = max(newest, p.stat().st_mtime)
        except OSError:
            continue
    return newest


def _same_probes(scores: dict, run: Run) -> bool:
    scored = {pid for c in scores["checkpoints"].values() for pid in c.get("probes", [])}
    excluded = {e.get("probe_id") for e in scores.get("excluded", [])}
    current = {p.probe_id for p in run.probes}
    return scored <= current and current <= scored | excluded


def ensure_scores(run_dir: Path, config: AnalysisConfig | None = None, run: Run | None = None) -> dict:
    """scores.json of the run, recomputed when missing, unreadable, from another version, older than a
    log or the recipe of the run, or written for another set of probes (``run``, when given)."""
    path = run_dir / SCORES_FILE
    if config is None and path.exists():
        try:
            fresh = path.stat().st_mtime >= _newest_input(run_dir)
            scores = read_json(path) if fresh else None
        except (OctoError, OSError):
            scores = None
        usable = (isinstance(scores, dict) and scores.get("version") == VERSION
                  and isinstance(scores.get("checkpoints"), dict))
        if usable and (run is None or _same_probes(scores, run)):
            return scores
    return score_run(run_dir, config)


def _summary_rows(scores: dict) -> list[dict]:
    tied = set(scores["ties"][0]) if scores.get("ties") and scores["recommended"] in scores["ties"][0] else set()
    rows = []
    for cid in scores["ranking"]:
        c = scores["checkpoints"][cid]
        m = c.get("metrics", {})
        g = c.get("gates") or {}
        rows.append({
            "rank": c.get("rank"), "checkpoint": cid, "stage": c.get("stage") or "", "score": c["score"],
            "ci": c["ci"], **{k: c["components"].get(k) for k in COMPONENTS},
            "acc": f"{_f(m.get('start/acc'))} → {_f(m.get('final/acc'))}",
            "events": ", ".join(sorted({e["detector"] for e in c.get("events", [])})) or "none",
            "J": g.get("J"), "pareto": g.get("pareto"), "verdict": g.get("verdict"),
            "seeds": len(c["probes"]) - len(c.get("control_probes", [])),
            "recommended": cid == scores["recommended"], "tie": cid in tied and cid != scores["recommended"],
        })
    return rows


SUMMARY_HEAD = ["rank", "checkpoint", "stage", "readiness", "CI", *COMPONENTS, "held-out acc (start → final)",
                "seeds", "events", "J", "Pareto", "verdict"]


def _summary_cells(r: dict, pct: int) -> list[str]:
    mark = " ★ recommended" if r["recommended"] else (" (tie)" if r["tie"] else "")
    return [str(r["rank"]), r["checkpoint"] + mark, r["stage"], _f(r["score"]), _ci(r["ci"]),
            *[_f(r[k]) for k in COMPONENTS], r["acc"], str(r["seeds"]), r["events"], _f(r["J"]),
            "–" if r["pareto"] is None else ("yes" if r["pareto"] else "no"), r["verdict"] or "–"]


def _gate_head(dm: str | None) -> list[str]:
    return ["checkpoint", "stage", "step", "tokens", "ppl/general", dm or "acc", "format_rate",
            "stab_gap/ppl/general", f"stab_gap/{dm or 'acc'}", "J", "Pareto", "verdict", "readiness", "rank"]


def _gate_cells(row: dict, dm: str | None) -> list[str]:
    tokens = num(row.get("tokens"))
    return [row["checkpoint_id"] + (" (reference)" if row.get("reference") else ""), row["stage"],
            str(row["step"]), "–" if tokens is None else f"{tokens:,.0f}", _f(row.get("ppl/general"), 2),
            _f(row.get(dm)) if dm else "–", _f(row.get("format_rate")), _f(row.get("stab_gap/ppl/general"), 2),
            _f(row.get(f"stab_gap/{dm}")) if dm else "–", _f(row.get("J")),
            "–" if row.get("pareto") is None else ("yes" if row["pareto"] else "no"), row.get("verdict") or "–",
            _f(row.get("readiness")), "–" if row.get("rank") is None else str(row["rank"])]


def _events(scores: dict) -> list[list[str]]:
    out = []
    for cid in scores["ranking"]:
        for e in scores["checkpoints"][cid].get("events", []):
            out.append([cid, e["probe_id"], e["detector"], str(e["step"]), e["detail"]])
    return out


def _differences(scores: dict) -> list[list[str]]:
    out = []
    for cid in scores["ranking"]:
        d = scores.get("differences", {}).get(cid)
        if d:
            out.append([cid, d["vs"], f"{d['diff']:+.3f}", _ci(d["ci"]), "yes" if d.get("paired") else "no"])
    return out


def make_plots(run: Run, scores: dict, out_dir: Path) -> list[Plot]:
    groups: dict[str, list] = {}
    order = {cid: i for i, cid in enumerate(scores["ranking"])}
    for probe in sorted(run.probes, key=lambda p: (order.get(p.checkpoint_id, len(order)), p.probe_id)):
        groups.setdefault(probe.checkpoint_id, []).append(probe)
    events = [e for c in scores["checkpoints"].values() for e in c.get("events", [])]
    plots = [readiness_plot([{"id": cid, "score": scores["checkpoints"][cid]["score"],
                              "ci": scores["checkpoints"][cid]["ci"]} for cid in scores["ranking"]],
                            out_dir, recommended=scores["recommended"])]
    plots += probe_plots(groups, out_dir, events=events)
    plots += cpt_plots(run, out_dir)
    gp = gates_plot(scores.get("gates") or {}, out_dir)
    if gp is not None:
        plots.append(gp)
    return plots


def write_report(run_dir: str | Path, config: AnalysisConfig | None = None) -> Path:
    """Write ``report/index.html`` and ``report/report.md`` (+ PNGs) for a run; returns index.html's path."""
    run = load_run(run_dir)
    cfg = config if config is not None else load_analysis_config(run.path)
    scores = ensure_scores(run.path, config, run)
    out = run.path / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    doc = report_document(run, scores, make_plots(run, scores, out), int(round(cfg.ci_level * 100)))
    index = out / "index.html"
    write_text_atomic(index, doc.html(CSS))
    write_text_atomic(out / "report.md", doc.markdown(out))
    for path in (index, out / "report.md"):
        path.chmod(0o644)          # atomic writes create 0600 temp files; a report is meant to be shared
    return index


def report_document(run: Run, scores: dict, plots: list[Plot], pct: int) -> Document:
    """The report as one model (octo.analysis.document), rendered to HTML and to Markdown."""
    summary = _summary_rows(scores)
    table = scores.get("gates") or {"rows": []}
    dm = table.get("domain_metric")
    gate_rows = [_gate_cells(r, dm) for r in table["rows"]]
    events, diffs = _events(scores), _differences(scores)
    excluded = [[e["probe_id"], e["reason"]] for e in scores.get("excluded", [])]
    tie_text = "; ".join(", ".join(g) for g in scores.get("ties", [])) or "none"
    n_probes = sum(len(c["probes"]) for c in scores["checkpoints"].values())
    doc = Document(f"octo report — {run.name}")
    doc.add(Para(f"{len(scores['ranking'])} probed checkpoints, {n_probes} probes, generated "
                 f"{time.strftime('%Y-%m-%d %H:%M:%S')} from `{run.path}`", "muted"),
            Para(f"**Recommended checkpoint: {scores['recommended']}** — {scores['reason']}", "box", "recommendation"),
            Heading("Readiness summary"),
            Para(f"Score = Σ weight × component; {pct}% bootstrap intervals over problems and seeds. Ties "
                 f"(intervals overlap): {tie_text}.", "muted"),
            Table(SUMMARY_HEAD, [_summary_cells(r, pct) for r in summary], "summary",
                  row_classes=["rec" if r["recommended"] else "" for r in summary]),
            Heading("CPT gates beside readiness"),
            Para(f"Reference M(0): {table.get('reference') or 'none'}; stability gap = M(t) − M(0); J and the stop "
                 "rule as in seed 001.", "muted"),
            Table(_gate_head(dm), gate_rows, "gates") if gate_rows
            else Para("No cpt/*/gates.jsonl in this run.", id="gates"),
            Heading("Detector events"),
            Table(["checkpoint", "probe", "detector", "step", "detail"], events, "events", left=5) if events
            else Para("No detector fired.", id="events"))
    if diffs:
        doc.add(Heading("Differences from the recommended checkpoint"),
                Table(["checkpoint", "vs", "Δ readiness", f"{pct}% CI", "paired"], diffs, "differences"))
    if excluded or scores.get("notes"):
        doc.add(Heading("Notes"), *[Para(n) for n in scores.get("notes", [])])
        if excluded:
            doc.add(Table(["probe", "why it was not scored"], excluded, "excluded"))
    doc.add(Heading("Plots"), *[Figure(p.path, p.title, p.caption, p.name) for p in plots],
            Heading("Analysis settings"), Code(json.dumps(scores.get("config", {}), indent=2), "AnalysisConfig"))
    return doc
