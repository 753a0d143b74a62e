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

import discord

from adapters.pacing import Pacer
from adapters.reply import ReplySink
from adapters.text import Layout
from bot.metrics import Metrics

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


class DiscordReply(ReplySink):
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
        super().__init__()
        self.source = source
        self.spacing_s = spacing_s
        self.channel = source.channel
        self.pacer = pacer
        self.show_cost = show_cost
        self.layout = Layout(page_limit)
        self.posted: list[discord.Message] = []
        self._shown: list[str] = []
        self._typing: asyncio.Task[None] | None = None

    def _started(self) -> None:
        self._typing = asyncio.create_task(self._keep_typing())

    async def _keep_typing(self) -> None:
        """Typing lasts 10 s; `typing()` renews it until the first message is posted."""
        with contextlib.suppress(discord.HTTPException):
            async with self.channel.typing():
                await asyncio.Event().wait()  # until cancelled

    def _stop_typing(self) -> None:
        if self._typing is not None:
            self._typing.cancel()

    def _trailer(self) -> list[str]:
        if not self._done.is_set():
            return [subtext(line) for line in self.activity()]
        lines = [subtext(n) for n in self.closing_notices()]
        if self.final is not None:
            lines.insert(0, subtext(self.final.summary(cost=self.show_cost)))
        return lines

    async def _flush(self) -> None:
        last = -self.spacing_s  # when progress last went out
        retry: float | None = None
        try:
            while not self._done.is_set():
                await self._pause(retry)
                self._wake.clear()
                if self._done.is_set():
                    break
                if not self._text and not self._tasks:
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
        self.layout.feed(self.answer(self._text))
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
