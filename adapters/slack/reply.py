"""One reply of the engine, rendered into a Slack thread while it streams.

Two ways to write it, chosen per workspace:

* `StreamWriter`: Slack's streaming methods (`chat.startStream`, `chat.appendStream`,
  `chat.stopStream`). Text is only ever appended; tool activity shows as task cards.
* `EditWriter`: `chat.postMessage`, then `chat.update` as the text grows. A placeholder
  appears at once and tool activity lines sit under the text while tools run.

Both lay a long answer out over several messages (`Layout`), breaking on paragraph and
code-fence boundaries. Updates coalesce: whatever arrived while a call waited for its turn
goes out in the next one, and the last call always carries the whole answer.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
from slack_sdk.errors import SlackApiError

from adapters.reply import ReplySink
from adapters.text import Layout

from .api import SlackApi, error_code, is_rate_limited

log = logging.getLogger(__name__)

# Characters per message. Slack documents 40,000 for `text` but has answered
# `msg_too_long` near 4,000, so answers are laid out well below that.
MESSAGE_LIMIT = 3_500
SMALLEST_LIMIT = 500
THINKING = "_Thinking…_"
FINAL_ATTEMPTS = 4
# Progress (one more update while text streams) goes out at most this often per reply...
STREAM_SPACING_S = 0.25
EDIT_SPACING_S = 1.0
# ... and leaves calls of the workspace's window to first and final texts: progress half
# the window (25 of 50 updates, 50 of 100 appends), a first text this many.
FIRST_RESERVE = 5
# A placeholder is posted only while this many updates of the workspace's window are free
# beyond those the placeholders already posted will need.
PLACEHOLDER_HEADROOM = 10
# A final text waits at most this long for chat.update before it is posted anew.
FINAL_WAIT_S = 1.0
# A reply waits at most this long for the workspace's stream budget before it edits.
STREAM_START_WAIT_S = 0.5
DELIVERY_ERRORS = (SlackApiError, aiohttp.ClientError, TimeoutError, OSError)


def defang(text: str) -> str:
    """Keeps model output from pinging @here, @channel, @everyone or user groups.

    A zero-width space after `<` breaks Slack's `<!here>` syntax. Inserting after the `<`
    keeps the result of a prefix a prefix of the result of the whole, which streaming needs.
    """
    return text.replace("<!", "<\u200b!")


def escape(text: str) -> str:
    """Text for a `mrkdwn` field, shown as written."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def context_block(lines: list[str]) -> list[dict[str, Any]]:
    if not lines:
        return []
    elements = [{"type": "mrkdwn", "text": escape(line)} for line in lines[:10]]
    return [{"type": "context", "elements": elements}]


@dataclass
class Abilities:
    """What a workspace has accepted so far; a refusal is remembered for its next replies."""

    streaming: bool = True  # chat.startStream and friends
    status: bool = True  # assistant.threads.setStatus
    # Placeholders posted and still waiting for the update that gives them their text.
    placeholders: int = 0


@dataclass(frozen=True)
class Target:
    """Where a reply goes: a thread of a channel, for the user who asked."""

    team: str
    channel: str
    thread_ts: str
    user: str


@dataclass
class View:
    """What a reply shows at one moment."""

    text: str  # the answer so far, with any error line
    tasks: dict[str, tuple[str, str]]  # tool call id -> (activity line, status)
    final: bool
    footer: list[str] = field(default_factory=list)  # context lines of the last message
    activity: list[str] = field(default_factory=list)  # "_Reading a.txt…_", while it runs


class Writer(Protocol):
    started: bool

    async def render(self, view: View) -> float | None:
        """Shows progress; returns None when up to date, or the seconds until the budget
        lets the rest go."""

    async def finish(self, view: View) -> None:
        """Shows the final text, whatever it takes."""


