"""Numbers as people read them, and command documents as terminal text."""

from __future__ import annotations

from dataclasses import dataclass, field


def usd(amount: float) -> str:
    """Dollars with cents; small non-zero amounts keep enough digits to be seen."""
    if amount != 0 and abs(amount) < 0.01:
        return f"${amount:.6f}".rstrip("0")
    return f"${amount:,.2f}"


def per_million(price: float | None) -> str:
    """A per-token USD price as dollars per million tokens."""
    if price is None:
        return "varies"
    if price == 0:
        return "free"
    return f"{price * 1_000_000:.2f}"


def ago(seconds: float) -> str:
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    return f"{int(seconds // 3600)} h ago"


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    # Per column: True to align right (numbers).
    right: list[bool] = field(default_factory=list)


@dataclass
class Document:
    """A command's answer, which each front end renders in its own way."""

    title: str
    fields: list[tuple[str, str]] = field(default_factory=list)
    table: Table | None = None
    notes: list[str] = field(default_factory=list)
    ok: bool = True
    # Shown to the caller alone (views, refusals), or to the channel.
    ephemeral: bool = True
    # For a change: the line to post in the channel, e.g. "@alice set this channel's model to ...".
    announcement: str | None = None


def table_text(table: Table) -> str:
    rows = [table.header, *table.rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(table.header))]
    right = table.right or [False] * len(widths)
    lines = [
        "  ".join(
            cell.rjust(width) if align else cell.ljust(width)
            for cell, width, align in zip(row, widths, right, strict=True)
        ).rstrip()
        for row in rows
    ]
    return "\n".join(lines)


def document_text(doc: Document) -> str:
    lines = [doc.title]
    label_width = max((len(name) for name, _ in doc.fields), default=0)
    lines += [f"  {name.ljust(label_width)}  {value}" for name, value in doc.fields]
    if doc.table is not None:
        lines.append(table_text(doc.table))
    lines += doc.notes
    return "\n".join(lines)
