"""Rewrite the generated section of a markdown page, between ``<!-- NAME: begin -->`` and ``<!-- NAME: end -->``,
leaving the hand-written text around it alone. Shared by the benchmarks that write part of a page."""

from __future__ import annotations

from pathlib import Path


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}: begin -->", f"<!-- {name}: end -->"


def read_page(doc: Path, name: str) -> str:
    """The page's text, or one sentence (SystemExit) when it is no file or lacks the section's markers: a
    benchmark calls it before its run too, so that a wrong page costs nothing."""
    begin, end = markers(name)
    if not doc.is_file():
        raise SystemExit(f"{doc} is not a file; pass the page whose '{begin}' ... '{end}' section to rewrite")
    text = doc.read_text(encoding="utf-8")
    if begin not in text or end not in text:
        raise SystemExit(f"{doc} has no '{begin}' ... '{end}' section to rewrite; add the two lines where it goes")
    return text


def write_section(doc: Path, name: str, body: str) -> None:
    """Replace what lies between the page's two markers of ``name`` with ``body`` (the markers stay)."""
    begin, end = markers(name)
    text = read_page(doc, name)
    head, rest = text.split(begin, 1)
    tail = rest.split(end, 1)[1]
    doc.write_text(head + begin + "\n\n" + body.strip("\n") + "\n\n" + end + tail, encoding="utf-8")