class EditWriter:
    """`chat.postMessage`, then `chat.update` as the text grows."""

    def __init__(
        self,
        api: SlackApi,
        target: Target,
        limit: int = MESSAGE_LIMIT,
        abilities: Abilities | None = None,
    ) -> None:
        self.api = api
        self.target = target
        self.layout = Layout(limit)
        self.abilities = abilities or Abilities()
        self.posted: list[str] = []  # ts of each message
        self.shown: list[tuple[str, tuple[str, ...]]] = []
        self.started = False
        self.waiting = False  # this reply's placeholder still waits for its first text

    def _placeholder_done(self) -> None:
        if self.waiting:
            self.waiting = False
            self.abilities.placeholders -= 1

    async def render(self, view: View) -> float | None:
        return await self._shrinking(self._render, view)

    async def finish(self, view: View) -> None:
        await self._shrinking(self._render, view)

    async def _shrinking(
        self, render: Callable[[View], Awaitable[float | None]], view: View
    ) -> float | None:
        try:
            return await render(view)
        except SlackApiError as error:
            if error_code(error) != "msg_too_long" or self.layout.limit <= SMALLEST_LIMIT:
                raise
            # Slack's real limit is lower than ours: lay the whole answer out again.
            limit = max(SMALLEST_LIMIT, self.layout.limit // 2)
            log.info("slack: msg_too_long; laying the answer out at %d characters", limit)
            self.layout = Layout(limit)
            return await self._shrinking(render, view)

    def _pages(self, view: View) -> list[tuple[str, list[str]]]:
        self.layout.feed(view.text)
        pages = self.layout.pages
        shown: list[tuple[str, list[str]]] = []
        for index, page in enumerate(pages):
            body = page.rstrip()
            footer: list[str] = []
            if index == len(pages) - 1:
                if view.final:
                    footer = view.footer
                else:
                    lines = "\n".join(view.activity)
                    body = "\n\n".join(part for part in (body, lines) if part) or THINKING
            shown.append((body or "…", footer))
        return shown

    async def _render(self, view: View) -> float | None:
        retry: float | None = None
        if view.final:
            self._placeholder_done()  # whatever happens now, it no longer waits
        placeholder = not (self.posted or view.text or view.final or view.tasks)
        if placeholder:
            # A placeholder claims an update for its first text. When the workspace's
            # update budget has no room for it, the first text is posted instead, so it
            # does not wait for that budget.
            free = self.api.pacer.headroom(self.target.team, "chat.update")
            if free - self.abilities.placeholders < PLACEHOLDER_HEADROOM:
                return None
            self.waiting = True
            self.abilities.placeholders += 1
        pages = self._pages(view)
        for index, (body, footer) in enumerate(pages):
            if index < len(self.shown) and self.shown[index] == (body, tuple(footer)):
                continue
            if index >= len(self.posted):
                await self._post(body, footer)
                continue
            if view.final:
                if self.api.pacer.delay(self.target.team, "chat.update") > FINAL_WAIT_S:
                    # The workspace's update budget is spent for a while: the final text
                    # goes out in new messages now, the stale ones are removed later.
                    await self._repost(index, pages)
                    return None
                await self._update(index, body, footer, taken=False)
                continue
            # The first text over a placeholder has its update claimed; more progress
            # leaves half of the budget to first and final texts.
            first = self.shown[index][0] == THINKING
            wait = self.api.pacer.try_take(
                self.target.team, "chat.update", reserve=0 if first else 25
            )
            if wait > 0:
                retry = wait if retry is None else min(retry, wait)
                continue
            await self._update(index, body, footer, taken=True)
            if first:
                self._placeholder_done()
        return retry

    async def _post(self, body: str, footer: list[str]) -> None:
        blocks = [{"type": "markdown", "text": body}, *context_block(footer)]
        web, target = self.api.web, self.target
        answer = await self.api.call(
            "chat.postMessage",
            target.team,
            target.channel,
            lambda: web.chat_postMessage(
                channel=target.channel,
                thread_ts=target.thread_ts,
                text=body,
                blocks=blocks,
                unfurl_links=False,
                unfurl_media=False,
            ),
        )
        self.started = True
        self.posted.append(str(answer["ts"]))
        self.shown.append((body, tuple(footer)))

    async def _update(self, index: int, body: str, footer: list[str], *, taken: bool) -> None:
        blocks = [{"type": "markdown", "text": body}, *context_block(footer)]
        web, target, ts = self.api.web, self.target, self.posted[index]
        await self.api.call(
            "chat.update",
            target.team,
            target.channel,
            lambda: web.chat_update(channel=target.channel, ts=ts, text=body, blocks=blocks),
            taken=taken,
        )
        self.shown[index] = (body, tuple(footer))

    async def _repost(self, index: int, pages: list[tuple[str, list[str]]]) -> None:
        stale = self.posted[index:]
        self.posted, self.shown = self.posted[:index], self.shown[:index]
        for body, footer in pages[index:]:
            await self._post(body, footer)
        task = asyncio.create_task(self._delete(stale))
        CLEANUPS.add(task)
        task.add_done_callback(CLEANUPS.discard)

    async def _delete(self, stale: list[str]) -> None:
        web, target = self.api.web, self.target
        for ts in stale:
            try:
                await self.api.call(
                    "chat.delete",
                    target.team,
                    target.channel,
                    functools.partial(web.chat_delete, channel=target.channel, ts=ts),
                )
            except DELIVERY_ERRORS as error:
                log.warning("slack: could not remove a stale message (%s)", _describe(error))


# Removals of stale messages still waiting for their budget (see EditWriter._repost).
CLEANUPS: set[asyncio.Task[None]] = set()


def _markdown(text: str) -> dict[str, str]:
    return {"type": "markdown_text", "text": text}


class StreamUnavailable(Exception):
    """The workspace's budget for new streams is spent: this reply edits instead."""


class StreamWriter:
    """`chat.startStream`, `chat.appendStream` as text arrives, `chat.stopStream`."""

    def __init__(self, api: SlackApi, target: Target, limit: int = MESSAGE_LIMIT) -> None:
        self.api = api
        self.target = target
        self.layout = Layout(limit)
        self.ts: str | None = None
        self.sent = 0  # characters of the open page already appended
        self.finished_pages = 0
        self.task_status: dict[str, str] = {}
        self.started = False

    async def _start(self) -> None:
        web, target = self.api.web, self.target
        if self.api.pacer.delay(target.team, "chat.startStream") > STREAM_START_WAIT_S:
            raise StreamUnavailable
        answer = await self.api.call(
            "chat.startStream",
            target.team,
            target.channel,
            lambda: web.chat_startStream(
                channel=target.channel,
                thread_ts=target.thread_ts,
                recipient_user_id=target.user,
                recipient_team_id=target.team,
            ),
        )
        self.started = True
        self.ts = str(answer["ts"])
        self.sent = 0

    async def _append(self, chunks: list[dict[str, Any]]) -> None:
        web, target, ts = self.api.web, self.target, self.ts
        assert ts is not None
        await self.api.call(
            "chat.appendStream",
            target.team,
            target.channel,
            lambda: web.chat_appendStream(channel=target.channel, ts=ts, chunks=chunks),
            taken=True,
        )

    async def _stop(
        self, chunks: list[dict[str, Any]], blocks: list[dict[str, Any]] | None = None
    ) -> None:
        web, target, ts = self.api.web, self.target, self.ts
        assert ts is not None
        await self.api.call(
            "chat.stopStream",
            target.team,
            target.channel,
            lambda: web.chat_stopStream(
                channel=target.channel, ts=ts, chunks=chunks or None, blocks=blocks or None
            ),
        )
        self.ts = None

    async def _full_pages(self, view: View) -> None:
        """Ends the messages that filled up, each with the rest of its text."""
        self.layout.feed(view.text, keep=self.sent)
        while self.finished_pages < len(self.layout.frozen):
            page = self.layout.frozen[self.finished_pages]
            if self.ts is None:
                await self._start()
            rest = page[self.sent :]
            await self._stop([_markdown(rest)] if rest else [])
            self.finished_pages += 1
            self.sent = 0

    def _chunks(self, view: View, piece: str) -> tuple[list[dict[str, Any]], dict[str, str]]:
        chunks = [_markdown(piece)] if piece else []
        changed = {i: s for i, (_, s) in view.tasks.items() if self.task_status.get(i) != s}
        chunks += [
            {"type": "task_update", "id": call_id, "title": view.tasks[call_id][0], "status": s}
            for call_id, s in changed.items()
        ]
        return chunks, changed

    async def render(self, view: View) -> float | None:
        await self._full_pages(view)
        if self.ts is None:
            await self._start()
        page = self.layout.open
        piece = page[self.sent :]
        if len(page) > self.layout.limit // 2:
            # Near the end of a message only whole lines go out, so the break to the next
            # message can fall between lines.
            piece = piece[: piece.rfind("\n") + 1]
        chunks, changed = self._chunks(view, piece)
        if not chunks:
            return None
        wait = self.api.pacer.try_take(
            self.target.team, "chat.appendStream", reserve=FIRST_RESERVE if not self.sent else 50
        )
        if wait > 0:
            return wait
        await self._append(chunks)
        self.sent += len(piece)
        self.task_status.update(changed)
        return None

    async def finish(self, view: View) -> None:
        await self._full_pages(view)
        if self.ts is None:
            await self._start()
        chunks, changed = self._chunks(view, self.layout.open[self.sent :])
        await self._stop(chunks, context_block(view.footer))
        self.sent = len(self.layout.open)
        self.task_status.update(changed)


class SlackReply(ReplySink):
    """The engine's sink for one reply in Slack.

    A flusher task renders the reply: at once when it starts, then whenever there is news,
    at most every SPACING seconds per reply (the first text goes out at once) and as the
    workspace's budget allows; the final text goes out as soon as it is known."""

    def __init__(
        self,
        api: SlackApi,
        target: Target,
        *,
        abilities: Abilities,
        show_cost: bool,
        limit: int = MESSAGE_LIMIT,
    ) -> None:
        super().__init__()
        self.api = api
        self.target = target
        self.abilities = abilities
        self.show_cost = show_cost
        self.limit = limit
        self.writer: Writer = (
            StreamWriter(api, target, limit)
            if abilities.streaming
            else EditWriter(api, target, limit, abilities)
        )

    def _view(self) -> View:
        done = self._done.is_set()
        footer = self.closing_notices() if done else []
        if self.final is not None:
            footer = [self.final.summary(cost=self.show_cost), *footer]
        activity = [f"_{line}_" for line in self.activity()]
        return View(self.answer(defang(self._text)), dict(self._tasks), done, footer, activity)

    async def _thinking(self) -> None:
        """Slack's "is thinking…" status under the thread while a stream has no text yet
        (it clears itself when the answer posts). The edit route shows a placeholder."""
        if not isinstance(self.writer, StreamWriter) or not self.abilities.status:
            return
        web, target = self.api.web, self.target
        try:
            await self.api.call(
                "assistant.threads.setStatus",
                target.team,
                target.channel,
                lambda: web.assistant_threads_setStatus(
                    channel_id=target.channel, thread_ts=target.thread_ts, status="is thinking…"
                ),
            )
        except SlackApiError as error:
            log.info("slack: no thinking status here (%s)", error_code(error))
            self.abilities.status = False
        except DELIVERY_ERRORS as error:
            log.info("slack: thinking status failed (%s)", _describe(error))

    async def _flush(self) -> None:
        await self._thinking()
        spacing = STREAM_SPACING_S if isinstance(self.writer, StreamWriter) else EDIT_SPACING_S
        last_text = -spacing  # when progress with text last went out
        retry: float | None = 0.0
        while not self._done.is_set():
            await self._pause(retry)
            self._wake.clear()
            if self._done.is_set():
                break
            since = time.monotonic() - last_text
            if self._text and since < spacing:
                await self._pause(spacing - since)
                if self._done.is_set():
                    break
            had_text = bool(self._text)
            try:
                retry = await self._render(self._view(), final=False)
            except DELIVERY_ERRORS as error:
                # The next update carries this one's text too.
                log.warning("slack: an update of a reply failed (%s)", _describe(error))
                retry = 1.0
            if had_text:
                last_text = time.monotonic()
        await self._deliver_final()

    async def _deliver_final(self) -> None:
        view = self._view()
        for attempt in range(1, FINAL_ATTEMPTS + 1):
            try:
                await self._render(view, final=True)
                return
            except DELIVERY_ERRORS as error:
                log.warning(
                    "slack: delivering a reply failed, attempt %d (%s)", attempt, _describe(error)
                )
                await asyncio.sleep(attempt)
        log.error("slack: gave up delivering a reply in %s", self.target.channel)

    async def _render(self, view: View, *, final: bool) -> float | None:
        writer = self.writer
        try:
            if final:
                await writer.finish(view)
                return None
            return await writer.render(view)
        except StreamUnavailable:
            log.info("slack: the workspace's stream budget is spent; editing this reply")
        except SlackApiError as error:
            if not isinstance(writer, StreamWriter) or is_rate_limited(error):
                raise
            if not writer.started:
                # This workspace does not take streamed messages: post and edit instead.
                log.info("slack: streaming refused (%s); editing messages", error_code(error))
                self.abilities.streaming = False
            else:
                # A stream broke half-way: the answer goes out whole in new messages.
                log.warning("slack: a stream broke (%s); posting the answer", error_code(error))
        self.writer = EditWriter(self.api, self.target, self.limit, self.abilities)
        if final:
            await self.writer.finish(view)
            return None
        return await self.writer.render(view)


def _describe(error: BaseException) -> str:
    if isinstance(error, SlackApiError):
        return error_code(error) or f"HTTP {error.response.status_code}"
    return error.__class__.__name__
