"""A fake Slack Web API on 127.0.0.1 for the real `AsyncWebClient` (slack-sdk).

Point the client at it with `AsyncWebClient(token, base_url=fake.api_url)`. It keeps the
messages the bot writes (posted, updated, streamed), records every call with a monotonic
timestamp, answers `users.info` and paged `conversations.replies`, and can enforce Slack's
documented rate tiers, answering HTTP 429 `ratelimited` with `Retry-After` as Slack does.
Event delivery to the bot (signed HTTP requests, Socket Mode) comes with the Slack adapter.
"""

from __future__ import annotations

import itertools
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

BOT_TOKEN = "xoxb-fake-0000-token"
TEAM_ID = "T0FAKE"
BOT_USER_ID = "U0BOT"
BOT_ID = "B0BOT"


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
    def __init__(self, *, max_text: int = 40_000) -> None:
        self.max_text = max_text
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

    def add_message(self, channel: str, text: str, user: str, thread_ts: str | None = None) -> str:
        """A message from a person, as if it had been posted earlier; returns its ts."""
        ts = self._ts()
        self.messages[(channel, ts)] = Message(channel, ts, text, user=user, thread_ts=thread_ts)
        return ts

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
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        self.url = f"http://{host}:{self._runner.addresses[0][1]}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeSlack:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

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
        if token != BOT_TOKEN:
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
        message = Message(channel, ts, text, bot_id=BOT_ID, thread_ts=thread)
        self.messages[(channel, ts)] = message
        return {"channel": channel, "ts": ts, "message": {"text": text, "ts": ts}}

    def _m_chat_update(self, params: dict[str, Any]) -> dict[str, Any] | str:
        message = self.messages.get((str(params.get("channel")), str(params.get("ts"))))
        if message is None:
            return "message_not_found"
        text = self._text_of(params)
        if len(text) > self.max_text:
            return "msg_too_long"
        message.text = text
        message.edits += 1
        return {"channel": message.channel, "ts": message.ts, "text": text}

    def _m_chat_startStream(self, params: dict[str, Any]) -> dict[str, Any] | str:
        channel = str(params["channel"])
        if not params.get("thread_ts"):
            return "invalid_arguments"
        ts = self._ts()
        self.messages[(channel, ts)] = Message(
            channel, ts, self._text_of(params), bot_id=BOT_ID,
            thread_ts=str(params["thread_ts"]), streaming=True,
        )  # fmt: skip
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
        message.edits += 1
        return {"channel": message.channel, "ts": message.ts}

    def _m_chat_stopStream(self, params: dict[str, Any]) -> dict[str, Any] | str:
        message = self._streaming(params)
        if isinstance(message, str):
            return message
        message.text += self._text_of(params)
        message.streaming = False
        return {"channel": message.channel, "ts": message.ts}

    def _m_chat_postEphemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"message_ts": self._ts()}

    def _m_assistant_threads_setStatus(self, params: dict[str, Any]) -> dict[str, Any]:
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
                    )
                    if value is not None
                }
                for m in page
            ],
            "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }
