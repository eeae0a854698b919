"""Matplotlib PNGs of a run: probe dynamics overlaid over all probes, CPT loss and mixtures, readiness.

Figures are drawn with matplotlib's object API (``matplotlib.figure.Figure``, Agg canvas): no
pyplot state, no display needed, and matplotlib is imported only when a plot is drawn.

Colour means checkpoint, nothing else: one mapping (:func:`checkpoint_colours`) colours a
checkpoint's probe lines, its readiness bar, its gate point and the CPT loss of its stage, and every
artist drawn for a checkpoint carries ``gid="ckpt:<id>"`` so that tests can check it. What stands out
(the recommended checkpoint, the Pareto set) is marked by an outline, a marker or a label instead.
Data sources in the mixture plot are greys and hatches, never a checkpoint's hue.

Probe plots draw one line per probe; greedy held-out accuracy is solid and sampled is dashed;
negative-control probes are dotted. A detector event is a dotted vertical line at its onset step in
the plot of the metric it watches. A plot (or a panel) with no data is not drawn; the reason goes
to the ``omitted`` list the caller passes, for the report to say.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from octo.analysis.load import Probe, Run, num
from octo.analysis.series import column, has

DPI = 90


@dataclass
class Plot:
    name: str          # file stem, e.g. "acc"
    title: str
    path: Path
    caption: str


# name -> (title, source file, [(key, panel title)], detectors marked, caption)
PROBE_PLOTS: dict[str, tuple] = {
    "acc": ("Held-out accuracy vs step", "evals", [("acc", "greedy (solid) and sampled (dashed)")],
            ("collapse", "reward_hacking"),
            "Held-out accuracy at each evaluation: greedy (solid) and mean of k samples (dashed)."),
    "length": ("Mean completion length vs step", "metrics",
               [("len/mean", "all"), ("len/correct", "correct"), ("len/incorrect", "incorrect")],
               ("length_explosion",), "Mean completion tokens of the training rollouts: all, correct, incorrect."),
    "clip": ("Clip ratio and max_len vs step", "metrics", [("clip_ratio", "clip_ratio"), ("max_len", "max_len")],
             ("length_explosion",), "Share of rollouts cut at max_len, and the max_len schedule."),
    "reward": ("Train reward vs step", "metrics", [("reward/mean", "reward/mean")], ("reward_hacking",),
               "Mean reward of the training rollouts."),
    "entropy": ("Policy entropy vs step", "metrics", [("entropy", "entropy")], ("entropy_collapse",),
                "Mean token entropy of the policy on its rollouts."),
    "kl": ("KL to the reference vs step", "metrics", [("kl", "kl")], ("kl_blowup",),
           "KL divergence of the policy to the reference model (logged only when the KL coefficient beta > 0)."),
    "repetition": ("Repetition and multi-boxed rates vs step", "metrics",
                   [("repeat_rate", "repeat_rate"), ("multi_boxed_rate", "multi_boxed_rate")],
                   ("repetition", "multi_boxed"), "Share of rollouts with a repeated span, and with more than one "
                                                  "\\boxed{}."),
}


def legend_width(labels: list[str]) -> float:
    """Inches a fontsize-7 legend of these labels needs (handle + text)."""
    return 0.75 + 0.06 * max((len(x) for x in labels), default=10)


def _figure(ncols: int = 1, *, height: float = 3.8, width: float | None = None, legend_in: float = 0.0,
            left_in: float = 0.75):
    """A figure with ``ncols`` axes in a row and ``legend_in`` inches at the right for a legend.

    Margins are fixed in inches rather than by a layout engine, which would draw every figure twice.
    """
    from matplotlib.figure import Figure

    width = width or (5.2 * ncols + legend_in)
    fig = Figure(figsize=(width, height), dpi=DPI)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    right = 1 - (legend_in + 0.1) / width if legend_in else 0.97
    fig.subplots_adjust(left=left_in / width + 0.02, right=right, bottom=0.55 / height, top=1 - 0.75 / height,
                        wspace=0.28)
    return fig, axes


def _legend(fig, legend_in: float, handles, labels) -> None:
    """A figure legend in the right-hand column that _figure kept free."""
    if handles:
        fig.legend(handles, labels, loc="upper left", fontsize=7, frameon=False,
                   bbox_to_anchor=(1 - legend_in / fig.get_figwidth(), 1 - 0.3 / fig.get_figheight()))


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI)
    return path


def checkpoint_colours(ids: list[str]) -> dict[str, str]:
    """One colour (hex) per checkpoint id, in the order given: tab10 without its grey, or tab20 without its
    greys beyond nine checkpoints (greys are the mixture plot's sources)."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    ids = list(dict.fromkeys(ids))
    palette = ([colormaps["tab10"](i) for i in range(10) if i != 7] if len(ids) <= 9
               else [colormaps["tab20"](i) for i in range(20) if i not in (14, 15)])
    return {cid: to_hex(palette[i % len(palette)]) for i, cid in enumerate(ids)}


def _with_colours(colours: dict[str, str] | None, ids: list[str]) -> dict[str, str]:
    """``colours`` extended to every id in ``ids`` (a caller without a mapping gets a fresh one)."""
    if not colours:
        return checkpoint_colours(ids)
    missing = [i for i in ids if i not in colours]
    if not missing:
        return colours
    extra = checkpoint_colours(list(colours) + missing)
    return {**colours, **{i: extra[i] for i in missing}}


def _source_styles(sources: list[str]) -> dict[str, tuple[str, str]]:
    """(grey, hatch) per data source: greys and hatches, never a hue, so a source never looks like a
    checkpoint; the bars are labelled with the source's name where there is room."""
    from matplotlib.colors import to_hex

    hatches = ["", "//", "..", "xx"]
    levels = np.linspace(0.4, 0.9, len(sources)) if len(sources) > 1 else [0.6]
    return {src: (to_hex((float(levels[i]),) * 3), hatches[i % len(hatches)]) for i, src in enumerate(sources)}


def _group_label(label: str, probes: list[Probe]) -> str:
    seeds = sum(1 for p in probes if not p.control)
    controls = len(probes) - seeds
    extra = [f"{seeds} seeds"] if seeds > 1 else []
    extra += ["control"] if controls == 1 else ([f"{controls} controls"] if controls else [])
    return label + (f" ({', '.join(extra)})" if extra else "")


def _missing_reason(key: str, probes: list[Probe]) -> str:
    """Why no probe logged ``key``, in a few words."""
    if key == "kl":
        betas = {num(p.meta.get("beta")) for p in probes}
        if betas == {0.0}:
            return "not logged, probe.beta is 0 (TRL logs KL only when the KL coefficient beta > 0)"
        return "not logged by any probe (TRL logs it only when the KL coefficient beta > 0)"
    return "not logged by any probe"


def _probe_legend(names: dict[str, str], colours: dict[str, str], *, sampled: bool, control: bool, seeds: bool):
    """(handles, labels) of a probe plot's legend: one line per group in its colour, then the line styles used."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colours[label], lw=2, gid=f"ckpt:{label}") for label in names]
    labels = list(names.values())
    styles = [("dashed: sampled", "--")] if sampled else []
    styles += [("dotted: negative control", ":")] if control else []
    styles += [("fainter: further seeds", "-")] if seeds else []
    for text, ls in styles:
        handles.append(Line2D([], [], color="0.3", ls=ls, lw=1.5, alpha=0.5 if "fainter" in text else 1))
        labels.append(text)
    return handles, labels


def probe_plots(groups: dict[str, list[Probe]], out_dir: Path, *, events: list[dict] | None = None,
                prefix: str = "", colours: dict[str, str] | None = None,
                omitted: list[str] | None = None) -> list[Plot]:
    """One PNG per entry of PROBE_PLOTS, every probe of every group overlaid.

    The legend names the groups (one colour each: ``colours``, checkpoint id -> colour, or a fresh
    mapping); line styles: solid = a probe (greedy accuracy in the accuracy plot), dashed = sampled
    accuracy, dotted = negative control; further seeds of a group are drawn fainter. A panel no probe
    logged is left out, and a plot without any panel; each leaves one line in ``omitted``.
    """
    out_dir = Path(out_dir)
    colours = _with_colours(colours, list(groups))
    events = events or []
    omitted = omitted if omitted is not None else []
    every = [p for probes in groups.values() for p in probes]
    memo: dict[tuple, tuple | None] = {}

    def series(probe: Probe, source: str, key: str):
        k = (id(probe), source, key)
        if k not in memo:
            rows = probe.evals if source == "evals" else probe.metrics
            memo[k] = column(rows, key) if has(rows, key) else None
        return memo[k]

    names = {label: _group_label(label, probes) for label, probes in groups.items()}
    has_control = any(p.control for probes in groups.values() for p in probes)
    has_seeds = any(sum(1 for p in probes if not p.control) > 1 for probes in groups.values())
    legend_in = legend_width(list(names.values()) + ["dotted: negative control"])
    plots = []
    for name, (title, source, panels, watched, caption) in PROBE_PLOTS.items():
        present = [(key, pt) for key, pt in panels if any(series(p, source, key) is not None for p in every)]
        absent = [key for key, _ in panels if key not in {k for k, _ in present}]
        if absent:
            what = "not drawn" if not present else "panel " + ", ".join(absent) + " not drawn"
            omitted.append(f"{title}: {what}; " + "; ".join(f"{k} {_missing_reason(k, every)}" for k in absent)
                           + ".")
        if not present:
            continue
        fig, axes = _figure(len(present), legend_in=legend_in)
        fig.suptitle(title, fontsize=11)
        for ax, (key, panel_title) in zip(axes, present):
            for label, probes in groups.items():
                seed_no = 0
                for probe in probes:
                    alpha = 1.0 if probe.control else max(0.4, 1.0 - 0.25 * seed_no)
                    seed_no += 0 if probe.control else 1
                    keys = [(key, ":" if probe.control else "-", 1.5, "o")]
                    if name == "acc":
                        keys.append(("acc/sampled", ":" if probe.control else "--", 1.2, "s"))
                    for k, style, lw, marker in keys:
                        found = series(probe, source, k)
                        if found is None:
                            continue
                        steps, vals = found
                        ok = ~np.isnan(vals)
                        ax.plot(steps[ok], vals[ok], style, color=colours[label], lw=lw, alpha=alpha,
                                marker=marker if source == "evals" else None, ms=3, gid=f"ckpt:{label}")
                    for ev in events:
                        if ev["probe_id"] == probe.probe_id and ev["detector"] in watched:
                            ax.axvline(ev["step"], color=colours[label], ls=(0, (1, 2)), lw=1.2,
                                       gid=f"ckpt:{label}")
                            ax.annotate(ev["detector"], (ev["step"], 1.0), xycoords=("data", "axes fraction"),
                                        fontsize=7, color=colours[label], rotation=90, ha="right", va="top")
            ax.set_title(panel_title, fontsize=9)
            ax.set_xlabel("GRPO step", fontsize=8)
            ax.tick_params(labelsize=8)
            ax.grid(alpha=0.3)
        _legend(fig, legend_in, *_probe_legend(names, colours, sampled=name == "acc", control=has_control,
                                                seeds=has_seeds))
        path = _save(fig, out_dir / f"{prefix}{name}.png")
        plots.append(Plot(name=f"{prefix}{name}", title=title, path=path, caption=caption))
    return plots


def _stage_offsets(run: Run) -> dict[str, float]:
    """Tokens seen before each stage began (its init stage's offset + final tokens), for a shared x axis."""
    offsets: dict[str, float] = {}

    def offset(name: str, depth: int = 0) -> float:
        if name in offsets:
            return offsets[name]
        stage = run.stages[name]
        value = 0.0
        parent = stage.init
        if parent in run.stages and depth < len(run.stages):
            prow = run.stages[parent].metrics
            last = num(prow[-1].get("tokens")) if prow else None
            value = offset(parent, depth + 1) + (last or 0.0)
        offsets[name] = value
        return value

    for name in run.stages:
        offset(name)
    return offsets


def cpt_plots(run: Run, out_dir: Path, *, stage_colours: dict[str, tuple[str, str]] | None = None,
              omitted: list[str] | None = None) -> list[Plot]:
    """CPT loss per stage (on a shared token axis) and realized mixture shares per stage.

    ``stage_colours``: stage -> (checkpoint id, colour), the checkpoint whose colour the stage's loss
    line takes (the report passes its last probed or gated checkpoint); stages not in it get fresh
    colours. A plot without data leaves one line in ``omitted``.
    """
    out_dir = Path(out_dir)
    omitted = omitted if omitted is not None else []
    stages = [s for s in run.stages.values() if s.metrics]
    if not stages:
        return []
    given = dict(stage_colours or {})
    fresh = _with_colours(dict(given.values()), [s.name for s in stages if s.name not in given])
    line = {s.name: given[s.name] if s.name in given else (s.name, fresh[s.name]) for s in stages}
    offsets = _stage_offsets(run)
    fig, (ax,) = _figure(1, width=9.5)
    for s in stages:
        _, loss = column(s.metrics, "loss")
        _, tokens = column(s.metrics, "tokens")
        x = tokens if not np.all(np.isnan(tokens)) else np.arange(1, len(loss) + 1, dtype=float)
        ok = ~np.isnan(loss) & ~np.isnan(x)
        cid, colour = line[s.name]
        ax.plot(x[ok] + offsets.get(s.name, 0.0), loss[ok], color=colour, lw=1.3, label=s.name,
                gid=f"ckpt:{cid}" if s.name in given else None)
    ax.set_xlabel("tokens (stages start where the stage they branch from ended)", fontsize=8)
    ax.set_ylabel("training loss", fontsize=8)
    ax.set_title("CPT loss per stage", fontsize=11)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=8, frameon=False)
    plots = [Plot("cpt_loss", "CPT loss per stage", _save(fig, out_dir / "cpt_loss.png"),
                  "Next-token training loss of every mid-training stage, in the colour of the stage's "
                  "checkpoint.")]

    sources = sorted({k[4:] for s in stages for k in s.metrics[-1] if k.startswith("mix/")})
    if not sources:
        omitted.append("Data mixture per stage: no mix/<source> columns in cpt/*/metrics.jsonl (plot left out)")
        return plots
    legend_in = legend_width(sources)
    fig, (ax,) = _figure(1, width=9.5, height=0.6 * len(stages) + 1.6, legend_in=legend_in,
                         left_in=0.3 + 0.065 * max(len(s.name) for s in stages))
    styles = _source_styles(sources)
    names = [s.name for s in stages][::-1]
    left = np.zeros(len(names))
    for src in sources:
        shares = np.array([num(run.stages[n].metrics[-1].get(f"mix/{src}")) or 0.0 for n in names])
        grey, hatch = styles[src]
        ax.barh(names, shares, left=left, color=grey, hatch=hatch, label=src, edgecolor="white", lw=0.5)
        for i, (x0, w) in enumerate(zip(left, shares)):
            if w >= 0.06:
                text = f"{src}\n{w:.2f}" if w >= 0.12 else f"{w:.2f}"
                ax.text(x0 + w / 2, i, text, ha="center", va="center", fontsize=6.5, color="black",
                        bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.7})
        left += shares
    ax.set_xlim(0, max(1.0, float(left.max())))
    _legend(fig, legend_in, *ax.get_legend_handles_labels())
    ax.set_xlabel("realized token share (whole stage)", fontsize=8)
    ax.set_title("Data mixture per stage", fontsize=11)
    ax.tick_params(labelsize=8)
    plots.append(Plot("cpt_mixture", "Data mixture per stage", _save(fig, out_dir / "cpt_mixture.png"),
                      "Realized token share of every source over each stage (last mix/<source> row); sources "
                      "are greys and hatches, since colour means checkpoint."))
    return plots


