"""One reply of the engine, rendered into Discord while it streams.

The typing indicator shows at once and is renewed until the first message is posted. The
answer goes out as a reply to the asker's message, then edits, paced per channel (about
one a second within Discord's 5 edits per 5 s per channel, the last one kept for the final
text; a 429 holds the channel back for its retry_after, see `RateLimitWatch`),
with a line per tool call under the text while tools run. A long answer is laid out over
messages of at most 2,000 characters on paragraph and code-fence boundaries; the last one
ends with a small footer line. Nothing sent pings anyone: every message carries
`AllowedMentions.none()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from dataclasses import dataclass

import discord

from adapters.pacing import Pacer
from adapters.text import Layout
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
from bot.formatting import usd
from bot.metrics import Metrics
from bot.openrouter import display_model

log = logging.getLogger(__name__)

MESSAGE_LIMIT = 2_000
# Room kept on every message for the activity lines or the footer under the text.
TRAILER_ROOM = 200
EDIT = "edit"
# Discord's bucket for editing messages: 5 per 5 seconds per channel.
DISCORD_LIMITS = {EDIT: (5, 5.0)}
# Progress edits go out at most this often per reply, and leave one edit of the window
# for the final text, which goes out at once.
SPACING_S = 1.0
PROGRESS_RESERVE = 1
FINAL_ATTEMPTS = 4
SILENT = discord.AllowedMentions.none()


def footer_line(final: Final, *, show_cost: bool) -> str:
    parts = [display_model(final.model)]
    if final.passed_over:
        parts.append("passed over " + ", ".join(display_model(p.model) for p in final.passed_over))
    if show_cost and final.cost is not None:
        parts.append(usd(final.cost))
    return " · ".join(parts)


def discord_pacer() -> Pacer:
    return Pacer(DISCORD_LIMITS, per_channel=frozenset({EDIT}))


class RateLimitWatch(logging.Handler):
    """discord.py waits out a 429 by itself and says so in a warning of `discord.http`;
    this handler counts it and holds that channel's edit budget back for as long."""

    PREFIX = "We are being rate limited."

    def __init__(self, pacer: Pacer, metrics: Metrics) -> None:
        super().__init__(logging.WARNING)
        self.pacer = pacer
        self.metrics = metrics

    def emit(self, record: logging.LogRecord) -> None:
        if not str(record.msg).startswith(self.PREFIX) or not isinstance(record.args, tuple):
            return
        method, url, retry_after = (*record.args, None, None, None)[:3]
        self.metrics.platform_429s.labels("discord", str(method)).inc()
        found = re.search(r"/channels/(\d+)/messages", str(url))
        if found and isinstance(retry_after, int | float):
            self.pacer.hold("", EDIT, found.group(1), float(retry_after))


def subtext(line: str) -> str:
    """Discord's small grey line."""
    return "-# " + line.replace("\n", " ")


@dataclass
class _State:
    text: str = ""
    tail: str = ""  # an error or cancellation line after the text
    done: bool = False


