"""What Slack's and Discord's reply sinks share: the reply as the engine's events build it,
and the task that renders it.

A subclass renders; this base keeps the answer's text, the tool calls and their states,
the notices and the outcome, starts the subclass's `_flush` at the first event, wakes it
at every event, and returns from the last event (Final, Failed, Cancelled) only once
`_flush` has finished, so the engine's reply ends when people can read it.
"""

from __future__ import annotations

import asyncio

from bot.engine import (
    Cancelled,
    Delta,
    Failed,
    Final,
    Notice,
    ReplyEvent,
    Started,
    ToolFinished,
    ToolStarted,
)

RUNNING, DONE, FAILED = "in_progress", "complete", "error"  # Slack's task states, kept as-is


class ReplySink:
    def __init__(self) -> None:
        self.final: Final | None = None
        self.failed: Failed | None = None
        self._text = ""
        self._tail = ""  # an error or cancellation line after the text
        self._tasks: dict[str, tuple[str, str]] = {}  # tool call id -> (activity, state)
        self._notices: list[str] = []
        self._done = asyncio.Event()
        self._wake = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None

    @property
    def text(self) -> str:
        return self._text

    async def emit(self, event: ReplyEvent) -> None:
        if isinstance(event, Started):
            self._started()
        elif isinstance(event, Delta):
            self._text += event.text
        elif isinstance(event, ToolStarted):
            self._tasks[event.call_id] = (event.activity, RUNNING)
        elif isinstance(event, ToolFinished):
            title = self._tasks.get(event.call_id, (event.name, ""))[0]
            self._tasks[event.call_id] = (title, DONE if event.ok else FAILED)
        elif isinstance(event, Notice):
            self._notices.append(event.text)
        elif isinstance(event, Final):
            self.final = event
            self._done.set()
        elif isinstance(event, Failed):
            self.failed = event
            self._tail = f"⚠️ {event.message}"
            self._done.set()
        elif isinstance(event, Cancelled):
            self._tail = f"_Stopped: {event.reason}._"
            self._done.set()
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        self._wake.set()
        if self._done.is_set():
            await self._flusher

    def _started(self) -> None:
        """The reply began (a subclass may show a typing indicator)."""

    async def _flush(self) -> None:
        raise NotImplementedError

    def answer(self, text: str) -> str:
        """`text` (the answer so far, as the platform shows it) with the error or stop line
        after it; once done with nothing to show, the notices or "No answer"."""
        if self._tail:
            text = f"{text}\n\n{self._tail}" if text.strip() else self._tail
        if self._done.is_set() and not text.strip():
            text = "\n\n".join(f"_{n}_" for n in self._notices) or "_No answer._"
        return text

    def activity(self) -> list[str]:
        """A line per tool call of this reply: "Reading a.txt…", "Reading a.txt: done"."""
        marks = {RUNNING: "…", DONE: ": done", FAILED: ": failed"}
        return [f"{title}{marks.get(state, '')}" for title, state in self._tasks.values()]

    def closing_notices(self) -> list[str]:
        """The notices for the footer: those not already standing in for the answer."""
        shown_as_answer = not (self._text.strip() or self._tail)
        return [] if shown_as_answer else list(self._notices)

    async def _pause(self, seconds: float | None) -> None:
        """Waits `seconds` (None: until news), ending early when the reply is done."""
        waits = [asyncio.ensure_future(self._done.wait())]
        if seconds is None:
            waits.append(asyncio.ensure_future(self._wake.wait()))
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