def readiness_plot(entries: list[dict], out_dir: Path, *, recommended: str | None = None,
                   name: str = "readiness", colours: dict[str, str] | None = None) -> Plot:
    """Horizontal bars of readiness with CI whiskers; ``entries`` = [{"id", "score", "ci"}] best first.

    Each bar takes its checkpoint's colour; the recommended one is outlined in black, hatched and
    labelled "★ recommended" (a colour would collide with a checkpoint's).
    """
    fig, (ax,) = _figure(1, width=9.5, height=0.5 * len(entries) + 1.6,
                         left_in=0.3 + 0.065 * max(len(e["id"]) for e in entries))
    colours = _with_colours(colours, [e["id"] for e in entries])
    ids = [e["id"] for e in entries][::-1]
    scores = np.array([e["score"] for e in entries][::-1], dtype=float)
    lo = np.array([e["ci"][0] for e in entries][::-1], dtype=float)
    hi = np.array([e["ci"][1] for e in entries][::-1], dtype=float)
    bars = ax.barh(ids, scores, color=[colours[i] for i in ids], alpha=0.85)
    for bar, cid in zip(bars, ids):
        bar.set_gid(f"ckpt:{cid}")
        if cid == recommended:
            bar.set(edgecolor="black", linewidth=2.2, hatch="//", alpha=1.0)
    ax.errorbar(scores, ids, xerr=[scores - lo, hi - scores], fmt="none", ecolor="black", capsize=4, lw=1)
    if recommended in ids:
        y = ids.index(recommended)
        ax.annotate("★ recommended", (max(hi[y], scores[y], 0.0), y), textcoords="offset points", xytext=(6, 0),
                    va="center", fontsize=8, fontweight="bold")
        for tick in ax.get_yticklabels():
            if tick.get_text() == recommended:
                tick.set_fontweight("bold")
    ax.axvline(0, color="0.5", lw=0.8)
    ax.margins(x=0.15)
    ax.set_xlabel("RL-readiness score (whiskers: confidence interval; outlined, hatched ★: recommended)",
                  fontsize=8)
    ax.set_title("RL-readiness per checkpoint", fontsize=11)
    ax.tick_params(labelsize=8)
    ax.grid(axis="x", alpha=0.3)
    return Plot(name, "RL-readiness per checkpoint", _save(fig, Path(out_dir) / f"{name}.png"),
                "Readiness score per checkpoint with its bootstrap confidence interval; bars take the "
                "checkpoint's colour.")