class DiscordReply:
    """The engine's sink for one reply in Discord, answering `source`."""

    def __init__(
        self,
        source: discord.Message,
        pacer: Pacer,
        *,
        show_cost: bool,
        page_limit: int = MESSAGE_LIMIT - TRAILER_ROOM,
        spacing_s: float = SPACING_S,
    ) -> None:
        self.source = source
        self.spacing_s = spacing_s
        self.channel = source.channel
        self.pacer = pacer
        self.show_cost = show_cost
        self.layout = Layout(page_limit)
        self.final: Final | None = None
        self.failed: Failed | None = None
        self.posted: list[discord.Message] = []
        self._shown: list[str] = []
        self._state = _State()
        self._tasks: dict[str, tuple[str, str]] = {}
        self._notices: list[str] = []
        self._wake = asyncio.Event()
        self._done = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._typing: asyncio.Task[None] | None = None

    async def emit(self, event: ReplyEvent) -> None:
        state = self._state
        if isinstance(event, Started):
            self._typing = asyncio.create_task(self._keep_typing())
        elif isinstance(event, Delta):
            state.text += event.text
        elif isinstance(event, ToolStarted):
            self._tasks[event.call_id] = (event.activity, "running")
        elif isinstance(event, ToolFinished):
            title = self._tasks.get(event.call_id, (event.name, ""))[0]
            self._tasks[event.call_id] = (title, "done" if event.ok else "failed")
        elif isinstance(event, Notice):
            self._notices.append(event.text)
        elif isinstance(event, Final):
            self.final = event
            state.done = True
        elif isinstance(event, Failed):
            self.failed = event
            state.tail = f"⚠️ {event.message}"
            state.done = True
        elif isinstance(event, Cancelled):
            state.tail = f"*Stopped: {event.reason}.*"
            state.done = True
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        self._wake.set()
        if state.done:
            self._done.set()
            await self._flusher

    async def _keep_typing(self) -> None:
        """Typing lasts 10 s; `typing()` renews it until the first message is posted."""
        with contextlib.suppress(discord.HTTPException):
            async with self.channel.typing():
                await asyncio.Event().wait()  # until cancelled

    def _stop_typing(self) -> None:
        if self._typing is not None:
            self._typing.cancel()

    def _text(self) -> str:
        state = self._state
        text = state.text
        if state.tail:
            text = f"{text}\n\n{state.tail}" if text.strip() else state.tail
        if state.done and not text.strip():
            text = "\n".join(f"*{n}*" for n in self._notices) or "*No answer.*"
        return text

    def _trailer(self) -> list[str]:
        if not self._state.done:
            marks = {"running": "…", "done": ": done", "failed": ": failed"}
            return [subtext(f"{title}{marks[status]}") for title, status in self._tasks.values()]
        lines = []
        if self.final is not None:
            lines.append(subtext(footer_line(self.final, show_cost=self.show_cost)))
        if self._state.text.strip() or self._state.tail:
            lines += [subtext(n) for n in self._notices]
        return lines

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

    async def _flush(self) -> None:
        last = -self.spacing_s  # when progress last went out
        retry: float | None = None
        try:
            while not self._done.is_set():
                await self._pause(retry)
                self._wake.clear()
                if self._done.is_set():
                    break
                if not self._state.text and not self._tasks:
                    retry = None
                    continue  # the typing indicator says enough until there is something
                since = time.monotonic() - last
                if self.posted and since < self.spacing_s:
                    await self._pause(self.spacing_s - since)
                    if self._done.is_set():
                        break
                try:
                    retry = await self._render(final=False)
                except discord.HTTPException as error:
                    log.warning("discord: an update of a reply failed (%s)", error.status)
                    retry = self.spacing_s
                last = time.monotonic()
            await self._deliver_final()
        finally:
            self._stop_typing()

    async def _deliver_final(self) -> None:
        for attempt in range(1, FINAL_ATTEMPTS + 1):
            try:
                await self._render(final=True)
                return
            except discord.HTTPException as error:
                log.warning(
                    "discord: delivering a reply failed, attempt %d (%s)", attempt, error.status
                )
                await asyncio.sleep(attempt)
        log.error("discord: gave up delivering a reply in %s", self.channel.id)

    async def _render(self, *, final: bool) -> float | None:
        """Shows the reply; returns None, or the seconds until the channel's budget lets
        a progress edit go."""
        retry: float | None = None
        self.layout.feed(self._text())
        pages = self.layout.pages
        trailer = self._trailer()
        for index, page in enumerate(pages):
            body = page.rstrip()
            if index == len(pages) - 1:
                room = MESSAGE_LIMIT - len(body) - 1
                lines = []
                for line in trailer:
                    if len(line) + 1 > room:
                        break
                    lines.append(line)
                    room -= len(line) + 1
                body = "\n".join([body, *lines]) if body else "\n".join(lines)
            wait = await self._put(index, body or "…", final=final)
            if wait is not None:
                retry = wait if retry is None else min(retry, wait)
        return retry

    async def _put(self, index: int, content: str, *, final: bool) -> float | None:
        if index < len(self._shown) and self._shown[index] == content:
            return None
        if index < len(self.posted):
            # Channel ids are unique across servers: one edit budget per channel.
            channel = str(self.channel.id)
            if final:
                await self.pacer.wait("", EDIT, channel)
            else:
                wait = self.pacer.try_take("", EDIT, channel, reserve=PROGRESS_RESERVE)
                if wait > 0:
                    return wait
            await self.posted[index].edit(content=content, allowed_mentions=SILENT)
            self._shown[index] = content
            return None
        if index == 0:
            # A reply to the asker's message (posted even if that one was deleted meanwhile).
            reference = self.source.to_reference(fail_if_not_exists=False)
            message = await self.channel.send(
                content, reference=reference, mention_author=False, allowed_mentions=SILENT
            )
        else:
            message = await self.channel.send(content, allowed_mentions=SILENT)
        self._stop_typing()
        self.posted.append(message)
        self._shown.append(content)
        return None
