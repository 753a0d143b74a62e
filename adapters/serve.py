"""`routerbot serve`: the platforms the environment configures, on one engine.

An HTTP listener on `PORT` always runs (`/healthz`, and `/slack/events` when
`SLACK_SIGNING_SECRET` is set); Slack's Socket Mode connects when `SLACK_APP_TOKEN` is
set; Discord's gateway when `DISCORD_BOT_TOKEN` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from aiohttp import web

from bot.config import ConfigError, Settings
from bot.engine import Engine

from .discord import DiscordBot
from .slack import SlackBot

log = logging.getLogger(__name__)


def slack_configured(settings: Settings) -> bool:
    wanted = settings.slack_signing_secret or settings.slack_app_token
    if wanted and settings.slack_bot_token is None:
        raise ConfigError(
            "SLACK_SIGNING_SECRET or SLACK_APP_TOKEN is set but SLACK_BOT_TOKEN is not: copy "
            "the Bot User OAuth Token (xoxb-...) from the app's OAuth & Permissions page"
        )
    if settings.slack_bot_token is not None and not wanted:
        raise ConfigError(
            "SLACK_BOT_TOKEN is set but Slack cannot reach the bot: set SLACK_APP_TOKEN "
            "(Socket Mode) or SLACK_SIGNING_SECRET (events over HTTP on PORT)"
        )
    return settings.slack_bot_token is not None


class Server:
    """The HTTP listener."""

    def __init__(self, slack: SlackBot | None = None) -> None:
        self.slack = slack
        self._runner: web.AppRunner | None = None
        self.url = ""

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._health)
        if self.slack is not None and self.slack.settings.slack_signing_secret is not None:
            app.router.add_post("/slack/events", self.slack.handle_http)
        return app

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

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


async def serve(engine: Engine, settings: Settings, host: str = "0.0.0.0") -> int:  # noqa: S104 - a server listens on every interface
    use_slack = slack_configured(settings)
    use_discord = settings.discord_bot_token is not None
    if not use_slack and not use_discord:
        raise ConfigError(
            "nothing to serve: set SLACK_BOT_TOKEN with SLACK_APP_TOKEN (Socket Mode) or "
            "SLACK_SIGNING_SECRET (HTTP events), or DISCORD_BOT_TOKEN; see the README"
        )
    slack = SlackBot(engine, settings) if use_slack else None
    discord = DiscordBot(engine, settings) if use_discord else None
    server = Server(slack)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await server.start(host, settings.port)
        log.info("listening on port %d", settings.port)
        if slack is not None and settings.slack_app_token is not None:
            await slack.start_socket_mode()
            log.info("slack: connected over Socket Mode")
        if discord is not None:
            await discord.start()
            log.info("discord: connected")
        await stop.wait()
        log.info("shutting down")
    finally:
        await server.stop()
        if slack is not None:
            await slack.aclose()
        if discord is not None:
            await discord.aclose()
    return 0
