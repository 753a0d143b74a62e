"""Splitting a long answer into messages a platform accepts (Slack, Discord).

Breaks fall on paragraph boundaries where they can, then on line ends, and only as a last
resort inside a line (at a space if there is one). A code fence cut in two is closed at the
end of one message and opened again, with its language, at the start of the next, so
each message renders on its own. Nothing is lost: joining the pieces' text gives back the
answer, fences aside.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")


@dataclass(frozen=True)
class _Line:
    text: str
    fence_before: str | None  # the opening fence line in force before this line
    fence_after: str | None  # ... and after it


def _marker(fence: str) -> str:
    match = _FENCE.match(fence)
    return match.group(1) if match else "```"


def _annotate(text: str) -> list[_Line]:
    lines: list[_Line] = []
    fence: str | None = None
    for line in text.split("\n"):
        before = fence
        match = _FENCE.match(line)
        if match:
            if fence is None:
                fence = line.strip()
            elif match.group(1).startswith(_marker(fence)) and not match.group(2).strip():
                fence = None
        lines.append(_Line(line, before, fence))
    return lines


def _render(lines: list[_Line]) -> str:
    """A message of consecutive lines, with any fence it cuts closed and reopened."""
    body = "\n".join(line.text for line in lines)
    opened = lines[0].fence_before
    if opened is not None:
        body = f"{opened}\n{body}"
    still_open = lines[-1].fence_after
    if still_open is not None:
        body = f"{body}\n{_marker(still_open)}"
    return body


def _cut_long_line(line: _Line, limit: int) -> list[_Line]:
    """A line too long for any message, as pieces that fit one each."""
    overhead = 0
    if line.fence_before is not None or line.fence_after is not None:
        fence = line.fence_before or line.fence_after or ""
        overhead = len(fence) + len(_marker(fence)) + 2
    width = max(1, limit - overhead)
    if len(line.text) <= width:
        return [line]
    pieces: list[_Line] = []
    rest = line.text
    while len(rest) > width:
        cut = rest.rfind(" ", width // 2, width)
        cut = cut + 1 if cut > 0 else width
        pieces.append(_Line(rest[:cut], line.fence_before, line.fence_before))
        rest = rest[cut:]
    pieces.append(_Line(rest, line.fence_before, line.fence_after))
    return pieces


def _is_paragraph_end(line: _Line) -> bool:
    return not line.text.strip() and line.fence_after is None


def split_message(text: str, limit: int) -> list[str]:
    """`text` as messages of at most `limit` characters each."""
    if len(text) <= limit:
        return [text] if text.strip() else []
    lines = [piece for line in _annotate(text) for piece in _cut_long_line(line, limit)]
    messages: list[str] = []
    current: list[_Line] = []
    for line in lines:
        if not current and not line.text.strip() and line.fence_before is None:
            continue  # no message starts with a blank line
        if len(_render([*current, line])) <= limit:
            current.append(line)
            continue
        # Prefer the last paragraph end, unless that leaves the message less than half full.
        ends = [i for i, kept in enumerate(current) if _is_paragraph_end(kept)]
        keep = len(current)
        if ends and len(_render(current[: ends[-1] + 1])) >= limit // 2:
            keep = ends[-1] + 1
        messages.append(_render(current[:keep]).strip("\n"))
        current = current[keep:]
        while current and not current[0].text.strip() and current[0].fence_before is None:
            current.pop(0)
        while current and len(_render([*current, line])) > limit:
            messages.append(_render(current).strip("\n"))
            current = []
        current.append(line)
    if current and any(line.text.strip() for line in current):
        messages.append(_render(current).strip("\n"))
    return [m for m in messages if m.strip()]


@dataclass(frozen=True)
class _Span:
    line: _Line
    end: int  # where the piece ends in the text
    newline: bool  # whether a line break follows it there


def _spans(text: str, limit: int) -> list[_Span]:
    spans: list[_Span] = []
    position = 0
    for line in _annotate(text):
        pieces = _cut_long_line(line, limit)
        for index, piece in enumerate(pieces):
            position += len(piece.text)
            newline = index == len(pieces) - 1 and position < len(text)
            spans.append(_Span(piece, position, newline))
        position += 1
    return spans


def _closing(fence: str | None) -> str:
    return "" if fence is None else "\n" + _marker(fence)


def _opening(fence: str | None) -> str:
    return "" if fence is None else fence + "\n"


def first_message(text: str, limit: int, keep: int = 0) -> tuple[str, str]:
    """Cuts the first message off an answer that is still growing: (message, rest).

    The message is a prefix of `text` (a fence it cuts is closed after it) and holds at
    least `text[:keep]`, the part already shown, so a streamed message is only ever
    appended to. The rest starts with the cut fence opened again. Breaks are chosen as
    split_message chooses them."""
    if len(text) <= limit:
        return text, ""
    spans = _spans(text, limit)
    best: _Span | None = None
    paragraph: _Span | None = None
    for span in spans:
        size = span.end + len(_closing(span.line.fence_after))
        if size > limit:
            break
        if span.end >= keep:
            best = span
            if _is_paragraph_end(span.line) and size >= limit // 2:
                paragraph = span
    chosen = paragraph or best
    if chosen is None:
        # What was shown already reaches past every break that fits: cut where it ends.
        keep = min(keep, len(text))
        before = _annotate(text[:keep])
        fence = before[-1].fence_after if before else None
        return text[:keep] + _closing(fence), _opening(fence) + text[keep:]
    fence = chosen.line.fence_after
    rest = text[chosen.end + (1 if chosen.newline else 0) :]
    if fence is None:
        rest = rest.lstrip("\n")
    return text[: chosen.end] + _closing(fence), _opening(fence) + rest


class Layout:
    """An answer growing at its end, as messages of at most `limit` characters: the full
    ones (`frozen`, never changed again) and the one still growing (`open`)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.frozen: list[str] = []
        self.open = ""
        self._fed = 0

    @property
    def pages(self) -> list[str]:
        return [*self.frozen, self.open]

    def feed(self, text: str, keep: int = 0) -> None:
        """Takes in the answer so far; `keep` characters of the open page are already
        shown and must stay on it."""
        self.open += text[self._fed :]
        self._fed = len(text)
        while len(self.open) > self.limit:
            head, self.open = first_message(self.open, self.limit, keep)
            self.frozen.append(head)
            keep = 0
