"""Document templates (seed 004, OctoThinker Table 1).

- ``raw``: the text field as is.
- ``IF``:  ``User:{query}\\nAssistant:{content}``
- ``QA``:  ``User:{query}\\nAssistant:<think>\\n{cot}</think>\\n{content}``

A rendered document is a (prompt, response) pair, tokenized separately so that the prompt's tokens
are exactly those a GRPO probe feeds the model, and so that prompts can be masked out of the loss.
A field names a column, or a path into a nested one (``messages.-1.content``); a column whose name is
the whole string wins.
"""

from __future__ import annotations

from octo.errors import OctoError

SLOTS = {"raw": ("text",), "IF": ("query", "content"), "QA": ("query", "cot", "content")}


def field_map(template: str, fields: dict[str, str]) -> dict[str, str]:
    """Template slot -> column name (a slot is its own column name unless mapped)."""
    unknown = set(fields) - set(SLOTS[template])
    if unknown:
        raise OctoError(f"template {template} has no slot(s) {', '.join(sorted(unknown))}; "
                        f"its slots are {', '.join(SLOTS[template])}")
    return {slot: fields.get(slot, slot) for slot in SLOTS[template]}


def lookup(row: dict, column: str):
    """Value of ``column`` in ``row``: a column name or a dotted path (``messages.1.content``); None if absent."""
    if column in row:
        return row[column]
    value = row
    for part in column.split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, (list, tuple)) and part.lstrip("-").isdigit():
            i = int(part)
            value = value[i] if -len(value) <= i < len(value) else None
        else:
            return None
        if value is None:
            return None
    return value


def top_column(column: str, names) -> str:
    """The top-level column a mapping reads (``messages`` for ``messages.1.content``)."""
    return column if column in names else column.split(".", 1)[0]


def render(template: str, row: dict, columns: dict[str, str]) -> tuple[str, str]:
    """(prompt, response) text of one row; raw documents are all response."""
    vals = {slot: lookup(row, col) for slot, col in columns.items()}
    if template == "raw":
        return "", str(vals["text"])
    if template == "IF":
        return f"User:{vals['query']}\nAssistant:", str(vals["content"])
    return f"User:{vals['query']}\nAssistant:<think>\n", f"{vals['cot']}</think>\n{vals['content']}"
