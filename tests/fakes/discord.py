"""A fake Discord on 127.0.0.1: REST and a gateway websocket the real discord.py logs into.

Point discord.py at it by setting `discord.http.Route.BASE` to `fake.api_url`; `GET
/gateway/bot` there names the fake's gateway. The gateway says HELLO, answers IDENTIFY
with READY and a GUILD_CREATE for one guild (a text channel and a thread in it), and acks
heartbeats after a few milliseconds (an instant ACK confuses discord.py's latency
bookkeeping on loopback). REST keeps every message (the bot's posts and edits are
dispatched back to it, as Discord does), enforces the 2,000-character limit with error
50035, serves history, single messages, attachments, typing, the command sync, and
interaction callbacks and follow-ups. Answers are JSON with a Content-Type of exactly
`application/json`, and a 429 carries `Via`, without which discord.py suspects a
Cloudflare ban.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

TOKEN = "fake-discord-bot-token.0000"
APP_ID = "900000000000000001"
BOT_ID = "900000000000000002"
GUILD_ID = "900000000000000010"
CHANNEL_ID = "900000000000000020"
THREAD_ID = "900000000000000021"
DM_ID = "900000000000000030"
MESSAGE_CONTENT = 1 << 15
MANAGE_CHANNELS = 1 << 4
EVERYONE_PERMISSIONS = (
    (1 << 10) | (1 << 11) | (1 << 16) | (1 << 31)
)  # view, send, history, commands
ACK_DELAY_S = 0.005


@dataclass
class Call:
    method: str
    path: str
    body: Any
    at: float
    status: int = 200


@dataclass
class Interaction:
    id: str
    token: str
    sent_at: float = 0.0
    answered_at: float | None = None
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    followups: list[dict[str, Any]] = field(default_factory=list)
    original: dict[str, Any] | None = None


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


class FakeDiscord:
    def __init__(self, *, message_content_allowed: bool = True, channels: int = 0) -> None:
        """`channels`: that many extra text channels in the guild (CB0000, ...) for
        benchmarks, which mention the bot in each at once."""
        self.message_content_allowed = message_content_allowed
        # (time.monotonic(), content) after each write of the bot, by message id.
        self.timelines: dict[str, list[tuple[float, str]]] = {}
        self.typing: dict[str, float] = {}  # channel id -> first typing indicator
        self.sent_at: dict[str, float] = {}  # channel id -> when the benchmark's mention went out
        self.calls: list[Call] = []
        self.messages: dict[str, dict[str, Any]] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.interactions: dict[str, Interaction] = {}
        self.attachments: dict[str, bytes] = {}
        self.commands: list[dict[str, Any]] = []
        self.identify: dict[str, Any] | None = None
        self.edit_limit: tuple[int, float] | None = None  # (edits, seconds) per channel
        self._edits: dict[str, list[float]] = {}
        self._ids = itertools.count(1)
        self._seq = itertools.count(1)
        self._sockets: list[web.WebSocketResponse] = []
        self._ready = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.bot = self.add_user(BOT_ID, "routerbot", bot=True)
        self.channels: dict[str, dict[str, Any]] = {
            CHANNEL_ID: {
                "id": CHANNEL_ID,
                "type": 0,
                "guild_id": GUILD_ID,
                "name": "general",
                "position": 0,
                "permission_overwrites": [],
                "nsfw": False,
                "parent_id": None,
            },
            THREAD_ID: {
                "id": THREAD_ID,
                "type": 11,
                "guild_id": GUILD_ID,
                "name": "a thread",
                "parent_id": CHANNEL_ID,
                "owner_id": BOT_ID,
                "thread_metadata": {
                    "archived": False,
                    "auto_archive_duration": 1440,
                    "archive_timestamp": "2026-11-01T00:00:00+00:00",
                    "locked": False,
                },
                "message_count": 0,
                "member_count": 1,
            },
        }
        for i in range(channels):
            channel_id = str(910_000_000_000_000_000 + i)
            extra = {"id": channel_id, "name": f"bench-{i}", "position": i + 1}
            self.channels[channel_id] = {**self.channels[CHANNEL_ID], **extra}

    # -- people and things ------------------------------------------------------------

    def snowflake(self) -> str:
        return str(950_000_000_000_000_000 + next(self._ids))

    def add_user(self, user_id: str, name: str, *, bot: bool = False) -> dict[str, Any]:
        user = {
            "id": user_id,
            "username": name.lower(),
            "global_name": name,
            "discriminator": "0",
            "avatar": None,
            "bot": bot,
        }
        self.users[user_id] = user
        return user

    def add_attachment(
        self, name: str, content: bytes, content_type: str = "text/plain"
    ) -> dict[str, Any]:
        attachment_id = self.snowflake()
        self.attachments[attachment_id] = content
        url = f"{self.url}/attachments/{attachment_id}/{name}"
        return {
            "id": attachment_id,
            "filename": name,
            "size": len(content),
            "url": url,
            "proxy_url": url,
            "content_type": content_type,
        }

    def message(
        self,
        author_id: str,
        channel_id: str,
        content: str,
        *,
        mentions: list[str] | None = None,
        reply_to: str | None = None,
        attachments: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """A message, kept in the channel's history; returns its payload."""
        message_id = self.snowflake()
        channel = self.channels.get(channel_id, {})
        guild_id = channel.get("guild_id")
        data: dict[str, Any] = {
            "id": message_id,
            "channel_id": channel_id,
            "author": self.users[author_id],
            "content": content,
            "timestamp": "2026-11-22T10:00:00.000000+00:00",
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": "@everyone" in content,
            "mentions": [self.users[u] for u in mentions or []],
            "mention_roles": [],
            "attachments": list(attachments or []),
            "embeds": [],
            "pinned": False,
            "type": 19 if reply_to else 0,
            "flags": 0,
            "components": [],
        }
        if guild_id:
            data["guild_id"] = guild_id
            data["member"] = {"roles": [], "joined_at": "2026-01-01T00:00:00+00:00", "deaf": False,
                              "mute": False, "flags": 0}  # fmt: skip
        if reply_to:
            data["message_reference"] = {
                "message_id": reply_to,
                "channel_id": channel_id,
                **({"guild_id": guild_id} if guild_id else {}),
            }
            referenced = self.messages.get(reply_to)
            if referenced is not None:
                data["referenced_message"] = referenced
        self.messages[message_id] = data
        return data

    async def say(self, author_id: str, channel_id: str, content: str, **kwargs: Any) -> str:
        """A person posts a message; the bot gets MESSAGE_CREATE. Returns its id."""
        data = self.message(author_id, channel_id, content, **kwargs)
        await self.dispatch("MESSAGE_CREATE", data)
        return str(data["id"])

    def history(self, channel_id: str) -> list[dict[str, Any]]:
        """The channel's messages, oldest first."""
        return [m for m in self.messages.values() if m["channel_id"] == channel_id]

    def replies_by_bot(self, channel_id: str) -> list[dict[str, Any]]:
        return [m for m in self.history(channel_id) if m["author"]["id"] == BOT_ID]

    def count(self, method: str, path_part: str) -> int:
        return sum(1 for c in self.calls if c.method == method and path_part in c.path)

    # -- interactions -----------------------------------------------------------------

    async def interact(
        self,
        name: str,
        options: list[dict[str, Any]] | None = None,
        *,
        user_id: str,
        permissions: int = EVERYONE_PERMISSIONS,
        channel_id: str = CHANNEL_ID,
        kind: int = 2,
    ) -> Interaction:
        """A slash command (kind 2) or an autocomplete request (kind 4) from a member."""
        interaction = Interaction(self.snowflake(), f"token-{next(self._ids)}")
        self.interactions[interaction.id] = interaction
        payload = {
            "id": interaction.id,
            "application_id": APP_ID,
            "type": kind,
            "data": {"id": self.snowflake(), "name": name, "type": 1, "options": options or []},
            "guild_id": GUILD_ID,
            "channel_id": channel_id,
            "channel": self.channels[channel_id],
            "member": {
                "user": self.users[user_id],
                "roles": [],
                "permissions": str(permissions),
                "joined_at": "2026-01-01T00:00:00+00:00",
                "deaf": False,
                "mute": False,
                "flags": 0,
            },
            "token": interaction.token,
            "version": 1,
            "app_permissions": str(EVERYONE_PERMISSIONS),
            "locale": "en-US",
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": GUILD_ID},
            "context": 0,
            "attachment_size_limit": 10 * 1024 * 1024,
        }
        interaction.sent_at = time.monotonic()
        await self.dispatch("INTERACTION_CREATE", payload)
        return interaction

    # -- control (benchmarks) -----------------------------------------------------------

    def bench_channels(self) -> list[str]:
        return [c for c in self.channels if self.channels[c].get("name", "").startswith("bench-")]

    async def _control_mentions(self, request: web.Request) -> web.Response:
        """N people mention the bot at once, each in a channel of their own."""
        options = await request.json()
        count, prefix = int(options["n"]), str(options.get("prefix", "question"))
        offset = int(options.get("offset", 0))
        channels = self.bench_channels()[offset : offset + count]
        for i in range(count):
            self.add_user(str(800_000 + i), f"Person {i}")

        async def one(i: int, channel: str) -> str:
            self.sent_at[channel] = time.monotonic()
            return await self.say(
                str(800_000 + i), channel, f"<@{BOT_ID}> {prefix} {i}", mentions=[BOT_ID]
            )

        asked = await asyncio.gather(*(one(i, c) for i, c in enumerate(channels)))
        return web.json_response({"asked": dict(zip(channels, asked, strict=True))})

    async def _control_interactions(self, request: web.Request) -> web.Response:
        options = await request.json()
        count = int(options["n"])
        for i in range(count):
            self.add_user(str(800_000 + i), f"Person {i}")
        await asyncio.gather(
            *(self.interact("credits", user_id=str(800_000 + i)) for i in range(count))
        )
        return web.json_response({"ok": True})

    async def _control_records(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "messages": [
                    {
                        "id": m["id"],
                        "channel": m["channel_id"],
                        "reply_to": (m.get("message_reference") or {}).get("message_id"),
                        "timeline": self.timelines.get(m["id"], []),
                    }
                    for m in self.messages.values()
                    if m["author"]["id"] == BOT_ID
                ],
                "calls": [
                    {"method": c.method, "path": c.path, "at": c.at, "status": c.status}
                    for c in self.calls
                ],
                "typing": self.typing,
                "sent_at": self.sent_at,
                "interactions": [[i.sent_at, i.answered_at] for i in self.interactions.values()],
            }
        )

    # -- lifecycle --------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/v10"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application()
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/attachments/{id}/{name}", self._attachment)
        app.router.add_route("*", "/api/v10/{path:.*}", self._rest)
        app.router.add_post("/_fake/mentions", self._control_mentions)
        app.router.add_post("/_fake/interactions", self._control_interactions)
        app.router.add_get("/_fake/records", self._control_records)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        self.url = f"http://{host}:{self._runner.addresses[0][1]}"
        return self.url

    async def stop(self) -> None:
        for socket in list(self._sockets):
            await socket.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def connected(self) -> None:
        """Waits until a client has identified and received READY."""
        await asyncio.wait_for(self._ready.wait(), 10)

    # -- gateway ----------------------------------------------------------------------

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        await self.connected()
        frame = {"op": 0, "t": event, "s": next(self._seq), "d": data}
        for socket in list(self._sockets):
            await socket.send_str(json.dumps(frame))

    def _guild(self) -> dict[str, Any]:
        return {
            "id": GUILD_ID,
            "name": "Fake Guild",
            "icon": None,
            "owner_id": "1",
            "unavailable": False,
            "member_count": len(self.users),
            "large": False,
            "features": [],
            "roles": [
                {
                    "id": GUILD_ID,
                    "name": "@everyone",
                    "color": 0,
                    "hoist": False,
                    "position": 0,
                    "permissions": str(EVERYONE_PERMISSIONS),
                    "managed": False,
                    "mentionable": False,
                    "flags": 0,
                }
            ],
            "emojis": [],
            "stickers": [],
            "channels": [c for c in self.channels.values() if c["type"] != 11],
            "threads": [c for c in self.channels.values() if c["type"] == 11],
            "members": [],
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "joined_at": "2026-01-01T00:00:00+00:00",
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "premium_tier": 0,
            "preferred_locale": "en-US",
            "nsfw_level": 0,
        }

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse(autoping=True)
        await socket.prepare(request)
        await socket.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 41_250}}))
        try:
            async for frame in socket:
                if frame.type != aiohttp.WSMsgType.TEXT:
                    continue
                message = json.loads(frame.data)
                if message["op"] == 1:  # heartbeat
                    await asyncio.sleep(ACK_DELAY_S)
                    await socket.send_str(json.dumps({"op": 11}))
                elif message["op"] == 2:  # identify
                    self.identify = message["d"]
                    intents = int(message["d"].get("intents", 0))
                    if intents & MESSAGE_CONTENT and not self.message_content_allowed:
                        await socket.close(code=4014, message=b"Disallowed intent(s).")
                        break
                    self._sockets.append(socket)
                    await self._hello_guild(socket)
        finally:
            if socket in self._sockets:
                self._sockets.remove(socket)
            if not self._sockets:
                self._ready.clear()
        return socket

    async def _hello_guild(self, socket: web.WebSocketResponse) -> None:
        ready = {
            "v": 10,
            "user": {**self.bot, "verified": True, "mfa_enabled": False, "flags": 0},
            "guilds": [{"id": GUILD_ID, "unavailable": True}],
            "session_id": "fake-session",
            "resume_gateway_url": self.url.replace("http://", "ws://") + "/gateway",
            "application": {"id": APP_ID, "flags": 0},
            "private_channels": [],
            "relationships": [],
        }
        for event, data in (("READY", ready), ("GUILD_CREATE", self._guild())):
            frame = {"op": 0, "t": event, "s": next(self._seq), "d": data}
            await socket.send_str(json.dumps(frame))
        self._ready.set()

    # -- REST -------------------------------------------------------------------------

    async def _attachment(self, request: web.Request) -> web.Response:
        content = self.attachments.get(request.match_info["id"])
        if content is None:
            return web.Response(status=404)
        return web.Response(body=content, content_type="application/octet-stream")

    async def _rest(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["path"]
        body: Any = None
        if request.can_read_body:
            raw = await request.read()
            body = json.loads(raw) if raw and request.content_type == "application/json" else raw
        call = Call(request.method, path, body, time.monotonic())
        self.calls.append(call)
        if request.headers.get("Authorization") != f"Bot {TOKEN}" and not path.startswith(
            ("/webhooks/", "/interactions/")
        ):
            call.status = 401
            return _json({"message": "401: Unauthorized", "code": 0}, 401)
        parts = path.strip("/").split("/")
        response = await self._route(request.method, parts, body, request.query, call)
        call.status = response.status
        return response

    async def _route(
        self, method: str, parts: list[str], body: Any, query: Any, call: Call
    ) -> web.Response:
        match method, parts:
            case "GET", ["users", "@me"]:
                return _json(self.bot)
            case "GET", ["oauth2", "applications", "@me"]:
                return _json(self._application())
            case "GET", ["gateway", "bot"]:
                return _json(
                    {
                        "url": self.url.replace("http://", "ws://") + "/gateway",
                        "shards": 1,
                        "session_start_limit": {
                            "total": 1000,
                            "remaining": 999,
                            "reset_after": 0,
                            "max_concurrency": 1,
                        },
                    }
                )
            case "PUT", ["applications", _, "commands"] | [
                "applications",
                _,
                "guilds",
                _,
                "commands",
            ]:
                self.commands = [
                    {**c, "id": self.snowflake(), "application_id": APP_ID, "version": "1"}
                    for c in body
                ]
                return _json(self.commands)
            case "POST", ["channels", channel_id, "typing"]:
                self.typing.setdefault(channel_id, call.at)
                return web.Response(status=204)
            case "GET", ["channels", channel_id]:
                return _json(self.channels.get(channel_id, {}))
            case "GET", ["channels", channel_id, "messages"]:
                limit = int(query.get("limit", 50))
                before = query.get("before")
                found = [
                    m for m in reversed(self.history(channel_id))
                    if before is None or int(m["id"]) < int(before)
                ]  # fmt: skip
                return _json(found[:limit])
            case "GET", ["channels", channel_id, "messages", message_id]:
                found = self.messages.get(message_id)
                if found is None:
                    return _json({"message": "Unknown Message", "code": 10008}, 404)
                return _json(found)
            case "POST", ["channels", channel_id, "messages"]:
                return await self._create(channel_id, body)
            case "PATCH", ["channels", channel_id, "messages", message_id]:
                return await self._edit(channel_id, message_id, body)
            case "POST", ["interactions", interaction_id, _, "callback"]:
                return self._callback(interaction_id, body)
            case "POST", ["webhooks", _, token]:
                interaction = self._by_token(token)
                message = self._webhook_message(body)
                interaction.followups.append(message)
                return _json(message)
            case "PATCH", ["webhooks", _, token, "messages", "@original"]:
                interaction = self._by_token(token)
                interaction.original = self._webhook_message(body)
                return _json(interaction.original)
        return _json({"message": "404: Not Found", "code": 0}, 404)

    def _application(self) -> dict[str, Any]:
        return {
            "id": APP_ID,
            "name": "routerbot",
            "description": "",
            "icon": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "owner": {"id": "1", "username": "owner", "discriminator": "0", "avatar": None},
            "verify_key": "0" * 64,
            "flags": 0,
            "summary": "",
            "team": None,
        }

    def _too_long(self, body: dict[str, Any]) -> web.Response | None:
        if len(str(body.get("content") or "")) <= 2000:
            return None
        return _json(
            {
                "message": "Invalid Form Body",
                "code": 50035,
                "errors": {"content": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH"}]}},
            },
            400,
        )

    async def _create(self, channel_id: str, body: dict[str, Any]) -> web.Response:
        refused = self._too_long(body)
        if refused is not None:
            return refused
        reference = (body.get("message_reference") or {}).get("message_id")
        data = self.message(
            BOT_ID,
            channel_id,
            str(body.get("content") or ""),
            reply_to=str(reference) if reference is not None else None,
        )
        data["embeds"] = body.get("embeds") or []
        data["allowed_mentions"] = body.get("allowed_mentions")
        self.timelines[str(data["id"])] = [(time.monotonic(), str(data["content"]))]
        await self.dispatch("MESSAGE_CREATE", data)  # Discord tells the bot of its own posts
        return _json(data)

    async def _edit(self, channel_id: str, message_id: str, body: dict[str, Any]) -> web.Response:
        if self.edit_limit is not None:
            limit, window = self.edit_limit
            now = time.monotonic()
            recent = [t for t in self._edits.get(channel_id, []) if t > now - window]
            if len(recent) >= limit:
                wait = recent[0] + window - now
                return _json(
                    {
                        "message": "You are being rate limited.",
                        "retry_after": wait,
                        "global": False,
                    },
                    429,
                    {
                        "Retry-After": f"{wait:.3f}",
                        "X-RateLimit-Limit": str(limit),
                        "X-RateLimit-Remaining": "0",
                        "X-RateLimit-Reset-After": f"{wait:.3f}",
                        "X-RateLimit-Bucket": "edit-bucket",
                        "X-RateLimit-Scope": "user",
                        "Via": "1.1 google",
                    },
                )
            self._edits[channel_id] = [*recent, now]
        message = self.messages.get(message_id)
        if message is None:
            return _json({"message": "Unknown Message", "code": 10008}, 404)
        refused = self._too_long(body)
        if refused is not None:
            return refused
        if "content" in body:
            message["content"] = body["content"] or ""
        if "embeds" in body:
            message["embeds"] = body["embeds"] or []
        message["edited_timestamp"] = "2026-11-22T10:00:01.000000+00:00"
        message["allowed_mentions"] = body.get("allowed_mentions", message.get("allowed_mentions"))
        message["edits"] = int(message.get("edits", 0)) + 1
        self.timelines.setdefault(message_id, []).append((time.monotonic(), message["content"]))
        await self.dispatch("MESSAGE_UPDATE", message)
        return _json(message)

    def _by_token(self, token: str) -> Interaction:
        return next(i for i in self.interactions.values() if i.token == token)

    def _webhook_message(self, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": self.snowflake(),
            "channel_id": CHANNEL_ID,
            "author": self.bot,
            "content": body.get("content") or "",
            "embeds": body.get("embeds") or [],
            "flags": body.get("flags", 0),
            "timestamp": "2026-11-22T10:00:00.000000+00:00",
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "pinned": False,
            "type": 20,
            "components": [],
        }

    def _callback(self, interaction_id: str, body: dict[str, Any]) -> web.Response:
        interaction = self.interactions[interaction_id]
        interaction.callbacks.append(body)
        if interaction.answered_at is None:
            interaction.answered_at = time.monotonic()
        data = body.get("data") or {}
        answer: dict[str, Any] = {
            "interaction": {
                "id": interaction_id,
                "type": 2,
                "response_message_loading": body.get("type") == 5,
                "response_message_ephemeral": bool(int(data.get("flags") or 0) & 64),
            }
        }
        if body.get("type") == 4:
            message = self._webhook_message(data)
            interaction.original = message
            answer["resource"] = {"type": 4, "message": message}
        return _json(answer)


async def _serve(port: int, channels: int) -> None:
    fake = FakeDiscord(channels=channels)
    print(await fake.start(port=port), flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await fake.stop()


def main() -> None:
    """`python -m tests.fakes.discord --port 8083 --channels 200`: the fake on its own, for
    benchmarks; they drive it through its /_fake/ endpoints."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, default=8083)
    parser.add_argument("--channels", type=int, default=200, help="text channels to add")
    args = parser.parse_args()
    asyncio.run(_serve(args.port, args.channels))


if __name__ == "__main__":
    main()
