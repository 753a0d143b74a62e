"""A fake Slack Web API on 127.0.0.1 for the real `AsyncWebClient` (slack-sdk).

Point the client at it with `AsyncWebClient(token, base_url=fake.api_url)`. It keeps the
messages the bot writes (posted, updated, streamed), records every call with a monotonic
timestamp, answers `users.info` and paged `conversations.replies`, serves files at
`url_private` to the bot token, and can enforce Slack's documented rate tiers, answering
HTTP 429 `ratelimited` with `Retry-After` as Slack does.

It also plays Slack's side of event delivery: `say()` posts a person's message and
delivers the events Slack would (`message`, plus `app_mention` when the bot is mentioned)
either as signed HTTP requests to the bot's `/slack/events` (`events_url`) or as Socket
Mode envelopes over the websocket that `apps.connections.open` hands out. `command()`
sends a signed slash command. The bot's own posts and edits come back to it as events,
as they do from Slack.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

BOT_TOKEN = "xoxb-fake-0000-token"
TEAM_ID = "T0FAKE"
BOT_USER_ID = "U0BOT"
BOT_ID = "B0BOT"
APP_ID = "A0APP"
APP_TOKEN = "xapp-1-fake-app-token"
SIGNING_SECRET = "fake-signing-secret-0123456789"


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    at: float
    status: int = 200
    error: str | None = None


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    user: str | None = None
    bot_id: str | None = None
    thread_ts: str | None = None
    streaming: bool = False
    edits: int = 0
    blocks: list[dict[str, Any]] = field(default_factory=list)
    tasks: dict[str, tuple[str, str]] = field(default_factory=dict)  # task id -> (title, status)
    files: list[dict[str, Any]] = field(default_factory=list)
    deleted: bool = False
    # (time.monotonic(), text) after each write of the bot: what people saw, and when.
    timeline: list[tuple[float, str]] = field(default_factory=list)

    def seen(self) -> None:
        self.timeline.append((time.monotonic(), self.text))

    def footer(self) -> list[str]:
        """The texts of the message's context block."""
        return [
            element.get("text", "")
            for block in self.blocks
            if block.get("type") == "context"
            for element in block.get("elements", [])
        ]


@dataclass
class Tier:
    """At most `limit` calls in any `window_s` seconds, per team or per channel."""

    limit: int
    window_s: float
    per: str = "team"
    seen: dict[str, deque[float]] = field(default_factory=dict)

    def retry_after(self, key: str, now: float) -> float | None:
        times = self.seen.setdefault(key, deque())
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if len(times) >= self.limit:
            return times[0] + self.window_s - now
        times.append(now)
        return None


def documented_tiers() -> dict[str, Tier]:
    """Slack's published limits for the methods a streaming bot calls most."""
    return {
        "chat.update": Tier(50, 60.0),
        "chat.postMessage": Tier(1, 1.0, per="channel"),
        "chat.startStream": Tier(20, 60.0),
        "chat.appendStream": Tier(100, 60.0),
    }


class FakeSlack:
    def __init__(self, *, max_text: int = 40_000, streaming: bool = True) -> None:
        self.max_text = max_text
        self.streaming = streaming  # False: chat.startStream is refused, as in older workspaces
        self.events_url: str | None = None  # where events go over HTTP (the bot's endpoint)
        self.echo = True  # deliver the bot's own posts and edits back to it, as Slack does
        self.deliveries: list[tuple[dict[str, Any], int]] = []  # (envelope, HTTP status)
        # (event type, sent, answered), time.monotonic(): how fast the bot acknowledges.
        self.acks: list[tuple[str, float, float]] = []
        self.sent_at: dict[str, float] = {}  # channel -> when a benchmark's mention went out
        self.files: dict[str, tuple[dict[str, Any], bytes]] = {}
        self.downloads: list[str] = []
        self._sockets: list[web.WebSocketResponse] = []
        self._acks: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._socket_ready = asyncio.Event()
        self._background: set[asyncio.Task[Any]] = set()
        self._event_ids = itertools.count(1)
        self._session: aiohttp.ClientSession | None = None
        self.calls: list[Call] = []
        self.messages: dict[tuple[str, str], Message] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.tiers: dict[str, Tier] = {}
        self.responses: list[tuple[str, dict[str, Any]]] = []  # response_url posts
        self._clock = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.url = ""

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    def add_user(
        self, user_id: str, name: str, *, admin: bool = False, owner: bool = False
    ) -> None:
        self.users[user_id] = {
            "id": user_id,
            "team_id": TEAM_ID,
            "name": name.lower(),
            "real_name": name,
            "is_admin": admin,
            "is_owner": owner,
            "is_bot": False,
            "profile": {"display_name": name, "real_name": name},
        }

    def add_message(
        self,
        channel: str,
        text: str,
        user: str,
        thread_ts: str | None = None,
        files: list[dict[str, Any]] | None = None,
    ) -> str:
        """A message from a person, as if it had been posted earlier; returns its ts."""
        ts = self._ts()
        self.messages[(channel, ts)] = Message(
            channel, ts, text, user=user, thread_ts=thread_ts, files=list(files or [])
        )
        return ts

    def add_file(self, name: str, content: bytes, mimetype: str = "text/plain") -> dict[str, Any]:
        """A file someone uploaded, as Slack describes it in a message's `files`."""
        file_id = f"F{len(self.files) + 1:04d}"
        url = f"{self.url}/files/{file_id}/{name}"
        info = {
            "id": file_id,
            "name": name,
            "title": name,
            "mimetype": mimetype,
            "filetype": name.rsplit(".", 1)[-1],
            "size": len(content),
            "url_private": url,
            "url_private_download": url + "?download=1",
        }
        self.files[file_id] = (info, content)
        return info

    def replies_to(self, channel: str, thread_ts: str) -> list[Message]:
        """The bot's messages in a thread, oldest first."""
        return [m for m in self.thread(channel, thread_ts) if m.bot_id == BOT_ID and not m.deleted]

    def thread(self, channel: str, thread_ts: str) -> list[Message]:
        return [
            m
            for m in sorted(self.messages.values(), key=lambda m: float(m.ts))
            if m.channel == channel and (m.ts == thread_ts or m.thread_ts == thread_ts)
        ]

    def count(self, method: str) -> int:
        return sum(1 for c in self.calls if c.method == method)

    # -- lifecycle ------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/response/{id}", self._response_url)
        app.router.add_get("/files/{id}/{name}", self._file)
        app.router.add_get("/socket", self._socket)
        # Control for benchmarks, which run this fake in a process of its own.
        app.router.add_post("/_fake/setup", self._control_setup)
        app.router.add_post("/_fake/mentions", self._control_mentions)
        app.router.add_post("/_fake/commands", self._control_commands)
        app.router.add_get("/_fake/records", self._control_records)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        self.url = f"http://{host}:{self._runner.addresses[0][1]}"
        return self.url

    async def stop(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        for socket in list(self._sockets):
            await socket.close()
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeSlack:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- delivering events to the bot ------------------------------------------------

    @staticmethod
    def signature_headers(
        body: str, *, secret: str = SIGNING_SECRET, timestamp: int | None = None
    ) -> dict[str, str]:
        """Slack's request signature: v0=HMAC-SHA256(secret, "v0:{ts}:{body}")."""
        ts = str(int(time.time()) if timestamp is None else timestamp)
        digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256)
        return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": "v0=" + digest.hexdigest()}

    def envelope(self, event: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
        return {
            "token": "legacy-verification-token",
            "team_id": TEAM_ID,
            "api_app_id": APP_ID,
            "event": event,
            "type": "event_callback",
            "event_id": event_id or f"Ev{next(self._event_ids):08d}",
            "event_time": int(time.time()),
            "authorizations": [
                {"team_id": TEAM_ID, "user_id": BOT_USER_ID, "is_bot": True, "enterprise_id": None}
            ],
            "is_ext_shared_channel": False,
        }

    async def deliver(
        self,
        envelope: dict[str, Any],
        *,
        retry_num: int | None = None,
        secret: str = SIGNING_SECRET,
    ) -> int:
        """Sends one event envelope the way the bot is connected; returns the HTTP status
        (200 for a Socket Mode envelope the bot acknowledged)."""
        if self.events_url is None:
            await self._send_envelope("events_api", envelope)
            self.deliveries.append((envelope, 200))
            return 200
        body = json.dumps(envelope)
        headers = {
            "Content-Type": "application/json",
            **self.signature_headers(body, secret=secret),
        }
        if retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = "http_timeout"
        sent = time.monotonic()
        async with self.http().post(self.events_url, data=body, headers=headers) as response:
            await response.read()
            self.acks.append((str(envelope["event"].get("type")), sent, time.monotonic()))
            self.deliveries.append((envelope, response.status))
            return response.status

    async def say(
        self,
        user: str,
        channel: str,
        text: str,
        *,
        thread_ts: str | None = None,
        files: list[dict[str, Any]] | None = None,
        channel_type: str = "channel",
    ) -> str:
        """A person posts a message; the bot gets the events Slack would send. Returns ts."""
        ts = self.add_message(channel, text, user, thread_ts=thread_ts, files=files)
        event: dict[str, Any] = {
            "type": "message",
            "channel": channel,
            "user": user,
            "text": text,
            "ts": ts,
            "team": TEAM_ID,
            "channel_type": channel_type,
            "event_ts": ts,
        }
        if thread_ts:
            event["thread_ts"] = thread_ts
        if files:
            event["files"] = files
            event["subtype"] = "file_share"
        if f"<@{BOT_USER_ID}>" in text and channel_type != "im":
            mention = {k: v for k, v in event.items() if k not in ("channel_type", "subtype")}
            await self.deliver(self.envelope({**mention, "type": "app_mention"}))
        await self.deliver(self.envelope(event))
        return ts

    async def command(
        self,
        command: str,
        text: str,
        *,
        user: str,
        channel: str = "C1",
        secret: str = SIGNING_SECRET,
    ) -> tuple[int, str]:
        """A signed slash command; returns the HTTP status and body (the bot's ack)."""
        number = len(self.responses) + next(self._event_ids)
        form = {
            "token": "legacy-verification-token",
            "team_id": TEAM_ID,
            "team_domain": "fake",
            "channel_id": channel,
            "channel_name": "general",
            "user_id": user,
            "user_name": user.lower(),
            "command": command,
            "text": text,
            "api_app_id": APP_ID,
            "response_url": f"{self.url}/response/{number}",
            "trigger_id": f"trigger.{number}",
        }
        body = urlencode(form)
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            **self.signature_headers(body, secret=secret),
        }
        assert self.events_url is not None, "slash commands go to the bot's HTTP endpoint"
        sent = time.monotonic()
        async with self.http().post(self.events_url, data=body, headers=headers) as response:
            answer = response.status, await response.text()
            self.acks.append((command, sent, time.monotonic()))
            return answer

    def http(self) -> aiohttp.ClientSession:
        if self._session is None:
            # No pool limit: a benchmark's burst of events must not queue in the fake.
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        return self._session

    def _echo(self, event: dict[str, Any]) -> None:
        """The bot's own activity, delivered back to it in the background."""
        if not self.echo or (self.events_url is None and not self._sockets):
            return
        task = asyncio.create_task(self.deliver(self.envelope(event)))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def settled(self) -> None:
        """Waits until every echo of the bot's own activity has been delivered."""
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    # -- Socket Mode ------------------------------------------------------------------

    async def wait_for_socket(self) -> None:
        await asyncio.wait_for(self._socket_ready.wait(), 10)

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse(autoping=True)
        await socket.prepare(request)
        self._sockets.append(socket)
        await socket.send_json(
            {"type": "hello", "num_connections": 1, "connection_info": {"app_id": APP_ID}}
        )
        self._socket_ready.set()
        try:
            async for message in socket:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                ack = json.loads(message.data)
                future = self._acks.pop(str(ack.get("envelope_id")), None)
                if future is not None and not future.done():
                    future.set_result(ack)
        finally:
            self._sockets.remove(socket)
            if not self._sockets:
                self._socket_ready.clear()
        return socket

    async def _send_envelope(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Sends a Socket Mode envelope and waits for the bot's acknowledgement."""
        await self.wait_for_socket()
        envelope_id = str(uuid.uuid4())
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._acks[envelope_id] = future
        await self._sockets[-1].send_json(
            {
                "envelope_id": envelope_id,
                "type": kind,
                "payload": payload,
                "accepts_response_payload": kind != "events_api",
                "retry_attempt": 0,
                "retry_reason": "",
            }
        )
        return await asyncio.wait_for(future, timeout=5)

    # -- control (benchmarks) -----------------------------------------------------------

    async def _control_setup(self, request: web.Request) -> web.Response:
        options = await request.json()
        self.events_url = options.get("events_url", self.events_url)
        self.echo = bool(options.get("echo", self.echo))
        return web.json_response({"ok": True})

    async def _control_mentions(self, request: web.Request) -> web.Response:
        """N people mention the bot at once, each in a channel of their own."""
        options = await request.json()
        count, prefix = int(options["n"]), str(options.get("prefix", "question"))
        tag = str(options.get("channels", "CB"))  # channel and user ids: CB0000, UB0000, ...
        for i in range(count):
            self.add_user(f"U{tag[1:]}{i:04d}", f"Person {i}")

        async def one(i: int) -> str:
            channel = f"{tag}{i:04d}"
            self.sent_at[channel] = time.monotonic()
            return await self.say(f"U{tag[1:]}{i:04d}", channel, f"<@{BOT_USER_ID}> {prefix} {i}")

        threads = await asyncio.gather(*(one(i) for i in range(count)))
        return web.json_response({"threads": threads})

    async def _control_commands(self, request: web.Request) -> web.Response:
        options = await request.json()
        count = int(options["n"])
        for i in range(count):
            self.add_user(f"UB{i:04d}", f"Person {i}")
        await asyncio.gather(
            *(self.command("/credits", "", user=f"UB{i:04d}", channel=f"CB{i:04d}")
              for i in range(count))
        )  # fmt: skip
        return web.json_response({"ok": True})

    async def _control_records(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "messages": [
                    {
                        "channel": m.channel,
                        "ts": m.ts,
                        "thread_ts": m.thread_ts,
                        "bot": m.bot_id == BOT_ID,
                        "deleted": m.deleted,
                        "streaming": m.streaming,
                        "timeline": m.timeline,
                    }
                    for m in self.messages.values()
                    if m.bot_id == BOT_ID
                ],
                "calls": [
                    {
                        "method": c.method,
                        "at": c.at,
                        "status": c.status,
                        "error": c.error,
                        "channel": str(c.params.get("channel") or c.params.get("channel_id") or ""),
                    }
                    for c in self.calls
                ],
                "acks": self.acks,
                "sent_at": self.sent_at,
                "responses": len(self.responses),
            }
        )

    # -- files --------------------------------------------------------------------------

    async def _file(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {BOT_TOKEN}":
            return web.Response(status=403, text="login required")
        found = self.files.get(request.match_info["id"])
        if found is None:
            return web.Response(status=404)
        info, content = found
        self.downloads.append(info["id"])
        return web.Response(body=content, content_type=info["mimetype"])

    # -- protocol -------------------------------------------------------------------

    def _ts(self) -> str:
        return f"{1_700_000_000 + next(self._clock)}.000100"

    @staticmethod
    async def _params(request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            if request.content_type == "application/json":
                body = await request.json()
                if isinstance(body, dict):
                    params.update(body)
            else:
                params.update(dict(await request.post()))
        for key in ("blocks", "chunks"):
            if isinstance(params.get(key), str):
                params[key] = json.loads(params[key])
        return params

    async def _response_url(self, request: web.Request) -> web.Response:
        self.responses.append((request.match_info["id"], await request.json()))
        return web.Response(text="ok")

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await self._params(request)
        call = Call(method, params, time.monotonic())
        self.calls.append(call)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        token = token or str(params.get("token", ""))
        if token != (APP_TOKEN if method == "apps.connections.open" else BOT_TOKEN):
            return self._fail(call, "invalid_auth")
        tier = self.tiers.get(method)
        if tier is not None:
            key = str(params.get("channel", "")) if tier.per == "channel" else TEAM_ID
            wait = tier.retry_after(key, time.monotonic())
            if wait is not None:
                call.status = 429
                call.error = "ratelimited"
                return web.json_response(
                    {"ok": False, "error": "ratelimited"},
                    status=429,
                    headers={"Retry-After": str(max(1, round(wait)))},
                )
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is None:
            return self._fail(call, "unknown_method")
        result = handler(params)
        if isinstance(result, str):
            return self._fail(call, result)
        return web.json_response({"ok": True, **result})

    @staticmethod
    def _fail(call: Call, error: str) -> web.Response:
        call.error = error
        return web.json_response({"ok": False, "error": error})

    def _text_of(self, params: dict[str, Any]) -> str:
        text = params.get("markdown_text") or params.get("text") or ""
        for chunk in params.get("chunks") or []:
            if isinstance(chunk, dict) and chunk.get("type") == "markdown_text":
                text += str(chunk.get("text", ""))
        return str(text)

    def _m_auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": "https://fake.slack.test/",
            "team": "Fake Team",
            "user": "routerbot",
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
        }

    def _m_chat_postMessage(self, params: dict[str, Any]) -> dict[str, Any] | str:
        text = self._text_of(params)
        if len(text) > self.max_text:
            return "msg_too_long"
        channel = str(params["channel"])
        ts = self._ts()
        thread = params.get("thread_ts")
        blocks = list(params.get("blocks") or [])
        message = Message(channel, ts, text, bot_id=BOT_ID, thread_ts=thread, blocks=blocks)
        self.messages[(channel, ts)] = message
        message.seen()
        self._echo(self._bot_event(message))
        return {"channel": channel, "ts": ts, "message": {"text": text, "ts": ts}}

    def _m_chat_update(self, params: dict[str, Any]) -> dict[str, Any] | str:
        message = self.messages.get((str(params.get("channel")), str(params.get("ts"))))
        if message is None:
            return "message_not_found"
        text = self._text_of(params)
        if len(text) > self.max_text:
            return "msg_too_long"
        message.text = text
        message.blocks = list(params.get("blocks") or message.blocks)
        message.edits += 1
        message.seen()
        self._echo(
            {
                "type": "message",
                "subtype": "message_changed",
                "channel": message.channel,
                "hidden": True,
                "message": self._bot_event(message),
                "ts": self._ts(),
            }
        )
        return {"channel": message.channel, "ts": message.ts, "text": text}

    def _m_chat_startStream(self, params: dict[str, Any]) -> dict[str, Any] | str:
        if not self.streaming:
            return "feature_not_enabled"
        channel = str(params["channel"])
        if not params.get("thread_ts"):
            return "invalid_arguments"
        if not channel.startswith("D") and not (
            params.get("recipient_user_id") and params.get("recipient_team_id")
        ):
            return "invalid_arguments"  # streams in channels name their recipient
        ts = self._ts()
        message = Message(
            channel, ts, self._text_of(params), bot_id=BOT_ID,
            thread_ts=str(params["thread_ts"]), streaming=True,
        )  # fmt: skip
        self.messages[(channel, ts)] = message
        message.seen()
        return {"channel": channel, "ts": ts}

    def _streaming(self, params: dict[str, Any]) -> Message | str:
        message = self.messages.get((str(params.get("channel")), str(params.get("ts"))))
        if message is None:
            return "message_not_found"
        if not message.streaming:
            return "message_not_in_streaming_state"
        return message

    def _m_chat_appendStream(self, params: dict[str, Any]) -> dict[str, Any] | str:
        message = self._streaming(params)
        if isinstance(message, str):
            return message
        addition = self._text_of(params)
        if len(addition) > 12_000:
            return "msg_too_long"
        message.text += addition
        self._tasks_of(message, params)
        message.edits += 1
        message.seen()
        return {"channel": message.channel, "ts": message.ts}

    def _m_chat_stopStream(self, params: dict[str, Any]) -> dict[str, Any] | str:
        message = self._streaming(params)
        if isinstance(message, str):
            return message
        message.text += self._text_of(params)
        self._tasks_of(message, params)
        message.blocks = list(params.get("blocks") or [])
        message.streaming = False
        message.seen()
        self._echo(self._bot_event(message))
        return {"channel": message.channel, "ts": message.ts}

    @staticmethod
    def _tasks_of(message: Message, params: dict[str, Any]) -> None:
        for chunk in params.get("chunks") or []:
            if isinstance(chunk, dict) and chunk.get("type") == "task_update":
                message.tasks[str(chunk["id"])] = (str(chunk["title"]), str(chunk["status"]))

    @staticmethod
    def _bot_event(message: Message) -> dict[str, Any]:
        event = {
            "type": "message",
            "channel": message.channel,
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "text": message.text,
            "ts": message.ts,
            "team": TEAM_ID,
            "channel_type": "im" if message.channel.startswith("D") else "channel",
        }
        if message.thread_ts:
            event["thread_ts"] = message.thread_ts
        return event

    def _m_apps_connections_open(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"url": self.url.replace("http://", "ws://") + "/socket"}

    def _m_chat_delete(self, params: dict[str, Any]) -> dict[str, Any] | str:
        message = self.messages.get((str(params.get("channel")), str(params.get("ts"))))
        if message is None or message.deleted:
            return "message_not_found"
        message.deleted = True
        message.timeline.append((time.monotonic(), ""))
        return {"channel": message.channel, "ts": message.ts}

    def _m_chat_postEphemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"message_ts": self._ts()}

    def _m_assistant_threads_setStatus(self, params: dict[str, Any]) -> dict[str, Any] | str:
        # Slack shows a status only in threads of its AI app surface; DMs stand for those.
        if not str(params.get("channel_id", "")).startswith("D"):
            return "invalid_thread"
        return {}

    def _m_users_info(self, params: dict[str, Any]) -> dict[str, Any] | str:
        user = self.users.get(str(params.get("user")))
        return {"user": user} if user else "user_not_found"

    def _m_conversations_replies(self, params: dict[str, Any]) -> dict[str, Any] | str:
        thread = self.thread(str(params.get("channel")), str(params.get("ts")))
        if not thread:
            return "thread_not_found"
        limit = int(params.get("limit") or 100)
        start = int(params.get("cursor") or 0)
        page = thread[start : start + limit]
        more = start + limit < len(thread)
        return {
            "messages": [
                {
                    key: value
                    for key, value in (
                        ("type", "message"),
                        ("ts", m.ts),
                        ("text", m.text),
                        ("user", m.user),
                        ("bot_id", m.bot_id),
                        ("thread_ts", m.thread_ts or m.ts),
                        ("files", m.files or None),
                    )
                    if value is not None
                }
                for m in page
            ],
            "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }


async def _serve(port: int, tiers: bool, streaming: bool) -> None:
    fake = FakeSlack(streaming=streaming)
    if tiers:
        fake.tiers = documented_tiers()
    print(await fake.start(port=port), flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await fake.stop()


def main() -> None:
    """`python -m tests.fakes.slack --port 8082 [--tiers] [--no-streaming]`: the fake on its
    own, for benchmarks; they drive it through its /_fake/ endpoints."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, default=8082)
    parser.add_argument("--tiers", action="store_true", help="enforce Slack's documented tiers")
    parser.add_argument("--no-streaming", action="store_true", help="refuse chat.startStream")
    args = parser.parse_args()
    asyncio.run(_serve(args.port, args.tiers, not args.no_streaming))


if __name__ == "__main__":
    main()
