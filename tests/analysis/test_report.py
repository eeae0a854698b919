"""The report: self-contained index.html, report.md with its PNGs, one plot per probe metric."""

from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from octo.analysis.plots import PROBE_PLOTS
from octo.analysis.load import load_run
from octo.analysis.report import ensure_scores, write_report
from octo.analysis.score import score_run

PROBE_METRIC_PLOTS = ["acc", "length", "clip", "reward", "entropy", "kl"]   # the brief's list, in order
ALL_PLOTS = ["readiness", *PROBE_PLOTS, "cpt_loss", "cpt_mixture", "gates"]


@pytest.fixture(scope="module")
def reported(tmp_path_factory, branches_template):
    """The branches run with its report written (scores.json absent before: write_report computes it)."""
    run = tmp_path_factory.mktemp("reported") / "run"
    shutil.copytree(branches_template, run)
    assert not (run / "scores.json").exists()
    index = write_report(run)
    return run, index


def test_report_files(reported):
    run, index = reported
    assert index == run / "report" / "index.html"
    assert (run / "scores.json").exists()                 # computed because it was missing
    assert (run / "report" / "report.md").exists()
    for name in ALL_PLOTS:
        png = run / "report" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_probe_metric_plots_are_all_there():
    assert set(PROBE_METRIC_PLOTS) <= set(PROBE_PLOTS)


def test_index_html_is_self_contained(reported):
    run, index = reported
    page = index.read_text()
    srcs = re.findall(r'src="([^"]*)"', page)
    assert len(srcs) == len(ALL_PLOTS)
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:4] == b"\x89PNG"
    for name in ALL_PLOTS:
        assert f'id="plot-{name}"' in page, name
    assert "<link" not in page and "http://" not in page and "https://" not in page
    assert "<script" not in page


def test_index_html_content(reported):
    run, index = reported
    page = index.read_text()
    scores = json.loads((run / "scores.json").read_text())
    assert '<table id="summary"' in page and '<table id="gates"' in page and '<table id="events"' in page
    summary = page.split('<table id="summary"')[1].split("</table>")[0]
    assert summary.count("<tr") == 1 + len(scores["ranking"])
    # rows in ranking order, the recommended one marked
    positions = [summary.index(cid) for cid in scores["ranking"]]
    assert positions == sorted(positions)
    assert scores["recommended"] == "decay-short.step-20"
    assert "Recommended checkpoint: decay-short.step-20" in page
    assert html.escape(scores["reason"]) in page
    # one answer for the user: the box says how the CPT-gate choice (octo eval --select) relates to it
    cpt = scores["cpt_choice"]
    assert cpt["relation"] and html.escape(cpt["relation"]) in page.split('id="recommendation"')[1].split("</p>")[0]
    assert cpt["checkpoint_id"] is None or cpt["checkpoint_id"] in cpt["relation"]
    seeds = {c["seeds"] for c in scores["checkpoints"].values()}
    scope = "held-out problems and probe seeds" if min(seeds) > 1 else "held-out problems"
    assert f"bootstrap intervals over {scope}" in page
    assert "acc 0→final (greedy+sampled)/2" in summary    # the accuracy column says which accuracy
    events = page.split('<table id="events"')[1].split("</table>")[0]
    assert "length_explosion" in events and "collapse" in events and "decay-long.step-20" in events
    gates = page.split('<table id="gates"')[1].split("</table>")[0]
    assert "pretrain.step-40 (reference)" in gates


