"""The Slack front end: a slack-bolt `AsyncApp` on the shared engine, commands and store.

Events arrive over HTTP (`/slack/events`, signed) or Socket Mode; both run the same
listeners. A mention in a channel is answered in a thread under it, a follow-up in a
thread the bot answers in needs no mention, and a DM is answered in a thread under the
message. `/model` and `/credits` are acknowledged at once and answered through `respond`.
"""

from __future__ import annotations

import asyncio
import functools
import html
import json
import logging
import re
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import httpx
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from adapters.pacing import SLACK_LIMITS, Pacer
from bot.commands import Caller, Commands
from bot.config import ConfigError, Settings
from bot.engine import Attachment, Conversation, Engine, Turn
from bot.formatting import Document
from bot.store import ChannelKey
from bot.tools import ToolError

from .api import SlackApi, error_code
from .blocks import document_blocks, document_fallback
from .reply import CLEANUPS, DELIVERY_ERRORS, Abilities, SlackReply, Target

log = logging.getLogger(__name__)

PLATFORM = "slack"
COMMANDS = ("/model", "/credits")  # as manifest.yml declares them
THREAD_CACHE_SIZE = 256  # threads whose messages are kept in memory
FILES_PER_MESSAGE = 10  # files read from one message (Slack allows more)
IMAGE_CACHE_BYTES = 50_000_000  # images those threads may hold, for models that see them
THREAD_FETCH_LIMIT = 1_000  # messages read from a long thread's start
USER_TTL_S = 300.0
KNOWN_THREADS = 10_000  # threads the bot answered in, remembered in memory too
# Message subtypes written by people; every other subtype (edits, deletions, joins, bot
# posts) is not addressed to the bot.
PERSON_SUBTYPES = frozenset({None, "file_share", "thread_broadcast"})


class _SameToken(logging.Filter):
    """Bolt warns that `token` goes unused when a client is given: it read SLACK_BOT_TOKEN
    from the environment, the very token our client carries. Not worth an operator's eye."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()


def _bolt_logger() -> logging.Logger:
    logger = logging.getLogger("slack_bolt")
    if not any(isinstance(f, _SameToken) for f in logger.filters):
        logger.addFilter(_SameToken())
    return logger


@dataclass
class ThreadMessage:
    author: str  # user id, or "" for another app
    text: str
    files: list[dict[str, Any]] = field(default_factory=list)
    from_bot: bool = False  # written by routerbot itself
    author_name: str = ""  # for other apps, which have no user
    attachments: list[Attachment] = field(default_factory=list)
    files_read: bool = False


@dataclass(frozen=True)
class Identity:
    """Who the bot is in a workspace, from Bolt's `auth.test`."""

    user: str
    bot: str

    @classmethod
    def of(cls, context: AsyncBoltContext) -> Identity:
        return cls(str(context.bot_user_id or ""), str(context.bot_id or ""))


@dataclass
class User:
    name: str
    is_admin: bool
    fetched_at: float


