"""Command answers (`Document`s) as Block Kit."""

from __future__ import annotations

from typing import Any

from bot.formatting import Document, document_text, table_text

from .reply import escape

HEADER_LIMIT = 150
FIELD_LIMIT = 2_000
SECTION_LIMIT = 3_000
FIELDS_PER_SECTION = 10


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def document_blocks(doc: Document, announcement: str | None = None) -> list[dict[str, Any]]:
    """A document as blocks: an optional announcement line, a header, the fields, the table
    as preformatted text, the notes. `announcement` is mrkdwn already (it may mention)."""
    blocks: list[dict[str, Any]] = []
    if announcement:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": announcement}})
    title = ("" if doc.ok else "⚠️ ") + doc.title
    blocks.append(
        {"type": "header", "text": {"type": "plain_text", "text": _clip(title, HEADER_LIMIT)}}
    )
    fields = [
        {"type": "mrkdwn", "text": _clip(f"*{escape(name)}*\n{escape(value)}", FIELD_LIMIT)}
        for name, value in doc.fields
    ]
    for start in range(0, len(fields), FIELDS_PER_SECTION):
        blocks.append({"type": "section", "fields": fields[start : start + FIELDS_PER_SECTION]})
    if doc.table is not None:
        rows = escape(table_text(doc.table))
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": "```" + _clip(rows, SECTION_LIMIT - 6) + "```"},
            }
        )
    for note in doc.notes:
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": _clip(escape(note), 3000)}}
        )
    return blocks


def document_fallback(doc: Document, announcement: str | None = None) -> str:
    """The plain text Slack shows in notifications and where blocks cannot be drawn."""
    text = escape(document_text(doc))
    return f"{announcement}\n{text}" if announcement else text
