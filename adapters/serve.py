"""`routerbot serve`: the platforms the environment configures, on one engine.

An HTTP listener on `PORT` always runs: `/healthz`, `/readyz`, `/metrics`, and Slack's
`/slack/events` when `SLACK_SIGNING_SECRET` is set. Slack's Socket Mode connects when
`SLACK_APP_TOKEN` is set; Discord's gateway when `DISCORD_BOT_TOKEN` is set.

On SIGTERM (or Ctrl-C) the bot takes no new events, gives replies in flight
`ROUTERBOT_SHUTDOWN_GRACE_S` to finish, stops the rest (their threads are told), and
closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from typing import Any

from aiohttp import web

from bot.config import ConfigError, Settings
from bot.engine import Engine
from bot.openrouter import ErrorKind, OpenRouterError

from .discord import DiscordBot
from .slack import SlackBot

log = logging.getLogger(__name__)

RESTARTING = "the bot is restarting; ask again in a minute"
READY_TIMEOUT_S = 5.0
STOPPED_REPLIES_S = 10.0  # for stopped replies to say so in their threads


def check_slack(settings: Settings) -> bool:
    """Whether Slack is configured; a ConfigError line for each half-done setup."""
    bot_token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else ""
    app_token = settings.slack_app_token.get_secret_value() if settings.slack_app_token else ""
    wanted = settings.slack_signing_secret is not None or bool(app_token)
    if bot_token.startswith("xapp-"):
        raise ConfigError(
            "SLACK_BOT_TOKEN holds an app-level token (xapp-...): that one belongs in "
            "SLACK_APP_TOKEN; SLACK_BOT_TOKEN is the Bot User OAuth Token (xoxb-...)"
        )
    if app_token and not app_token.startswith("xapp-"):
        raise ConfigError(
            "SLACK_APP_TOKEN must be an app-level token (xapp-...), from Basic Information "
            "-> App-Level Tokens with connections:write"
            + (
                "; the xoxb- token belongs in SLACK_BOT_TOKEN"
                if app_token.startswith("xox")
                else ""
            )
        )
    if bot_token and not bot_token.startswith("xoxb-"):
        raise ConfigError(
            "SLACK_BOT_TOKEN must be the Bot User OAuth Token (xoxb-...), from OAuth & "
            "Permissions after installing the app"
        )
    if wanted and not bot_token:
        raise ConfigError(
            "SLACK_SIGNING_SECRET or SLACK_APP_TOKEN is set but SLACK_BOT_TOKEN is not: copy "
            "the Bot User OAuth Token (xoxb-...) from the app's OAuth & Permissions page"
        )
    if bot_token and not wanted:
        raise ConfigError(
            "SLACK_BOT_TOKEN is set but Slack cannot reach the bot: set SLACK_APP_TOKEN "
            "(Socket Mode) or SLACK_SIGNING_SECRET (events over HTTP on PORT)"
        )
    return bool(bot_token)


class Server:
    """The HTTP listener: health, readiness, metrics, and Slack's events."""

    def __init__(
        self,
        engine: Engine,
        slack: SlackBot | None = None,
        discord: DiscordBot | None = None,
    ) -> None:
        self.engine = engine
        self.slack = slack
        self.discord = discord
        self._runner: web.AppRunner | None = None
        self.url = ""

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._health)
        app.router.add_get("/readyz", self._ready)
        app.router.add_get("/metrics", self._metrics)
        if self.slack is not None and self.slack.settings.slack_signing_secret is not None:
            app.router.add_post("/slack/events", self.slack.handle_http)
        return app

    async def _health(self, request: web.Request) -> web.Response:
        """The process and its event loop answer."""
        return web.json_response({"ok": True})

    async def checks(self) -> dict[str, bool]:
        found = {"store": await self.engine.store.ping()}
        if self.slack is not None:
            found["slack"] = await self.slack.ready()
        if self.discord is not None:
            found["discord"] = self.discord.is_ready()
        try:
            await asyncio.wait_for(self.engine.client.catalogue.models(), READY_TIMEOUT_S)
            found["catalogue"] = True
        except (OpenRouterError, TimeoutError):
            found["catalogue"] = False  # neither reachable nor cached
        return found

    async def _ready(self, request: web.Request) -> web.Response:
        checks = await self.checks()
        ok = all(checks.values())
        return web.json_response({"ok": ok, "checks": checks}, status=200 if ok else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        response = web.Response(body=self.engine.metrics.render())
        response.headers["Content-Type"] = self.engine.metrics.content_type
        return response

    async def start(self, host: str, port: int) -> str:
        self._runner = web.AppRunner(self.application(), access_log=None, shutdown_timeout=5)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        bound = self._runner.addresses[0]
        self.url = f"http://{host if ':' not in host else f'[{host}]'}:{bound[1]}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def check_key(engine: Engine) -> None:
    """One call to /key: a revoked or mistyped key stops the start with one line."""
    try:
        await engine.client.credits()
    except OpenRouterError as error:
        if error.kind is ErrorKind.INVALID_KEY:
            raise ConfigError(
                "OPENROUTER_API_KEY was refused by OpenRouter (invalid or revoked): create a "
                "key at https://openrouter.ai/settings/keys"
            ) from None
        # Unreachable or busy is not a configuration error: start, and let /readyz say so.
        log.warning("could not check the OpenRouter key at start-up (%s)", error.kind.value)


async def shutdown(
    engine: Engine, bots: list[Any], grace_s: float, stopped_s: float = STOPPED_REPLIES_S
) -> None:
    """Takes no new events; lets replies finish within `grace_s`; stops the rest."""
    for bot in bots:
        await bot.stop_events()

    async def idle() -> None:
        await asyncio.gather(*(bot.idle() for bot in bots))

    started = time.monotonic()
    try:
        await asyncio.wait_for(idle(), grace_s)
        log.info("every reply finished in %.1f s", time.monotonic() - started)
    except TimeoutError:
        count = engine.cancel_all(RESTARTING)
        log.warning("stopped %d reply(s) still running after %.0f s", count, grace_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(idle(), stopped_s)
    for bot in bots:
        await bot.aclose(wait_s=0)


async def serve(engine: Engine, settings: Settings, host: str = "0.0.0.0") -> int:  # noqa: S104 - a server listens on every interface
    use_slack = check_slack(settings)
    use_discord = settings.discord_bot_token is not None
    if not use_slack and not use_discord:
        raise ConfigError(
            "nothing to serve: set SLACK_BOT_TOKEN with SLACK_APP_TOKEN (Socket Mode) or "
            "SLACK_SIGNING_SECRET (HTTP events), or DISCORD_BOT_TOKEN; see the README. To "
            "try the bot without a platform, run `routerbot chat`"
        )
    await check_key(engine)
    slack = SlackBot(engine, settings) if use_slack else None
    discord = DiscordBot(engine, settings) if use_discord else None
    bots: list[Any] = [bot for bot in (slack, discord) if bot is not None]
    server = Server(engine, slack, discord)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        if slack is not None:
            await slack.check_tokens()
        await server.start(host, settings.port)
        log.info("listening on port %d", settings.port)
        if slack is not None and settings.slack_app_token is not None:
            await slack.start_socket_mode()
            log.info("slack: connected over Socket Mode")
        if discord is not None:
            await discord.start()
            log.info("discord: connected")
        await stop.wait()
        log.info(
            "shutting down: no new events; replies in flight have %.0f s", settings.shutdown_grace_s
        )
        await shutdown(engine, bots, settings.shutdown_grace_s)
    finally:
        await server.stop()
        for bot in bots:
            await bot.aclose(wait_s=0)
    return 0