def test_report_md_links_its_pngs(reported):
    run, _ = reported
    md = (run / "report" / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert sorted(links) == sorted(f"{n}.png" for n in ALL_PLOTS)
    for link in links:
        assert (run / "report" / link).exists()
    assert "**Recommended checkpoint: decay-short.step-20**" in md
    assert "| checkpoint | rank | readiness | CI | J | Pareto | verdict |" in md   # key columns first


def _small_run(root):
    from tests.analysis.synth import RunBuilder

    b = RunBuilder(root, analysis={"bootstrap": 200})
    b.probe("a.step-1", "clean", rng_seed=1, steps=12, eval_every=6, n=90, k=2)
    b.probe("b.step-1", "flat", rng_seed=2, steps=12, eval_every=6, n=90, k=2)
    return root


def test_fresh_scores_are_reused_and_stale_ones_recomputed(tmp_path):
    """scores.json newer than every log is reused; an older one, or one for other probes, is recomputed."""
    run = _small_run(tmp_path / "run")
    scores = score_run(run)
    scores["reason"] = "MARKER-REASON"
    (run / "scores.json").write_text(json.dumps(scores))
    assert ensure_scores(run, None, load_run(run))["reason"] == "MARKER-REASON"
    old = time.time() - 3600
    os.utime(run / "scores.json", (old, old))                  # older than the probe logs now
    assert ensure_scores(run, None, load_run(run))["reason"] != "MARKER-REASON"
    scores["reason"] = "MARKER-REASON"
    (run / "scores.json").write_text(json.dumps(scores))        # fresh again, but ...
    shutil.rmtree(run / "probes" / "b.step-1")                  # ... a scored probe is gone
    fresh = ensure_scores(run, None, load_run(run))
    assert fresh["reason"] != "MARKER-REASON" and fresh["ranking"] == ["a.step-1"]
    assert json.loads((run / "scores.json").read_text())["ranking"] == ["a.step-1"]


def test_report_of_a_run_without_cpt_stages(tmp_path):
    run = _small_run(tmp_path / "run")
    page = write_report(run).read_text()
    assert "No cpt/*/gates.jsonl in this run." in page
    assert 'id="plot-cpt_loss"' not in page and 'id="plot-gates"' not in page and 'id="plot-acc"' in page
    assert (run / "report" / "index.html").stat().st_mode & 0o777 == 0o644


# --- one colour per checkpoint, no empty charts, every column explained ---------------------------

@pytest.fixture
def drawn(monkeypatch):
    """Every matplotlib figure the report saves, by file stem (plots._save is wrapped, not replaced)."""
    from octo.analysis import plots

    figures = {}
    save = plots._save

    def keep(fig, path):
        figures[Path(path).stem] = fig
        return save(fig, path)

    monkeypatch.setattr(plots, "_save", keep)
    return figures


def _artist_colours(fig) -> list[tuple[str, str, str]]:
    """(checkpoint id, colour, artist kind) of every artist a plot tagged gid="ckpt:<id>"."""
    from matplotlib.collections import Collection
    from matplotlib.colors import to_hex
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    out = []
    for artist in fig.findobj(lambda a: (a.get_gid() or "").startswith("ckpt:")):
        if isinstance(artist, Line2D):
            colour = artist.get_color()
        elif isinstance(artist, Patch):
            colour = artist.get_facecolor()
        elif isinstance(artist, Collection):
            colour = artist.get_facecolors()[0]
        else:
            continue
        out.append((artist.get_gid()[5:], to_hex(colour, keep_alpha=False), type(artist).__name__))
    return out


def test_one_colour_per_checkpoint_across_all_plots(branches, drawn):
    from matplotlib.colors import to_hex

    write_report(branches)
    scores = json.loads((branches / "scores.json").read_text())
    assert set(drawn) == set(ALL_PLOTS)
    seen: dict[str, set] = {}
    per_plot: dict[str, set] = {}
    for name, fig in drawn.items():
        for cid, colour, _ in _artist_colours(fig):
            seen.setdefault(cid, set()).add(colour)
            per_plot.setdefault(name, set()).add(cid)
    assert {cid: len(c) for cid, c in seen.items()} == {cid: 1 for cid in seen}, seen   # one colour each ...
    colour_of = {cid: next(iter(c)) for cid, c in seen.items()}
    assert len(set(colour_of.values())) == len(colour_of)                               # ... and none shared
    probed = set(scores["ranking"])
    for name in ("readiness", *PROBE_PLOTS):                    # every probed checkpoint in each of these
        assert per_plot[name] == probed, name
    gated = {r["checkpoint_id"] for r in scores["gates"]["rows"] if r.get("verdict") != "before reference"}
    assert per_plot["gates"] == gated and "stable.step-40" in gated
    # the CPT loss line of a stage takes its checkpoint's colour (stable was gated, not probed)
    assert per_plot["cpt_loss"] == {"pretrain.step-40", "stable.step-40", "decay-long.step-20",
                                    "decay-short.step-20", "decay-hybrid.step-20"}
    # the legends of the probe plots name each checkpoint in its colour
    for name in PROBE_PLOTS:
        legend = drawn[name].legends[0]
        for text, handle in zip(legend.get_texts(), legend.legend_handles):
            cid = text.get_text().split(" ")[0]
            if cid in probed:
                assert to_hex(handle.get_color(), keep_alpha=False) == colour_of[cid], (name, cid)
    # the recommended checkpoint is marked by an outline and a label, in its own colour
    bars = {cid: a for a in drawn["readiness"].findobj(lambda a: (a.get_gid() or "").startswith("ckpt:"))
            for cid in [a.get_gid()[5:]]}
    rec = scores["recommended"]
    others = [b for c, b in bars.items() if c != rec]
    assert bars[rec].get_hatch() and not any(b.get_hatch() for b in others)
    assert all(bars[rec].get_linewidth() > b.get_linewidth() for b in others)
    assert any("recommended" in t.get_text() for t in drawn["readiness"].findobj(
        lambda a: hasattr(a, "get_text") and callable(a.get_text)))
    # data sources (mixture bars) never take a checkpoint's colour
    mixture = {to_hex(p.get_facecolor(), keep_alpha=False) for p in drawn["cpt_mixture"].axes[0].patches}
    assert mixture and not mixture & set(colour_of.values())


def _strip(run: Path, key: str, meta: dict | None = None) -> None:
    """Remove ``key`` from every probe's metrics.jsonl (null, as TRL writes it), updating probe.json."""
    for pdir in (run / "probes").iterdir():
        rows = [json.loads(line) for line in (pdir / "metrics.jsonl").read_text().splitlines()]
        (pdir / "metrics.jsonl").write_text("".join(json.dumps({**r, key: None}) + "\n" for r in rows))
        if meta:
            probe = json.loads((pdir / "probe.json").read_text())
            (pdir / "probe.json").write_text(json.dumps({**probe, **meta}))


def test_a_plot_without_data_is_left_out_with_a_line_saying_why(tmp_path, drawn):
    run = _small_run(tmp_path / "run")
    _strip(run, "kl", {"beta": 0.0})
    _strip(run, "max_len")
    page = write_report(run).read_text()
    md = (run / "report" / "report.md").read_text()
    assert not (run / "report" / "kl.png").exists() and 'id="plot-kl"' not in page and "kl.png" not in md
    why = "KL to the reference vs step: not drawn; kl not logged, probe.beta is 0"
    assert why in page and why in md
    # a plot with one panel left keeps that panel only
    assert (run / "report" / "clip.png").exists() and len(drawn["clip"].axes) == 1
    assert "Clip ratio and max_len vs step: panel max_len not drawn; max_len not logged by any probe." in md
    # no figure the report drew has an axes without data
    for name, fig in drawn.items():
        for ax in fig.axes:
            assert ax.lines or ax.patches or ax.collections, (name, ax.get_title())


def test_kl_without_beta_zero_says_it_was_not_logged(tmp_path):
    run = _small_run(tmp_path / "run")
    _strip(run, "kl", {"beta": 0.04})
    md = (write_report(run).parent / "report.md").read_text()
    assert "KL to the reference vs step: not drawn; kl not logged by any probe" in md
    assert "probe.beta is 0" not in md


def test_every_column_has_a_one_line_explanation(reported):
    run, index = reported
    page = index.read_text()
    md = (run / "report" / "report.md").read_text()
    glossary = md.split("## Glossary")[1].split("## ")[0]
    explained = dict(re.findall(r"^- `([^`]+)`: (.+)$", glossary, re.MULTILINE))
    for term in ("J", "Pareto", "stab_gap", "stab_gap/ppl", "stab_gap/acc", "ppl/general", "acc/toy", "gain",
                 "readiness", "start", "learning", "stability", "length", "control", "start/acc", "final/acc"):
        assert term in explained and len(explained[term]) > 20, term
    assert all("\n" not in line for line in explained.values())
    for table_id in ("summary", "gates", "differences"):
        table = page.split(f'<table id="{table_id}"')[1].split("</thead>")[0]
        heads = re.findall(r"<th((?:\s[^>]*)?)>(.*?)</th>", table)
        assert heads, table_id
        for attrs, text in heads:
            tip = re.search(r'title="([^"]+)"', attrs)
            assert tip, (table_id, text)                           # a tooltip on every header ...
        names = [html.unescape(t) for _, t in heads if html.unescape(t) in explained]
        assert len(names) >= len(heads) - 1, (table_id, heads)    # ... and the glossary has it ("95% CI" aside)
    predictors = page.split('<table id="predictors"')[1].split("</table>")[0]
    rows = re.findall(r'<tr><td class="l">([^<]+)</td>', predictors)
    assert "start/acc" in rows and "final/acc" in rows
    for name in rows:
        assert html.unescape(name) in explained, name


def test_gates_section_names_the_sources_that_dominate_ppl_general(branches):
    gates = branches / "cpt" / "pretrain" / "gates.jsonl"
    rows = [json.loads(line) for line in gates.read_text().splitlines()]
    rows[-1].update({"ppl/web": 1.5, "ppl/mathweb": 1.4, "ppl/qa": 2.0, "ppl/if": 900.0})   # the reference
    gates.write_text("".join(json.dumps(r) + "\n" for r in rows))
    md = (write_report(branches).parent / "report.md").read_text()
    line = next(x for x in md.splitlines() if x.startswith("ppl/general is exp of the mean"))
    assert "4 sources" in line and "at the reference pretrain.step-40" in line
    assert "if 900.0 (not in pretrain's mixture), qa 2.0, web 1.5" in line


def test_no_seed_citation_in_report_text(reported):
    run, index = reported
    for text in (index.read_text(), (run / "report" / "report.md").read_text()):
        assert not re.search(r"seed 00\d", text)


# --- rendering in a real browser -------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
# Appended to a copy of index.html: once the page has loaded, write into the DOM what every image decoded to
# and, for every table, its width against its scroll box, the right edge of its key columns (th.key) and
# where its first column sits once the box is scrolled to the far right; --dump-dom then prints it. One image
# that cannot decode and one table whose key column lies beyond 1400 px prove the check sees failures.
CHECK = """<figure id="octo-broken-control"><img src="data:image/png;base64,AAAA" alt="broken on purpose"></figure>
<div class="scroll"><table id="octo-wide-control"><thead><tr><th style="min-width:2000px">wide</th>
<th class="key">key</th></tr></thead><tbody><tr><td>a</td><td>b</td></tr></tbody></table></div>
<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.map.call(document.images, function (i) {
    return {id: i.parentElement ? i.parentElement.id : '', complete: i.complete, width: i.naturalWidth};
  });
  var tables = Array.prototype.map.call(document.querySelectorAll('table'), function (t) {
    var box = t.parentElement, edge = box.getBoundingClientRect().right;
    var keys = Array.prototype.map.call(t.querySelectorAll('th.key'), function (th) {
      return {text: th.textContent, right: th.getBoundingClientRect().right};
    });
    box.scrollLeft = box.scrollWidth;
    var first = t.rows[0].cells[0].getBoundingClientRect();
    var out = {id: t.id, scroll_width: box.scrollWidth, client_width: box.clientWidth, box_right: edge,
               keys: keys, first_left_scrolled: first.left, box_left: box.getBoundingClientRect().left};
    box.scrollLeft = 0;
    return out;
  });
  var summary = document.getElementById('summary');
  var out = document.createElement('pre');
  out.id = 'octo-check';
  out.textContent = JSON.stringify({images: imgs, summary_rows: summary ? summary.rows.length : -1,
                                    viewport: window.innerWidth, tables: tables});
  document.body.appendChild(out);
});
</script>"""


def _chromium() -> str | None:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.mark.skipif(_chromium() is None,
                    reason="chromium is not installed (/usr/bin/chromium); run scripts/install-chromium.sh")
def test_index_html_renders_in_headless_chromium(reported, tmp_path):
    run, index = reported
    chromium = _chromium()
    page = index.read_text()
    check = tmp_path / "check.html"
    check.write_text(page.replace("</body>", CHECK + "\n</body>"))
    res = subprocess.run([chromium, *FLAGS, f"--user-data-dir={tmp_path / 'profile-a'}", "--virtual-time-budget=10000",
                          "--window-size=1400,2000", "--hide-scrollbars", "--dump-dom", check.as_uri()],
                         capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-2000:]
    found = re.search(r'<pre id="octo-check">(.*?)</pre>', res.stdout, re.S)
    assert found, "the check script did not run: " + res.stdout[-500:]
    data = json.loads(html.unescape(found.group(1)))
    broken = [i for i in data["images"] if i["id"] == "octo-broken-control"]
    real = [i for i in data["images"] if i["id"] != "octo-broken-control"]
    assert len(broken) == 1 and broken[0]["width"] == 0
    assert len(real) == page.count("<img ") == len(ALL_PLOTS)
    assert all(i["complete"] and i["width"] > 0 for i in real), real
    assert sorted(i["id"] for i in real) == sorted(f"plot-{n}" for n in ALL_PLOTS)
    scores = json.loads((run / "scores.json").read_text())
    assert data["summary_rows"] == 1 + len(scores["ranking"])

    # at 1400 px every table's key columns lie inside its scroll box and the window, wide or not
    assert data["viewport"] == 1400
    tables = {t["id"]: t for t in data["tables"]}
    assert {"summary", "gates", "predictors", "events", "octo-wide-control"} <= set(tables)

    def hidden(t):
        return [k["text"] for k in t["keys"] if k["right"] > min(t["box_right"], data["viewport"]) + 1]

    assert hidden(tables.pop("octo-wide-control")) == ["key"]          # the check sees a hidden key column
    for tid, t in tables.items():
        assert t["keys"], tid
        assert not hidden(t), (tid, t)
        if t["scroll_width"] > t["client_width"]:                     # a table that scrolls keeps its first
            assert abs(t["first_left_scrolled"] - t["box_left"]) <= 1, (tid, t)    # column in view (sticky)
    key_heads = [k["text"] for k in tables["summary"]["keys"]]
    assert key_heads == ["checkpoint", "rank", "readiness", "CI", "J", "Pareto", "verdict"]
    assert [k["text"] for k in tables["gates"]["keys"]][:4] == ["checkpoint", "J", "Pareto", "verdict"]

    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    shot = artifacts / "report.png"
    shot.unlink(missing_ok=True)
    res = subprocess.run([chromium, *FLAGS, f"--user-data-dir={tmp_path / 'profile-b'}", "--hide-scrollbars",
                          "--window-size=1400,2400", f"--screenshot={shot}", index.as_uri()],
                         capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_intervals_say_whether_they_hold_seed_variance():
    from octo.analysis.report import _interval_scope

    def scores(*seeds):
        return {"checkpoints": {f"c{i}": {"seeds": n} for i, n in enumerate(seeds)}}
    assert _interval_scope(scores(3, 3)) == "held-out problems and probe seeds"
    assert _interval_scope(scores(1, 1)).startswith("held-out problems only: each checkpoint has one probe seed, "
                                                    "so seed-to-seed variance is not in them")
    assert "probe seeds for the checkpoints with several" in _interval_scope(scores(1, 3))


def test_the_summary_says_what_the_score_is():
    from octo.analysis.report import _score_text

    combined = {"config": {"rank_by": "combined", "combination": {"start/pass@k": 0.4}, "combination_intercept": 0.1},
                "checkpoints": {"a": {"metrics": {"readiness/components": 0.2}}}}
    assert _score_text(combined) == ("Score = the combined predictor (analysis.rank_by: combined), 0.1 + 0.4 × "
                                     "start/pass@k; the components' score is in scores.json as readiness/components")
    assert _score_text({"config": {"rank_by": "readiness"}, "checkpoints": {}}) == "Score = Σ weight × component"
    fell_back = {**combined, "checkpoints": {"a": {"metrics": {}}}}   # a checkpoint lacked a predictor
    assert _score_text(fell_back) == "Score = Σ weight × component"
