"""``octo compare``: checkpoints, branches or whole runs side by side, with differences and their CIs.

    octo compare runs/quickstart                          # its checkpoints (e.g. Long / Short / Hybrid)
    octo compare runs/a runs/b --out compare/            # two runs; Markdown, JSON and plots in compare/
    octo compare runs/a/probes/decay-long.step-8 runs/a/probes/decay-short.step-8

A run directory gives every probed checkpoint, a probe directory one entry (probes of one checkpoint
pool as seeds). All entries are scored together, so those on the same held-out set get paired
bootstrap draws; differences are taken against the best-ranked entry unless ``--baseline`` names one.
"""

from __future__ import annotations

from pathlib import Path

from octo.analysis.config import COMPONENTS, AnalysisConfig, load_analysis_config
from octo.analysis.load import Probe, is_probe_dir, load_probe, load_run
from octo.analysis.score import CheckpointScore, difference, score_groups, tie_groups
from octo.errors import OctoError
from octo.runio import PROBES_DIR, RECIPE_FILE, write_json_atomic, write_text_atomic

DIFF_KEYS = ("score", "final/acc", "learning", "start", "stability", "length")


def _source_name(probe_dir: Path) -> str:
    return probe_dir.parent.parent.name if probe_dir.parent.name == PROBES_DIR else probe_dir.parent.name


def collect(paths: list[str | Path]) -> tuple[dict[str, list[Probe]], Path | None]:
    """Entries (label -> probes) in argument order, and the first run directory seen (for its config)."""
    keyed: dict[tuple[str, str], list[Probe]] = {}
    seen: set[Path] = set()
    first_run: Path | None = None
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise OctoError(f"{path} does not exist; pass run directories (runs/<name>) or probe directories "
                            "(runs/<name>/probes/<probe-id>)")
        if (path / PROBES_DIR).is_dir() or (path / RECIPE_FILE).exists():
            run = load_run(path)
            first_run = first_run or run.path
            found = [(run.name, p) for p in run.probes]
        elif is_probe_dir(path):
            found = [(_source_name(path.resolve()), load_probe(path))]
        else:
            raise OctoError(f"{path} is neither a run directory (with {PROBES_DIR}/) nor a probe directory (with "
                            "evals.jsonl); pass runs/<name> or runs/<name>/probes/<probe-id>")
        for source, probe in found:
            real = probe.path.resolve()
            if real in seen:
                continue
            seen.add(real)
            keyed.setdefault((source, probe.checkpoint_id), []).append(probe)
    if not keyed:
        raise OctoError("nothing to compare; pass at least one run or probe directory with evaluations")
    one_source = len({s for s, _ in keyed}) == 1
    groups: dict[str, list[Probe]] = {}
    for (source, ckpt), probes in keyed.items():
        label = ckpt if one_source else f"{source}:{ckpt}"
        while label in groups:
            label += "'"
        groups[label] = probes
    return groups, first_run


def _f(x, nd: int = 3) -> str:
    return "–" if x is None else f"{x:.{nd}f}"


def _diff_text(d: dict | None) -> str:
    return "–" if d is None else f"{d['diff']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]"


def _rows(ranked: list[CheckpointScore], diffs: dict, baseline: str) -> tuple[list[str], list[list[str]]]:
    head = ["entry", "probes", "readiness [CI]", f"Δ vs {baseline} [CI]", *COMPONENTS,
            "held-out acc start → final", "Δ final acc [CI]", "clip late", "events", "rollout tokens"]
    rows = []
    for r in ranked:
        d = diffs.get(r.checkpoint_id, {})
        m = r.metrics
        tokens = m.get("rollout_tokens")
        rows.append([
            r.checkpoint_id + (" (baseline)" if r.checkpoint_id == baseline else ""),
            f"{len(r.probes)}" + (f"+{len(r.controls)} control" if r.controls else ""),
            f"{r.score:.3f} [{r.ci[0]:.3f}, {r.ci[1]:.3f}]",
            "–" if r.checkpoint_id == baseline else _diff_text(d.get("score")),
            *[_f(r.components.get(c)) for c in COMPONENTS],
            f"{_f(m.get('start/acc'))} → {_f(m.get('final/acc'))}",
            "–" if r.checkpoint_id == baseline else _diff_text(d.get("final/acc")),
            _f(m.get("length/clip_late")),
            ", ".join(sorted({e.detector for e in r.events})) or "none",
            "–" if tokens is None else f"{tokens:,.0f}",
        ])
    return head, rows