def gates_plot(table: dict, out_dir: Path, *, colours: dict[str, str] | None = None) -> Plot | None:
    """Domain accuracy against general perplexity for every gated checkpoint, in its checkpoint's
    colour; the Pareto set drawn larger with a black ring."""
    dm = table.get("domain_metric")
    rows = [r for r in table.get("rows", []) if dm and num(r.get(dm)) is not None
            and num(r.get("ppl/general")) is not None and r.get("verdict") != "before reference"]
    if not rows:
        return None
    colours = _with_colours(colours, [r["checkpoint_id"] for r in rows])
    fig, (ax,) = _figure(1, width=8.5, height=4.4)
    placed: list[tuple[float, float]] = []
    ys = [num(r[dm]) for r in rows]
    span = (max(ys) - min(ys)) or 1.0
    for r in rows:
        x, y = num(r["ppl/general"]), num(r[dm])
        on = bool(r.get("pareto"))
        ax.scatter([x], [y], s=80 if on else 35, c=[colours[r["checkpoint_id"]]],
                   edgecolors="black" if on else "none", linewidths=1.6 if on else 0, zorder=3,
                   gid=f"ckpt:{r['checkpoint_id']}")
        # labels of points that (nearly) coincide are stacked instead of printed over each other
        near = sum(1 for px, py in placed if abs(np.log(x / px)) < 0.15 and abs(y - py) < 0.05 * span)
        placed.append((x, y))
        ax.annotate(r["checkpoint_id"] + (" (Pareto)" if on else ""), (x, y), textcoords="offset points",
                    xytext=(5, 4 - 10 * near), fontsize=7)
    ax.set_xscale("log")
    ax.margins(x=0.2, y=0.15)
    ax.set_xlabel("ppl/general (lower is better)", fontsize=8)
    ax.set_ylabel(f"{dm} (higher is better)", fontsize=8)
    ax.set_title("CPT gates: domain accuracy vs general perplexity (black ring: Pareto set)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=8)
    return Plot("gates", "CPT gates", _save(fig, Path(out_dir) / "gates.png"),
                "Every gated checkpoint in its checkpoint's colour; the Pareto set (no other checkpoint is "
                "at least as good on every gate term and better on one) is ringed in black.")
