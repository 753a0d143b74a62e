"""`routerbot serve` as a real process: configuration errors, /healthz, a Slack mention
answered through the HTTP endpoint, and a clean stop on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket

import aiohttp

from tests.fakes.discord import BOT_ID as DISCORD_BOT
from tests.fakes.discord import CHANNEL_ID, FakeDiscord
from tests.fakes.discord import TOKEN as DISCORD_TOKEN
from tests.fakes.openrouter import TEST_KEY, FakeOpenRouter, Reply
from tests.fakes.slack import BOT_TOKEN, BOT_USER_ID, SIGNING_SECRET, FakeSlack
from tests.test_cli import ROUTERBOT, routerbot
from tests.waiting import eventually


async def wait_until_healthy(base: str) -> None:
    """Waits (at most 20 s) for a starting `routerbot serve` to answer /healthz."""
    async with aiohttp.ClientSession() as session:
        for _ in range(400):
            try:
                async with session.get(f"{base}/healthz") as response:
                    if response.status == 200 and (await response.json())["ok"] is True:
                        return
            except aiohttp.ClientError:
                pass  # not listening yet
            await asyncio.sleep(0.05)
    raise AssertionError("routerbot serve never answered /healthz")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_serve_without_a_platform_says_what_to_set() -> None:
    run = await routerbot("serve")
    assert run.code == 2
    assert run.err.strip().startswith("routerbot: nothing to serve: set SLACK_BOT_TOKEN")
    assert "DISCORD_BOT_TOKEN" in run.err


async def test_serve_with_half_a_slack_setup_says_what_is_missing() -> None:
    env = dict(os.environ, OPENROUTER_API_KEY=TEST_KEY, SLACK_BOT_TOKEN=BOT_TOKEN)
    process = await asyncio.create_subprocess_exec(
        ROUTERBOT, "serve", env=env, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 2
    message = err.decode().strip()
    assert message == (
        "routerbot: SLACK_BOT_TOKEN is set but Slack cannot reach the bot: set "
        "SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET (events over HTTP on PORT)"
    )
    assert BOT_TOKEN not in message


async def test_serve_answers_slack_over_http_and_stops_on_sigterm(
    fake: FakeOpenRouter, tmp_path: object
) -> None:
    port = free_port()
    env = dict(
        os.environ,
        OPENROUTER_API_KEY=TEST_KEY,
        OPENROUTER_BASE_URL=fake.url,
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        PORT=str(port),
        ROUTERBOT_DATA_DIR=str(tmp_path),
    )
    async with FakeSlack() as slack:
        slack.add_user("U1", "Alice")
        env["SLACK_API_BASE_URL"] = slack.api_url
        process = await asyncio.create_subprocess_exec(
            ROUTERBOT, "serve", env=env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"
            await wait_until_healthy(base)
            slack.events_url = f"{base}/slack/events"
            fake.script("openai/gpt-4o-mini", Reply(text="Served."))
            ts = await slack.say("U1", "C1", f"<@{BOT_USER_ID}> are you up?")
            await eventually(
                lambda: any(
                    m.text == "Served." and not m.streaming for m in slack.replies_to("C1", ts)
                ),
                "the served reply",
            )
        finally:
            process.send_signal(signal.SIGTERM)
            out, err = await asyncio.wait_for(process.communicate(), timeout=30)
        assert process.returncode == 0, err.decode()
        assert "Traceback" not in err.decode()
        assert BOT_TOKEN not in out.decode() + err.decode()


async def test_serve_answers_discord_and_stops_on_sigterm(
    fake: FakeOpenRouter, tmp_path: object
) -> None:
    env = dict(
        os.environ,
        OPENROUTER_API_KEY=TEST_KEY,
        OPENROUTER_BASE_URL=fake.url,
        DISCORD_BOT_TOKEN=DISCORD_TOKEN,
        PORT=str(free_port()),
        ROUTERBOT_DATA_DIR=str(tmp_path),
    )
    async with FakeDiscord() as discord_fake:
        discord_fake.add_user("100", "Alice")
        env["DISCORD_API_BASE_URL"] = discord_fake.api_url
        process = await asyncio.create_subprocess_exec(
            ROUTERBOT, "serve", env=env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            await discord_fake.connected()
            # Without Slack, the HTTP listener still answers health, readiness and metrics.
            base = f"http://127.0.0.1:{env['PORT']}"
            ready: dict[str, object] = {}
            async with aiohttp.ClientSession() as session:
                for _ in range(200):  # at most 10 s for discord.py to call itself ready
                    async with session.get(base + "/readyz") as response:
                        ready = await response.json()
                    if ready.get("ok"):
                        break
                    await asyncio.sleep(0.05)
                async with session.get(base + "/metrics") as response:
                    assert response.status == 200
            assert ready == {"ok": True, "checks": {"store": True, "discord": True,
                                                    "catalogue": True}}  # fmt: skip
            fake.script("openai/gpt-4o-mini", Reply(text="Served on Discord."))
            asked = await discord_fake.say(
                "100", CHANNEL_ID, f"<@{DISCORD_BOT}> up?", mentions=[DISCORD_BOT]
            )

            def answered() -> bool:
                return any(
                    m["content"].startswith("Served on Discord.\n-# ")
                    and m.get("message_reference", {}).get("message_id") == asked
                    for m in discord_fake.replies_by_bot(CHANNEL_ID)
                )

            await eventually(answered, "the served reply")
        finally:
            process.send_signal(signal.SIGTERM)
            out, err = await asyncio.wait_for(process.communicate(), timeout=30)
        assert process.returncode == 0, err.decode()
        assert "Traceback" not in err.decode()
        assert DISCORD_TOKEN not in out.decode() + err.decode()


async def test_serve_says_when_discord_cannot_be_reached(
    fake: FakeOpenRouter, tmp_path: object
) -> None:
    closed = f"http://127.0.0.1:{free_port()}/api/v10"  # nothing listens there
    env = dict(
        os.environ,
        OPENROUTER_API_KEY=TEST_KEY,
        OPENROUTER_BASE_URL=fake.url,
        DISCORD_BOT_TOKEN=DISCORD_TOKEN,
        DISCORD_API_BASE_URL=closed,
        PORT=str(free_port()),
        ROUTERBOT_DATA_DIR=str(tmp_path),
    )
    process = await asyncio.create_subprocess_exec(
        ROUTERBOT, "serve", env=env, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 2
    assert (
        err.decode()
        .strip()
        .endswith("(ClientConnectorError): check DISCORD_API_BASE_URL and the network")
    )
    assert "Traceback" not in err.decode()
