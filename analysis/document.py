"""One report model, two renderings: a page is a list of blocks, written as Markdown (report/report.md,
docs/validation.md) or as one self-contained HTML file (report/index.html: CSS inline, images as ``data:`` URIs,
so it opens from a file, a mail attachment or a CI artifact without a server).

Text inside a block is inline Markdown limited to ``**bold**``, ``*italic*`` and ```code```; the HTML
rendering escapes it and turns those three into tags.
"""

from __future__ import annotations

import base64
import html
import os
import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Para:
    """A paragraph; ``style`` ``muted`` (small print) or ``box`` (a highlighted note), ``quote`` (Markdown only)."""

    text: str
    style: str = ""
    id: str | None = None


@dataclass
class Table:
    """A table. In HTML the first ``key`` columns carry ``class="key"`` (the columns a reader must see;
    the report puts them first and the browser test checks they lie inside a 1400 px window) and, with
    ``sticky``, the first column stays in view while the rest scrolls; ``titles`` are the headers'
    tooltips (``title=``)."""

    head: list[str]
    rows: list[list[str]]
    id: str | None = None
    left: int = 2                       # HTML: the first ``left`` columns (and long cells) are left-aligned
    row_classes: list[str] | None = None
    titles: list[str] | None = None
    key: int = 1
    sticky: bool = True


@dataclass
class Figure:
    """A PNG with a title and a caption (either may be empty)."""

    path: Path
    title: str = ""
    caption: str = ""
    name: str = ""                      # HTML: the figure's id is plot-<name>


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Code:
    """Preformatted text; in HTML folded under ``summary``."""

    text: str
    summary: str = ""


@dataclass
class Document:
    title: str
    blocks: list = field(default_factory=list)

    def add(self, *blocks) -> Document:
        self.blocks.extend(b for b in blocks if b is not None)
        return self

    def markdown(self, base: Path) -> str:
        """The page as Markdown; figures are linked relative to ``base``, the page's folder."""
        parts = [f"# {self.title}"] + [_md(b, base) for b in self.blocks]
        return "\n\n".join(parts) + "\n"

    def html(self, css: str) -> str:
        body = [f"<h1>{_inline(self.title)}</h1>"] + [_html(b) for b in self.blocks]
        return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{html.escape(self.title)}</title><style>{css}</style></head><body>\n"
                + "\n".join(body) + "\n</body></html>\n")


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md(b, base: Path) -> str:
    if isinstance(b, Heading):
        return "#" * b.level + " " + b.text
    if isinstance(b, Para):
        return "> " + b.text.replace("\n", "\n> ") if b.style == "quote" else b.text
    if isinstance(b, Table):
        lines = ["| " + " | ".join(_md_cell(h) for h in b.head) + " |", "|" + "---|" * len(b.head)]
        return "\n".join(lines + ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in b.rows])
    if isinstance(b, Figure):
        link = os.path.relpath(b.path, base)
        return "\n\n".join(x for x in (f"**{b.title}**" if b.title else "", f"![{b.title or b.name}]({link})",
                                       b.caption) if x)
    if isinstance(b, Bullets):
        return "\n".join(f"- {item}" for item in b.items)
    if isinstance(b, Code):
        return f"```\n{b.text}\n```"
    raise TypeError(f"not a block: {b!r}")


_INLINE = re.compile(r"\*\*(.+?)\*\*|`([^`]+)`|(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])")


def _inline(text: str) -> str:
    """Escaped HTML of inline Markdown text (bold, italic, code)."""
    out, pos = [], 0
    for m in _INLINE.finditer(text):
        out.append(html.escape(text[pos:m.start()]))
        bold, code, em = m.groups()
        out.append(f"<b>{_inline(bold)}</b>" if bold is not None else
                   f"<code>{html.escape(code)}</code>" if code is not None else f"<i>{_inline(em)}</i>")
        pos = m.end()
    out.append(html.escape(text[pos:]))
    return "".join(out)


def _html(b) -> str:
    if isinstance(b, Heading):
        return f"<h{b.level}>{_inline(b.text)}</h{b.level}>"
    if isinstance(b, Para):
        ident = f' id="{b.id}"' if b.id else ""
        if b.style == "box":
            return f'<div class="box"{ident}>{_inline(b.text)}</div>'
        cls = ' class="muted"' if b.style == "muted" else ""
        return f"<p{cls}{ident}>{_inline(b.text)}</p>"
    if isinstance(b, Table):
        return _html_table(b)
    if isinstance(b, Figure):
        data = base64.b64encode(Path(b.path).read_bytes()).decode("ascii")
        ident = f' id="plot-{html.escape(b.name)}"' if b.name else ""
        title = f"<b>{_inline(b.title)}</b><br>" if b.title and not b.caption else ""
        return (f'<figure{ident}>{title}<img src="data:image/png;base64,{data}" alt="{html.escape(b.title)}">'
                + (f"<figcaption>{_inline(b.caption)}</figcaption>" if b.caption else "") + "</figure>")
    if isinstance(b, Bullets):
        return "<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in b.items) + "</ul>"
    if isinstance(b, Code):
        pre = f"<pre>{html.escape(b.text)}</pre>"
        return f"<details><summary>{html.escape(b.summary)}</summary>{pre}</details>" if b.summary else pre
    raise TypeError(f"not a block: {b!r}")


def _html_table(t: Table) -> str:
    def cell(tag: str, i: int, text: str) -> str:
        classes = (["l"] if i < t.left or len(text) > 40 else []) + (["key"] if tag == "th" and i < t.key else [])
        cls = f' class="{" ".join(classes)}"' if classes else ""
        tip = t.titles[i] if tag == "th" and t.titles and i < len(t.titles) else ""
        title = f' title="{html.escape(tip)}"' if tip else ""
        return f"<{tag}{cls}{title}>{_inline(text)}</{tag}>"

    ident = f' id="{t.id}"' if t.id else ""
    sticky = ' class="sticky"' if t.sticky else ""
    parts = [f'<div class="scroll"><table{ident}{sticky}>',
             "<thead><tr>" + "".join(cell("th", i, h) for i, h in enumerate(t.head)) + "</tr></thead><tbody>"]
    for k, r in enumerate(t.rows):
        cls = f' class="{t.row_classes[k]}"' if t.row_classes and t.row_classes[k] else ""
        parts.append(f"<tr{cls}>" + "".join(cell("td", i, c) for i, c in enumerate(r)) + "</tr>")
    parts.append("</tbody></table></div>")
    return "\n".join(parts)