def text_table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def md_table(head: list[str], rows: list[list[str]]) -> str:
    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    return "\n".join(["| " + " | ".join(esc(h) for h in head) + " |", "|" + "---|" * len(head)]
                     + ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows])


def compare(paths: list[str | Path], *, out: str | Path | None = None, config: AnalysisConfig | None = None,
            baseline: str | None = None, overrides: list[str] | None = None) -> dict:
    """Score the entries of ``paths`` together (settings of the first run directory plus ``overrides``) and
    compare them; with ``out``, write compare.md, compare.json and PNGs there."""
    groups, first_run = collect(paths)
    cfg = config if config is not None else load_analysis_config(first_run, overrides)
    ranked, excluded, notes = score_groups(groups, cfg)
    if not ranked:
        raise OctoError("no entry has held-out evaluations at two or more steps; nothing to compare yet")
    by_label = {r.checkpoint_id: r for r in ranked}
    if baseline is not None and baseline not in by_label:
        raise OctoError(f"--baseline '{baseline}' is not an entry; entries: {', '.join(by_label)}")
    base = by_label[baseline] if baseline else ranked[0]
    diffs = {r.checkpoint_id: {k: difference(r, base, k, cfg) for k in DIFF_KEYS}
             for r in ranked if r is not base}
    head, rows = _rows(ranked, diffs, base.checkpoint_id)
    pct = int(round(cfg.ci_level * 100))
    ties = tie_groups(ranked)
    lines = [text_table(head, rows), "",
             f"readiness = Σ weight × component; [{pct}% bootstrap CI]; Δ = entry − {base.checkpoint_id}, paired "
             "over problems when both used the same held-out set."]
    if ties:
        lines.append("ties (CIs overlap): " + "; ".join(", ".join(g) for g in ties))
    lines += notes
    for e in excluded:
        lines.append(f"not scored: {e['probe_id']} ({e['reason']})")
    result = {
        "entries": {r.checkpoint_id: {"score": r.score, "ci": list(r.ci), "components": r.components,
                                      "component_cis": r.component_cis, "metrics": r.metrics,
                                      "metric_cis": r.metric_cis, "probes": [p.probe.probe_id for p in r.probes],
                                      "control_probes": [p.probe.probe_id for p in r.controls],
                                      "events": [e.to_dict() for e in r.events]} for r in ranked},
        "ranking": [r.checkpoint_id for r in ranked], "ties": ties, "baseline": base.checkpoint_id,
        "differences": diffs, "excluded": excluded, "notes": notes,
        "table": "\n".join(lines), "files": [],
    }
    md_diff_head = ["entry", *[f"Δ {k} [CI]" for k in DIFF_KEYS], "paired"]
    md_diff_rows = [[label, *[_diff_text(d.get(k)) for k in DIFF_KEYS],
                     "yes" if (d.get("score") or {}).get("paired") else "no"] for label, d in diffs.items()]
    md = ["# octo compare", "", md_table(head, rows), "",
          f"Readiness = Σ weight × component with {pct}% bootstrap intervals; ties: "
          + ("; ".join(", ".join(g) for g in ties) or "none") + ".", ""]
    if md_diff_rows:
        md += [f"## Differences from {base.checkpoint_id}", "", md_table(md_diff_head, md_diff_rows), ""]
    result["markdown"] = "\n".join(md)
    if out is not None:
        from octo.analysis.plots import probe_plots, readiness_plot

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        plots = [readiness_plot([{"id": r.checkpoint_id, "score": r.score, "ci": r.ci} for r in ranked], out)]
        events = [e.to_dict() for r in ranked for e in r.events]
        plots += probe_plots({r.checkpoint_id: [p.probe for p in r.probes + r.controls] for r in ranked}, out,
                             events=events)
        md += ["## Plots", ""] + [f"### {p.title}\n\n![{p.title}]({p.path.name})\n" for p in plots]
        result["markdown"] = "\n".join(md)
        write_text_atomic(out / "compare.md", result["markdown"])
        write_json_atomic(out / "compare.json", {k: v for k, v in result.items() if k not in ("table", "markdown")})
        result["files"] = [str(out / "compare.md"), str(out / "compare.json")] + [str(p.path) for p in plots]
    return result