class SlackBot:
    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        pacer: Pacer | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        token = settings.slack_bot_token
        if token is None or not token.get_secret_value().strip():
            raise ConfigError(
                "SLACK_BOT_TOKEN is not set: install the app to the workspace and copy its "
                "Bot User OAuth Token (xoxb-...)"
            )
        self.engine = engine
        self.settings = settings
        self.commands = Commands(engine)
        self._token = token.get_secret_value().strip()
        base_url = settings.slack_api_base_url.rstrip("/") + "/"
        # One connection pool for every Web API call: without a session slack-sdk opens a
        # new one (and a new TCP connection) per call.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256),
            timeout=aiohttp.ClientTimeout(total=30),
        )
        self.web = AsyncWebClient(token=self._token, base_url=base_url, session=self._session)
        self.api = SlackApi(self.web, pacer or Pacer(SLACK_LIMITS), engine.metrics)
        self._file_hosts = {urlsplit(base_url).hostname or "", "files.slack.com"}
        self._http = http or httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=10.0))
        secret = settings.slack_signing_secret
        self._verifier = SignatureVerifier(secret.get_secret_value()) if secret else None
        self.app = AsyncApp(
            client=self.web,
            signing_secret=secret.get_secret_value() if secret else None,
            request_verification_enabled=secret is not None,
            # The listeners filter the bot's own messages themselves, and count them.
            ignoring_self_events_enabled=False,
            logger=_bolt_logger(),
        )
        self.app.event("app_mention")(self._on_mention)
        self.app.event("message")(self._on_message)
        for command in COMMANDS:
            self.app.command(command)(self._on_command)
        self.app.error(self._on_error)
        self._threads: OrderedDict[tuple[str, str, str], OrderedDict[str, ThreadMessage]] = (
            OrderedDict()
        )
        self._users: dict[str, User] = {}
        self._abilities: dict[str, Abilities] = {}
        self._bot_threads: OrderedDict[tuple[ChannelKey, str], None] = OrderedDict()
        self._other_threads: OrderedDict[tuple[ChannelKey, str], None] = OrderedDict()
        self._image_bytes = 0  # image data held by the threads in `_threads`
        self._tasks: set[asyncio.Task[None]] = set()
        self._socket: AsyncSocketModeHandler | None = None
        self.accepting = True
        # What became of each event: answered, ignored, duplicate (for logs and metrics).
        self.outcomes: Counter[str] = Counter()

    def __repr__(self) -> str:
        return f"SlackBot(base_url={self.web.base_url!r})"

    # -- transports -----------------------------------------------------------------

    async def handle_http(self, request: web.Request) -> web.Response:
        """The `/slack/events` endpoint: signature checked by Bolt, answered at once."""
        if self._verifier is not None and self._plain_channel_message(
            await request.read(), request.headers
        ):
            self.outcomes["ignored"] += 1
            return web.Response(status=200)
        return await to_aiohttp_response(
            await self.app.async_dispatch(await to_bolt_request(request))
        )

    def _plain_channel_message(self, body: bytes, headers: Any) -> bool:
        """A signed `message` event at the top of a channel: Slack sends one beside each
        app_mention, and the bot never answers it. Acknowledged without Bolt's whole
        pipeline, which halves the work of a burst of mentions."""
        if b'"message"' not in body or b'"thread_ts"' in body:
            return False
        assert self._verifier is not None
        if not self._verifier.is_valid(
            body, headers.get("X-Slack-Request-Timestamp"), headers.get("X-Slack-Signature")
        ):
            return False  # Bolt refuses it
        try:
            envelope = json.loads(body)
        except ValueError:
            return False
        event = envelope.get("event") if isinstance(envelope, dict) else None
        return (
            envelope.get("type") == "event_callback"
            and isinstance(event, dict)
            and event.get("type") == "message"
            and event.get("channel_type") in ("channel", "group")
            and not event.get("thread_ts")
        )

    async def check_tokens(self) -> None:
        """One auth.test (and apps.connections.open for Socket Mode) at start-up: a revoked
        or mistyped token ends the start with one line instead of failing every event."""
        app_token = self.settings.slack_app_token
        checks = [("SLACK_BOT_TOKEN", self.web.auth_test)]
        if app_token is not None:
            opening = functools.partial(
                self.web.apps_connections_open, app_token=app_token.get_secret_value().strip()
            )
            checks.append(("SLACK_APP_TOKEN", opening))
        for name, check in checks:
            try:
                await check()
            except SlackApiError as error:
                raise ConfigError(
                    f"{name} was refused by Slack ({error_code(error) or 'error'}): copy it "
                    "again from the app's settings at https://api.slack.com/apps"
                ) from None
            except (aiohttp.ClientError, OSError, TimeoutError) as error:
                raise ConfigError(
                    f"could not reach Slack at {self.settings.slack_api_base_url} "
                    f"({error.__class__.__name__}): check SLACK_API_BASE_URL and the network"
                ) from None

    async def start_socket_mode(self) -> None:
        app_token = self.settings.slack_app_token
        if app_token is None:
            raise ConfigError("SLACK_APP_TOKEN is not set")
        self._socket = AsyncSocketModeHandler(self.app, app_token.get_secret_value().strip())
        await self._socket.connect_async()  # type: ignore[no-untyped-call]  # slack-bolt

    async def stop_events(self) -> None:
        """Takes no new events (shutdown); replies already running go on."""
        self.accepting = False
        if self._socket is not None:
            await self._socket.close_async()  # type: ignore[no-untyped-call]  # slack-bolt
            self._socket = None

    async def aclose(self, wait_s: float = 30.0) -> None:
        """Stops taking events, gives running replies `wait_s` to finish, closes."""
        await self.stop_events()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=wait_s)
        # Removals of stale messages still waiting for their budget are cosmetic: dropped.
        cleanups = list(CLEANUPS)
        for task in cleanups:
            task.cancel()
        await asyncio.gather(*cleanups, return_exceptions=True)
        await self._http.aclose()
        await self._session.close()

    async def ready(self) -> bool:
        """Whether Slack can reach the bot: the socket is connected, or HTTP is served."""
        if self._socket is not None:
            return bool(await self._socket.client.is_connected())
        return self.settings.slack_signing_secret is not None

    @property
    def replying(self) -> int:
        """How many replies are running."""
        return len(self._tasks)

    async def idle(self) -> None:
        """Waits until no reply is running (tests, shutdown)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    # -- events ---------------------------------------------------------------------

    async def _first_time(self, body: dict[str, Any]) -> bool:
        """False for an event already handled (a retry, or a re-delivery after a restart)."""
        event_id = body.get("event_id")
        if not isinstance(event_id, str):
            return True
        return await self.engine.store.first_sighting(f"{PLATFORM}:{event_id}")

    async def _on_mention(
        self, body: dict[str, Any], event: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        outcome = "ignored"
        # DMs arrive as message events too, which answer them.
        if not str(event.get("channel", "")).startswith("D") and not event.get("bot_id"):
            outcome = await self._answer(body, event, context)
        self.outcomes[outcome] += 1

    async def _on_message(
        self, body: dict[str, Any], event: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        self.outcomes[await self._route_message(body, event, context)] += 1

    async def _route_message(
        self, body: dict[str, Any], event: dict[str, Any], context: AsyncBoltContext
    ) -> str:
        user = event.get("user")
        if event.get("subtype") not in PERSON_SUBTYPES or event.get("bot_id"):
            return "ignored"  # edits, deletions, joins, and every app's posts (ours too)
        if not user or user == context.bot_user_id:
            return "ignored"
        if event.get("channel_type") == "im":
            return await self._answer(body, event, context)
        thread_ts = event.get("thread_ts")
        if not thread_ts or f"<@{context.bot_user_id}" in str(event.get("text", "")):
            return "ignored"  # a channel message; mentions come as app_mention
        team, channel = self._team(body, context), str(event.get("channel", ""))
        key = ChannelKey(PLATFORM, team, channel)
        if self.settings.slack_follow_threads and await self._is_bot_thread(key, str(thread_ts)):
            return await self._answer(body, event, context)
        # Not for the bot, but part of a thread it may be asked about later.
        cached = self._threads.get((team, channel, str(thread_ts)))
        if cached is not None:
            cached[str(event.get("ts"))] = self._message(event)
        return "ignored"

    async def _answer(
        self, body: dict[str, Any], event: dict[str, Any], context: AsyncBoltContext
    ) -> str:
        if not self.accepting:
            log.warning("slack: an event arrived during shutdown and was not answered")
            return "shutdown"
        if not await self._first_time(body):
            return "duplicate"
        task = asyncio.create_task(self._reply(body, event, context))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return "answered"

    @staticmethod
    def _team(body: dict[str, Any], context: AsyncBoltContext) -> str:
        return str(context.team_id or body.get("team_id") or "")

    async def _reply(
        self, body: dict[str, Any], event: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        team, channel = self._team(body, context), str(event["channel"])
        thread_ts = str(event.get("thread_ts") or event["ts"])
        user = str(event.get("user", ""))
        conversation = Conversation(PLATFORM, team, channel, thread_ts)
        target = Target(team, channel, thread_ts, user)
        sink = SlackReply(
            self.api,
            target,
            abilities=self._abilities.setdefault(team, Abilities()),
            show_cost=self.settings.show_cost,
        )
        try:
            self._mark_thread(conversation.key, thread_ts)
            turns = await self._turns(conversation, event, Identity.of(context))
            final = await self.engine.reply(conversation, turns, sink, user_id=user)
        except Exception:
            # A bug of ours, or Slack failing us: say so in the thread rather than vanish.
            log.exception("slack: reply in %s failed", channel)
            await self._say_failed(target)
            return
        if final is not None:
            thread = self._threads.get((team, channel, thread_ts))
            if thread is not None:
                thread[f"routerbot:{event['ts']}"] = ThreadMessage("", final.text, from_bot=True)

    def _mark_thread(self, key: ChannelKey, thread_ts: str) -> None:
        """Remembers a thread the bot answers in: at once in memory, in the store behind."""
        known = (key, thread_ts)
        if known in self._bot_threads:
            return
        self._remember(self._bot_threads, known)
        self._other_threads.pop(known, None)
        task = asyncio.create_task(self.engine.store.mark_thread(key, thread_ts))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _is_bot_thread(self, key: ChannelKey, thread_ts: str) -> bool:
        """Asked of every reply in every thread of the bot's channels: answered from memory
        both ways once known (a thread the bot joins later is marked in memory first)."""
        known = (key, thread_ts)
        if known in self._bot_threads:
            return True
        if known in self._other_threads:
            return False
        found = await self.engine.store.is_bot_thread(key, thread_ts)
        self._remember(self._bot_threads if found else self._other_threads, known)
        return found

    @staticmethod
    def _remember(
        threads: OrderedDict[tuple[ChannelKey, str], None], known: tuple[ChannelKey, str]
    ) -> None:
        threads[known] = None
        while len(threads) > KNOWN_THREADS:
            threads.popitem(last=False)

    async def _say_failed(self, target: Target) -> None:
        try:
            await self.web.chat_postMessage(
                channel=target.channel,
                thread_ts=target.thread_ts,
                text="⚠️ Something went wrong inside the bot, and this reply was lost. Try "
                "again; if it keeps happening, tell whoever runs the bot.",
            )
        except DELIVERY_ERRORS:
            log.exception("slack: could not report a failed reply")

    async def _on_error(self, error: Exception, body: dict[str, Any]) -> None:
        log.error("slack: a listener failed: %s", error.__class__.__name__, exc_info=error)

    # -- context --------------------------------------------------------------------

    @staticmethod
    def _message(event: dict[str, Any]) -> ThreadMessage:
        files = [f for f in event.get("files") or [] if isinstance(f, dict)]
        if event.get("bot_id") and not event.get("user"):
            name = str(event.get("username") or (event.get("bot_profile") or {}).get("name", ""))
            return ThreadMessage("", str(event.get("text", "")), files, author_name=name or "app")
        return ThreadMessage(str(event.get("user", "")), str(event.get("text", "")), files)

    async def _thread(
        self, conversation: Conversation, event: dict[str, Any], me: Identity
    ) -> OrderedDict[str, ThreadMessage]:
        """The thread's messages, fetched once with conversations.replies, then kept current
        from events (that method is among Slack's most tightly rate-limited)."""
        key = (conversation.workspace, conversation.channel, conversation.thread)
        thread = self._threads.get(key)
        if thread is None:
            thread = OrderedDict()
            if event.get("thread_ts") and event.get("thread_ts") != event.get("ts"):
                await self._fetch_thread(conversation, thread, me)
            self._threads[key] = thread
            self._threads.move_to_end(key)
            self._trim_threads()
        self._threads.move_to_end(key)
        thread.setdefault(str(event["ts"]), self._message(event))
        return thread

    def _trim_threads(self) -> None:
        """Forgets the least recently used threads beyond THREAD_CACHE_SIZE, or while the
        images they hold pass IMAGE_CACHE_BYTES (the newest thread always stays). Called
        when a thread or an image comes in; `_image_bytes` keeps the total."""
        while len(self._threads) > 1 and (
            len(self._threads) > THREAD_CACHE_SIZE or self._image_bytes > IMAGE_CACHE_BYTES
        ):
            _, oldest = self._threads.popitem(last=False)
            self._image_bytes -= sum(
                len(a.data or b"") for m in oldest.values() for a in m.attachments if a.is_image
            )

    async def _fetch_thread(
        self, conversation: Conversation, thread: OrderedDict[str, ThreadMessage], me: Identity
    ) -> None:
        cursor: str | None = None
        try:
            while len(thread) < THREAD_FETCH_LIMIT:
                page = await self.api.call(
                    "conversations.replies",
                    conversation.workspace,
                    conversation.channel,
                    functools.partial(
                        self.web.conversations_replies,
                        channel=conversation.channel,
                        ts=conversation.thread,
                        cursor=cursor,
                        limit=200,
                    ),
                )
                for message in page.get("messages") or []:
                    entry = self._message(message)
                    entry.from_bot = message.get("user") == me.user or (
                        bool(message.get("bot_id")) and message.get("bot_id") == me.bot
                    )
                    thread[str(message.get("ts"))] = entry
                cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
                if not cursor:
                    break
        except DELIVERY_ERRORS as error:
            # Answer from what the event carries rather than not at all.
            log.warning("slack: could not read the thread (%s)", error.__class__.__name__)

    async def _turns(
        self, conversation: Conversation, event: dict[str, Any], me: Identity
    ) -> list[Turn]:
        thread = await self._thread(conversation, event, me)
        turns: list[Turn] = []
        for message in list(thread.values()):
            if message.from_bot:
                turns.append(Turn(me.user, "routerbot", message.text, from_bot=True))
                continue
            if not message.files_read:
                await self._read_files(conversation, message)
            name = message.author_name or (await self.user(message.author)).name
            text = await self._clean(message.text, me.user)
            turns.append(Turn(message.author, name, text, tuple(message.attachments)))
        return turns

    async def _clean(self, text: str, bot_user: str) -> str:
        """Slack's markup as a person reads it: the bot's mention gone, others by name."""
        text = re.sub(rf"<@{re.escape(bot_user)}(\|[^>]*)?>\s*", "", text) if bot_user else text

        async def named(match: re.Match[str]) -> str:
            return "@" + (await self.user(match.group(1))).name

        parts: list[str] = []
        last = 0
        for match in re.finditer(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>", text):
            parts += [text[last : match.start()], await named(match)]
            last = match.end()
        parts.append(text[last:])
        return html.unescape("".join(parts)).strip()

    # -- files ----------------------------------------------------------------------

    async def _read_files(self, conversation: Conversation, message: ThreadMessage) -> None:
        message.files_read = True
        notes: list[str] = []
        cap = int(self.settings.max_attachment_mb * 1_000_000)
        for number, file in enumerate(message.files):
            name = str(file.get("name") or file.get("title") or file.get("id") or "file")
            if number >= FILES_PER_MESSAGE:
                notes.append(f"({name} and the rest: the bot reads {FILES_PER_MESSAGE} files)")
                break
            mime = str(file.get("mimetype") or "application/octet-stream")
            url = str(file.get("url_private_download") or file.get("url_private") or "")
            size = int(file.get("size") or 0)
            if size > cap:
                notes.append(
                    f"({name} is {size / 1e6:.1f} MB, over the {cap / 1e6:g} MB the bot reads)"
                )
                continue
            data = await self._download(url, cap)
            if data is None:
                notes.append(f"(could not download {name})")
                continue
            attachment = Attachment(name, mime, data)
            if attachment.is_image:
                message.attachments.append(attachment)
                self._image_bytes += len(data)
                self._trim_threads()
                continue
            try:
                saved = await self.engine.save_attachment(conversation, attachment)
            except ToolError as error:
                notes.append(f"(could not keep {name}: {error})")
                continue
            message.attachments.append(Attachment(name, mime, saved_as=saved))
        if notes:
            message.text = " ".join([message.text, *notes]).strip()

    async def _download(self, url: str, cap: int) -> bytes | None:
        """A file's content, fetched with the bot token from Slack's own hosts only."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or parts.hostname not in self._file_hosts:
            log.warning("slack: not downloading a file from %s", parts.hostname)
            return None
        headers = {"Authorization": f"Bearer {self._token}"}
        try:
            async with self._http.stream("GET", url, headers=headers) as response:
                if response.status_code != 200:
                    return None
                data = bytearray()
                async for chunk in response.aiter_bytes():
                    data += chunk
                    if len(data) > cap:
                        return None
                return bytes(data)
        except httpx.HTTPError as error:
            log.warning("slack: a file download failed (%s)", error.__class__.__name__)
            return None

    # -- people ---------------------------------------------------------------------

    async def user(self, user_id: str) -> User:
        """A user's display name and whether they administer the workspace (cached)."""
        known = self._users.get(user_id)
        now = time.monotonic()
        if known is not None and now - known.fetched_at < USER_TTL_S:
            return known
        try:
            answer = await self.web.users_info(user=user_id)
        except DELIVERY_ERRORS as error:
            log.warning("slack: users.info failed (%s)", error.__class__.__name__)
            return known or User(user_id, False, now)
        info = answer.get("user") or {}
        profile = info.get("profile") or {}
        name = (
            profile.get("display_name")
            or profile.get("real_name")
            or info.get("real_name")
            or info.get("name")
            or user_id
        )
        admin = bool(info.get("is_admin") or info.get("is_owner") or info.get("is_primary_owner"))
        user = User(str(name), admin, now)
        self._users[user_id] = user
        return user

    # -- commands -------------------------------------------------------------------

    async def _on_command(
        self,
        ack: AsyncAck,
        body: dict[str, Any],
        respond: AsyncRespond,
        context: AsyncBoltContext,
    ) -> None:
        await ack()
        user_id = str(body.get("user_id", ""))
        key = ChannelKey(PLATFORM, self._team(body, context), str(body.get("channel_id")))
        try:
            user = await self.user(user_id)
            caller = Caller(user_id, user.name, is_admin=user.is_admin)
            doc = await self.commands.run(
                str(body.get("command", "")), str(body.get("text", "")), key, caller
            )
        except Exception:
            # The command's own errors come back as documents; this is a bug of ours, and
            # the caller still gets an answer.
            log.exception("slack: %s failed", body.get("command"))
            doc = Document(
                "Something went wrong",
                notes=["The bot could not run this command. Try again in a moment."],
                ok=False,
            )
        await self._respond(respond, doc, user_id)

    async def _respond(self, respond: AsyncRespond, doc: Document, user_id: str) -> None:
        announcement = None
        if doc.announcement and not doc.ephemeral:
            # "@alice set ..." with a real mention of the person who changed it.
            _, _, rest = doc.announcement.partition(" ")
            announcement = f"<@{user_id}> {rest}"
        try:
            await respond(
                text=document_fallback(doc, announcement),
                blocks=document_blocks(doc, announcement),
                response_type="ephemeral" if doc.ephemeral else "in_channel",
                replace_original=False,
            )
        except DELIVERY_ERRORS as error:
            log.warning("slack: could not answer a command (%s)", error.__class__.__name__)
