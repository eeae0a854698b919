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
from octo.analysis.document import Bullets, Code, Document, Figure, Heading, Para, Table
from octo.analysis.load import Run, load_run, num
from octo.analysis.plots import Plot, checkpoint_colours, cpt_plots, gates_plot, probe_plots, readiness_plot
from octo.analysis.predictors import PREDICTORS
from octo.analysis.score import VERSION, score_run
from octo.errors import OctoError
from octo.runio import (CPT_DIR, EVALS_FILE, GATES_FILE, METRICS_FILE, PROBES_DIR, RECIPE_FILE, REPORT_DIR,
                        SCORES_FILE, parse_probe_id, read_json, write_text_atomic)

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
/* The first column (checkpoint, predictor) stays in view while a wide table scrolls; the key columns
   come right after it, so they fit a 1400 px window whatever the table's width. */
table.sticky th:first-child, table.sticky td:first-child { position: sticky; left: 0; z-index: 1;
       background: #fff; box-shadow: 1px 0 0 #ddd; }
table.sticky th:first-child { background: #f4f4f4; }
table.sticky tr.rec td:first-child { background: #fff4e5; }
th[title] { cursor: help; text-decoration: underline dotted #999; }
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


def _glossary(pct: int, dm: str | None) -> dict[str, str]:
    """One line per column name the report shows (the tables' tooltips and its Glossary section)."""
    acc = dm or "acc/<benchmark>"
    g = {
        "checkpoint": "a saved mid-training model, `<stage>.step-<N>`; ★ marks the recommended one.",
        "rank": "position by readiness, 1 = best; checkpoints whose intervals overlap are tied.",
        "readiness": "the RL-readiness score: Σ weight × component over start, learning, stability, length "
                     "and control (higher is better).",
        "CI": f"{pct}% percentile-bootstrap confidence interval, over held-out problems and, when a checkpoint "
              "has several probe seeds, over seeds.",
        "J": "CPT gate score against the reference checkpoint: w·(domain accuracy gain) − w·max(0, ln of the "
             "ppl/general ratio) − w·(format_rate drop) − w·(refusal drop); higher is better.",
        "Pareto": "yes when no other gated checkpoint is at least as good on domain accuracy, ppl/general and "
                  "format_rate (and refusal_rate) and better on one of them.",
        "verdict": "the gates' stop rule against the reference: pass, or the regression it flags (general, "
                   "behavior, safety) or no domain gain; it ends a stage only with `cpt.gates.on_stop: stop`.",
        "acc 0→final (greedy+sampled)/2": "the probe's held-out accuracy, the mean of greedy and sampled accuracy, "
                                          "at step 0 and at its last evaluation.",
        "gain": "final − step-0 held-out accuracy of the probe: what the short RL probe taught the checkpoint.",
        "start": "component: (1 − f) × step-0 held-out accuracy + f × step-0 format_rate, f = "
                 "start_format_weight.",
        "learning": "component: ½ AUC gain + ½ slope gain of the held-out curve over the probe (a straight rise "
                    "by g scores ¾ g).",
        "stability": "component: −(peak − final held-out accuracy) − the penalties of the detectors that fired.",
        "length": "component: −(late clip ratio + ½ × how much faster incorrect answers grew than correct ones).",
        "control": "component: learning − learning of the checkpoint's negative-control probe (what the reward "
                   "itself taught); – when a checkpoint has no control.",
        "seeds": "probe seeds scored for the checkpoint (controls not counted); with one, the intervals leave "
                 "out seed-to-seed variance.",
        "events": "detectors that fired on the checkpoint's probes (table Detector events).",
        "stage": "the CPT stage that wrote the checkpoint.",
        "step": "the stage's optimizer step at the checkpoint.",
        "tokens": "training tokens the stage had seen at the checkpoint.",
        "ppl/general": "exp of the mean over every data source of the recipe of its held-out log-perplexity, "
                       "each source weighted equally (the general metric M_g): sources the checkpoint never "
                       "trained on dominate it, so it falls steeply once a stage adds them, even when general "
                       "text (ppl/web) does not move (ppl/<source> in gates.jsonl).",
        acc: "greedy accuracy of the CPT checkpoint itself (before any RL) on the held-out problems.",
        "format_rate": "share of the gate's greedy answers with exactly one \\boxed{}.",
        "stab_gap": "stability gap M(t) − M(0): a gate metric at the checkpoint minus the same metric at the "
                    "reference checkpoint M(0).",
        "stab_gap/ppl": "stability gap of ppl/general, M(t) − M(0); positive is a regression.",
        "stab_gap/acc": f"stability gap of {acc}, M(t) − M(0); negative is a regression.",
        "Δ readiness": "readiness of the checkpoint − readiness of the recommended one, paired over the same "
                       "held-out problems.",
        "vs": "the checkpoint the difference is taken against: the recommended one.",
        "paired": "yes when both checkpoints were evaluated on the same held-out problems, so the difference's "
                  "interval is paired.",
    }
    g.update({
        "start/acc": "held-out accuracy of the checkpoint before any RL (probe step 0), mean of greedy and "
                     "sampled.",
        "start/pass@1": "chance that one sample at step 0 solves a held-out problem (unbiased estimator, Chen et "
                        "al. 2021).",
        "start/pass@k": "chance that at least one of k samples at step 0 solves it, k = samples per problem; RL "
                        "mostly moves pass@1 toward it (arXiv 2504.13837).",
        "start/headroom": "pass@k − pass@1 at step 0: what RL could draw out by making the model's own best "
                          "answers its first.",
        "start/learnable_mass": "mean p(1−p) over RL prompts at step 0, p = a prompt's success rate: GRPO learns "
                                "only from prompts it sometimes solves (arXiv 2504.03380).",
        "probe/learnable_mass": "the same mean p(1−p), over the probe's training groups.",
        "probe/learnable_mass_trend": "change of the training groups' p(1−p) over the probe (slope × span); "
                                      "negative: the prompts RL can learn from are running out.",
        "final/acc": "held-out accuracy at the probe's last evaluation, mean of greedy and sampled.",
        "sigmoid/predicted": "accuracy a full RL run would reach: ScaleRL's sigmoid of accuracy against rollout "
                             "tokens, fitted to the probe and read at the full run's compute (arXiv 2510.13786).",
        "entropy_law/ceiling": "accuracy at zero entropy, b − a of R = −a·exp(H) + b fitted over the probe "
                               "(arXiv 2505.22617); a cross-check on the sigmoid.",
        "combined": "intercept + Σ coefficient × predictor, coefficients from analysis.combination.",
    })
    g.update({name: text for name, text in PREDICTORS.items() if name not in g and name != "readiness"})
    return g


def _summary_rows(scores: dict) -> list[dict]:
    tied = set(scores["ties"][0]) if scores.get("ties") and scores["recommended"] in scores["ties"][0] else set()
    rows = []
    for cid in scores["ranking"]:
        c = scores["checkpoints"][cid]
        m = c.get("metrics", {})
        g = c.get("gates") or {}
        start, final = num(m.get("start/acc")), num(m.get("final/acc"))
        rows.append({
            "rank": c.get("rank"), "checkpoint": cid, "stage": c.get("stage") or "", "score": c["score"],
            "ci": c["ci"], **{k: c["components"].get(k) for k in COMPONENTS},
            "acc": f"{_f(start)} → {_f(final)}",
            "gain": None if start is None or final is None else final - start,
            "events": ", ".join(sorted({e["detector"] for e in c.get("events", [])})) or "none",
            "J": g.get("J"), "pareto": g.get("pareto"), "verdict": g.get("verdict"),
            "seeds": len(c["probes"]) - len(c.get("control_probes", [])),
            "recommended": cid == scores["recommended"], "tie": cid in tied and cid != scores["recommended"],
        })
    return rows


# Key columns first (checkpoint, rank, readiness and its CI, the gates' J, Pareto and verdict): a reader
# sees them in a 1400 px window however many components follow.
SUMMARY_HEAD = ["checkpoint", "rank", "readiness", "CI", "J", "Pareto", "verdict", "acc 0→final (greedy+sampled)/2",
                "gain",
                *COMPONENTS, "seeds", "events", "stage"]
SUMMARY_KEY = 7


def _yes_no(x) -> str:
    return "–" if x is None else ("yes" if x else "no")


def _summary_cells(r: dict) -> list[str]:
    mark = " ★" if r["recommended"] else (" (tie)" if r["tie"] else "")
    return [r["checkpoint"] + mark, str(r["rank"]), _f(r["score"]), _ci(r["ci"]), _f(r["J"]), _yes_no(r["pareto"]),
            r["verdict"] or "–", r["acc"], "–" if r["gain"] is None else f"{r['gain']:+.3f}",
            *[_f(r[k]) for k in COMPONENTS], str(r["seeds"]), r["events"], r["stage"]]


GATE_HEAD = ["checkpoint", "J", "Pareto", "verdict", "readiness", "rank", "stage", "step", "tokens", "ppl/general",
             "DOMAIN", "format_rate", "stab_gap/ppl", "stab_gap/acc"]
GATE_KEY = 6


def _gate_head(dm: str | None) -> list[str]:
    return [dm or "acc" if h == "DOMAIN" else h for h in GATE_HEAD]


def _gate_cells(row: dict, dm: str | None) -> list[str]:
    tokens = num(row.get("tokens"))
    return [row["checkpoint_id"] + (" (reference)" if row.get("reference") else ""), _f(row.get("J")),
            _yes_no(row.get("pareto")), row.get("verdict") or "–", _f(row.get("readiness")),
            "–" if row.get("rank") is None else str(row["rank"]), row["stage"], str(row["step"]),
            "–" if tokens is None else f"{tokens:,.0f}", _f(row.get("ppl/general"), 2),
            _f(row.get(dm)) if dm else "–", _f(row.get("format_rate")), _f(row.get("stab_gap/ppl/general"), 2),
            _f(row.get(f"stab_gap/{dm}")) if dm else "–"]


def _general_sources(run: Run, table: dict) -> str | None:
    """Which sources carry ppl/general at the reference, and whether the reference's stage trained on them:
    ppl/general weights every source equally, so one the stage never saw dominates it (docs/analysis.md)."""
    ref = next((r for r in table.get("rows", []) if r.get("reference")), None)
    if ref is None:
        return None
    ppl = {k[4:]: num(v) for k, v in ref.items() if k.startswith("ppl/") and k != "ppl/general" and num(v)}
    if len(ppl) < 2:
        return None
    try:
        mixture = set((run.recipe or {})["cpt"]["stages"][ref["stage"]]["mixture"])
    except (KeyError, TypeError):
        mixture = None
    top = sorted(ppl, key=ppl.get, reverse=True)[:3]

    def one(src: str) -> str:
        unseen = mixture is not None and src not in mixture
        return f"{src} {ppl[src]:,.1f}" + (f" (not in {ref['stage']}'s mixture)" if unseen else "")

    return (f"ppl/general is exp of the mean log-perplexity of {len(ppl)} sources, each weighted equally, so the "
            f"highest dominate it; at the reference {ref['checkpoint_id']}: " + ", ".join(one(s) for s in top)
            + ". A stage that adds such a source lowers ppl/general whatever happens to the others.")


def _predictor_rows(scores: dict) -> tuple[list[str], list[list[str]]]:
    """Predictors as rows, checkpoints as columns (few checkpoints, many predictors: this way it fits)."""
    ids = scores["ranking"]
    names = [n for n in PREDICTORS if n != "readiness"
             and any(n in (scores["checkpoints"][c].get("predictors") or {}) for c in ids)]
    rows = []
    for name in names:
        cells = [name]
        for cid in ids:
            p = (scores["checkpoints"][cid].get("predictors") or {}).get(name)
            cells.append("–" if not p else f"{_f(p.get('value'))} {_ci(p.get('ci'))}".strip())
        rows.append(cells)
    return ["predictor", *ids], rows


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


def _checkpoint_order(run: Run, scores: dict) -> list[str]:
    """Every checkpoint the report shows, probed ones first, each group in stage order then step: the order
    colours are handed out in, so a checkpoint keeps its colour whatever its rank."""
    stage_no = {name: i for i, name in enumerate(run.stages)}

    def key(cid: str):
        parsed = parse_probe_id(cid)
        step = int(cid.rsplit("-", 1)[-1]) if parsed["stage"] else 0
        return stage_no.get(parsed["stage"], len(stage_no)), parsed["stage"] or cid, step

    probed = sorted(scores["ranking"], key=key)
    gated = [r["checkpoint_id"] for r in (scores.get("gates") or {}).get("rows", [])]
    return probed + sorted((c for c in dict.fromkeys(gated) if c not in probed), key=key)


def _stage_colours(run: Run, scores: dict, colours: dict[str, str]) -> dict[str, tuple[str, str]]:
    """stage -> (checkpoint, colour) for the CPT loss plot: the stage's last probed checkpoint, else its
    last gated one, else a colour of its own."""
    out = {}
    order = _checkpoint_order(run, scores)
    for name in run.stages:
        mine = sorted((c for c in order if parse_probe_id(c)["stage"] == name),
                      key=lambda c: int(c.rsplit("-", 1)[-1]))
        probed = [c for c in mine if c in scores["checkpoints"]]
        pick = (probed or mine or [None])[-1]
        if pick is not None:
            out[name] = (pick, colours[pick])
    return out


def make_plots(run: Run, scores: dict, out_dir: Path, omitted: list[str] | None = None) -> list[Plot]:
    """Every plot of the report, one colour per checkpoint in all of them; a plot without data is left out
    and ``omitted`` gets one line saying why."""
    omitted = omitted if omitted is not None else []
    colours = checkpoint_colours(_checkpoint_order(run, scores))
    groups: dict[str, list] = {}
    order = {cid: i for i, cid in enumerate(scores["ranking"])}
    for probe in sorted(run.probes, key=lambda p: (order.get(p.checkpoint_id, len(order)), p.probe_id)):
        groups.setdefault(probe.checkpoint_id, []).append(probe)
    events = [e for c in scores["checkpoints"].values() for e in c.get("events", [])]
    plots = [readiness_plot([{"id": cid, "score": scores["checkpoints"][cid]["score"],
                              "ci": scores["checkpoints"][cid]["ci"]} for cid in scores["ranking"]],
                            out_dir, recommended=scores["recommended"], colours=colours)]
    plots += probe_plots(groups, out_dir, events=events, colours=colours, omitted=omitted)
    plots += cpt_plots(run, out_dir, stage_colours=_stage_colours(run, scores, colours), omitted=omitted)
    table = scores.get("gates") or {}
    gp = gates_plot(table, out_dir, colours=colours)
    if gp is not None:
        plots.append(gp)
    elif table.get("rows"):
        omitted.append("CPT gates: not drawn; no gated checkpoint after the reference has both ppl/general and "
                       "a domain accuracy.")
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
    omitted: list[str] = []
    plots = make_plots(run, scores, out, omitted)
    doc = report_document(run, scores, plots, int(round(cfg.ci_level * 100)), omitted)
    index = out / "index.html"
    write_text_atomic(index, doc.html(CSS))
    write_text_atomic(out / "report.md", doc.markdown(out))
    for path in (index, out / "report.md"):
        path.chmod(0o644)          # atomic writes create 0600 temp files; a report is meant to be shared
    return index


def _score_text(scores: dict) -> str:
    """What the readiness column holds (analysis.rank_by)."""
    cfg = scores.get("config", {})
    if cfg.get("rank_by") == "combined" and all("readiness/components" in c.get("metrics", {})
                                                 for c in scores["checkpoints"].values()):
        terms = " + ".join(f"{v:g} × {k}" for k, v in cfg.get("combination", {}).items())
        return (f"Score = the combined predictor (analysis.rank_by: combined), {cfg.get('combination_intercept', 0):g}"
                f" + {terms}; the components' score is in scores.json as readiness/components")
    return "Score = Σ weight × component"


def _interval_scope(scores: dict) -> str:
    """What the intervals resample: seeds only where every checkpoint has several probe seeds."""
    seeds = [c.get("seeds", 1) for c in scores["checkpoints"].values()]
    if min(seeds) > 1:
        return "held-out problems and probe seeds"
    if max(seeds) == 1:
        return ("held-out problems only: each checkpoint has one probe seed, so seed-to-seed variance is not in "
                "them (`probe.seeds: [0, 1, 2]` adds it)")
    return "held-out problems, and probe seeds for the checkpoints with several (column seeds)"


def report_document(run: Run, scores: dict, plots: list[Plot], pct: int,
                    omitted: list[str] | None = None) -> Document:
    """The report as one model (octo.analysis.document), rendered to HTML and to Markdown."""
    summary = _summary_rows(scores)
    table = scores.get("gates") or {"rows": []}
    dm = table.get("domain_metric")
    gloss = _glossary(pct, dm)

    def titles(head: list[str], alias: dict[str, str] | None = None) -> list[str]:
        return [gloss.get((alias or {}).get(h, h), "").replace("`", "") for h in head]   # a tooltip is plain text

    gate_rows = [_gate_cells(r, dm) for r in table["rows"]]
    events, diffs = _events(scores), _differences(scores)
    excluded = [[e["probe_id"], e["reason"]] for e in scores.get("excluded", [])]
    tie_text = "; ".join(", ".join(g) for g in scores.get("ties", [])) or "none"
    n_probes = sum(len(c["probes"]) for c in scores["checkpoints"].values())
    pred_head, pred_rows = _predictor_rows(scores)
    doc = Document(f"octo report — {run.name}")
    doc.add(Para(f"{len(scores['ranking'])} probed checkpoints, {n_probes} probes, generated "
                 f"{time.strftime('%Y-%m-%d %H:%M:%S')} from `{run.path}`", "muted"),
            Para(f"**Recommended checkpoint: {scores['recommended']}** — {scores['reason']}"
                 + (f" CPT gates beside it: {scores['cpt_choice']['relation']}" if scores.get("cpt_choice") else ""),
                 "box", "recommendation"),
            Heading("Readiness summary"),
            Para(f"{_score_text(scores)}; {pct}% bootstrap intervals over {_interval_scope(scores)}. Ties "
                 f"(intervals overlap): {tie_text}. Column names are explained in the Glossary at the end "
                 "(and on hover).", "muted"),
            Table(SUMMARY_HEAD, [_summary_cells(r) for r in summary], "summary", left=1,
                  row_classes=["rec" if r["recommended"] else "" for r in summary],
                  titles=titles(SUMMARY_HEAD), key=SUMMARY_KEY),
            Heading("CPT gates beside readiness"),
            Para(f"Reference M(0): {table.get('reference') or 'none'}; stability gap stab_gap = M(t) − M(0); J is "
                 "the gate score and verdict the stop rule (Glossary).", "muted"))
    general = _general_sources(run, table)
    doc.add(Table(_gate_head(dm), gate_rows, "gates", left=1, titles=titles(_gate_head(dm), {"acc": "acc/<benchmark>"}),
                  key=GATE_KEY) if gate_rows else Para("No cpt/*/gates.jsonl in this run.", id="gates"),
            Para(general, "muted", "general-sources") if gate_rows and general else None)
    if pred_rows:
        doc.add(Heading("Predictors"),
                Para(f"Each predictor with its {pct}% interval, per checkpoint (docs/analysis.md, Predictors); "
                     "what each one is: Glossary.", "muted"),
                Table(pred_head, pred_rows, "predictors", left=1))
    doc.add(Heading("Detector events"),
            Table(["checkpoint", "probe", "detector", "step", "detail"], events, "events", left=5) if events
            else Para("No detector fired.", id="events"))
    if diffs:
        head = ["checkpoint", "vs", "Δ readiness", f"{pct}% CI", "paired"]
        doc.add(Heading("Differences from the recommended checkpoint"),
                Table(head, diffs, "differences", titles=titles(head, {f"{pct}% CI": "CI"})))
    if excluded or scores.get("notes"):
        doc.add(Heading("Notes"), *[Para(n) for n in scores.get("notes", [])])
        if excluded:
            doc.add(Table(["probe", "why it was not scored"], excluded, "excluded"))
    doc.add(Heading("Plots"))
    if omitted:
        doc.add(Para("Left out for lack of data:", id="omitted"), Bullets(list(omitted)))
    doc.add(*[Figure(p.path, p.title, p.caption, p.name) for p in plots])
    shown = [*SUMMARY_HEAD, *(_gate_head(dm) if gate_rows else []), *(h for h, *_ in pred_rows)]
    if diffs:
        shown += ["vs", "Δ readiness", "paired"]
    words = [w for w in dict.fromkeys(shown) if w in gloss]
    if gate_rows:
        words.append("stab_gap")
    doc.add(Heading("Glossary"), Bullets([f"`{w}`: {gloss[w]}" for w in words]),
            Heading("Analysis settings"), Code(json.dumps(scores.get("config", {}), indent=2), "AnalysisConfig"))
    return doc
