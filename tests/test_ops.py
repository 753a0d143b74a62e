"""Running it for real: /healthz, /readyz, /metrics, JSON logs without secrets, start-up
checks, and shutdown on SIGTERM with replies in flight."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from adapters.serve import Server
from adapters.slack import SlackBot
from bot import logs
from bot.config import load_settings
from bot.engine import Conversation, Engine, Turn
from bot.openrouter import OpenRouterClient
from bot.store import Store
from tests.conftest import make_client
from tests.fakes.openrouter import TEST_KEY, FakeOpenRouter, Reply
from tests.fakes.slack import (
    APP_TOKEN,
    BOT_TOKEN,
    BOT_USER_ID,
    SIGNING_SECRET,
    FakeSlack,
)
from tests.test_cli import ROUTERBOT
from tests.test_engine import Recorder
from tests.test_serve import free_port, wait_until_healthy
from tests.waiting import eventually

MODEL = "openai/gpt-4o-mini"


@pytest.fixture
async def stack(
    fake: FakeOpenRouter, client: OpenRouterClient, store: Store, tmp_path: Path
) -> AsyncIterator[tuple[Server, FakeSlack, Engine]]:
    async with FakeSlack() as slack:
        slack.add_user("U1", "Alice")
        settings = load_settings(
            slack_bot_token=BOT_TOKEN,
            slack_signing_secret=SIGNING_SECRET,
            slack_api_base_url=slack.api_url,
            data_dir=tmp_path / "data",
        )
        engine = Engine(client, store, settings)
        bot = SlackBot(engine, settings)
        server = Server(engine, bot)
        slack.events_url = await server.start("127.0.0.1", 0) + "/slack/events"
        yield server, slack, engine
        await server.stop()
        await bot.aclose()


async def get(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, response.headers["Content-Type"], await response.text()


async def test_health_and_readiness(
    stack: tuple[Server, FakeSlack, Engine], fake: FakeOpenRouter
) -> None:
    server, _, engine = stack
    status, _, body = await get(server.url + "/healthz")
    assert (status, json.loads(body)) == (200, {"ok": True})
    status, _, body = await get(server.url + "/readyz")
    assert status == 200
    assert json.loads(body) == {
        "ok": True,
        "checks": {"store": True, "slack": True, "catalogue": True},
    }
    # A catalogue once fetched stays good enough while OpenRouter is down...
    fake.models_fail_status = 503
    status, _, _ = await get(server.url + "/readyz")
    assert status == 200
    # ... but a closed store is not ready.
    await engine.store.close()
    status, _, body = await get(server.url + "/readyz")
    assert status == 503
    assert json.loads(body)["checks"]["store"] is False


async def test_readiness_without_any_catalogue(
    fake: FakeOpenRouter, client: OpenRouterClient, store: Store
) -> None:
    fake.models_fail_status = 503
    server = Server(Engine(client, store, load_settings()))
    await server.start("127.0.0.1", 0)
    try:
        status, _, body = await get(server.url + "/readyz")
    finally:
        await server.stop()
    assert status == 503
    assert json.loads(body)["checks"] == {"store": True, "catalogue": False}


async def test_metrics_change_after_a_reply(
    stack: tuple[Server, FakeSlack, Engine], fake: FakeOpenRouter
) -> None:
    server, slack, engine = stack
    status, kind, before = await get(server.url + "/metrics")
    assert status == 200
    assert kind.startswith("text/plain")
    assert 'routerbot_replies_total{outcome="ok",platform="slack"}' not in before
    fake.script(MODEL, Reply(text="Metered."))
    ts = await slack.say("U1", "C1", f"<@{BOT_USER_ID}> count me")
    await eventually(
        lambda: engine.metrics.value("routerbot_replies_total", platform="slack", outcome="ok"),
        "the reply to be counted",
    )
    _, _, after = await get(server.url + "/metrics")
    assert 'routerbot_replies_total{outcome="ok",platform="slack"} 1.0' in after
    assert (
        'routerbot_tokens_total{kind="completion",model="openrouter/openai/gpt-4o-mini"}' in after
    )
    assert "routerbot_upstream_first_token_seconds_count 1.0" in after
    assert "routerbot_cost_usd_total" in after
    assert slack.replies_to("C1", ts)


async def test_refusals_errors_and_tools_are_counted(
    fake: FakeOpenRouter, client: OpenRouterClient, store: Store, tmp_path: Path
) -> None:
    settings = load_settings(user_rate_limit=1, data_dir=tmp_path)
    engine = Engine(client, store, settings)
    here = Conversation("slack", "T1", "C1", "1.0")
    fake.script(MODEL, Reply(fail_status=402))
    await engine.reply(here, [Turn("U1", "a", "hi")], Recorder(), user_id="U1")
    await engine.reply(here, [Turn("U1", "a", "hi")], Recorder(), user_id="U1")
    m = engine.metrics
    assert m.value("routerbot_errors_total", kind="insufficient_credits") == 1
    assert m.value("routerbot_refusals_total", reason="rate_limit") == 1
    assert m.value("routerbot_replies_total", platform="slack", outcome="refused") == 1


# -- logs ---------------------------------------------------------------------------------

SECRETS = {
    "openrouter_api_key": "sk-or-v1-" + "a1" * 16,
    "openrouter_management_key": "sk-or-v1-" + "b2" * 16,
    "slack_bot_token": "xoxb-1111-2222-secretbottoken",
    "slack_signing_secret": "signing-secret-3333",
    "slack_app_token": "xapp-1-A1-4444-secretapptoken",
    "discord_bot_token": "discord.secret.token-5555",
}


@pytest.fixture
def captured() -> Any:
    saved = logging.getLogger().handlers[:], logging.getLogger().level
    stream = io.StringIO()
    yield stream
    root = logging.getLogger()
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


async def test_json_logs_one_line_per_reply_and_never_a_secret(
    fake: FakeOpenRouter, store: Store, tmp_path: Path, captured: io.StringIO
) -> None:
    settings = load_settings(log_format="json", data_dir=tmp_path, **SECRETS)
    logs.configure(settings, level="INFO", stream=captured)
    fake.keys.add(SECRETS["openrouter_api_key"])
    async with make_client(fake, api_key=SECRETS["openrouter_api_key"], max_retries=0) as client:
        engine = Engine(client, store, settings)
        here = Conversation("slack", "T1", "C1", "9.0")
        fake.script(MODEL, Reply(text="A secret-free answer."))
        await engine.reply(here, [Turn("U1", "alice", "question one")], Recorder(), user_id="U1")
        # Every secret fed through the error paths: an upstream error quoting the key...
        quoted = " ".join(SECRETS.values())
        fake.script(MODEL, Reply(fail_status=500, fail_message=f"upstream said {quoted}"))
        await engine.reply(here, [Turn("U1", "alice", "question two")], Recorder(), user_id="U1")
    # ... a crash whose message holds them all, and a careless log call.
    try:
        raise RuntimeError(f"boom {quoted}")
    except RuntimeError:
        logging.getLogger("bot.anything").exception("handling %s failed", quoted)
    logging.getLogger("adapters.slack").warning("token=%s", SECRETS["slack_bot_token"])
    output = captured.getvalue()
    for name, secret in SECRETS.items():
        assert secret not in output, f"{name} leaked into the logs"
    lines = [json.loads(line) for line in output.splitlines()]
    replies = [line for line in lines if line["logger"] == "routerbot.reply"]
    assert [r["outcome"] for r in replies] == ["ok", "error"]
    first = replies[0]
    assert first["platform"] == "slack"
    assert first["channel"] == "C1"
    assert first["thread"] == "9.0"
    assert first["model_asked"] == "openrouter/openai/gpt-4o-mini"
    assert first["model_served"] == "openrouter/openai/gpt-4o-mini"
    assert first["completion_tokens"] > 0
    assert first["latency_s"] >= 0
    assert "question" not in first, "message text stays out without ROUTERBOT_LOG_CONTENT"
    assert "answer" not in first
    assert replies[1]["error"] == "provider_unavailable"
    assert any("[redacted]" in line["message"] for line in lines)


async def test_log_content_adds_the_question_and_answer(
    fake: FakeOpenRouter, client: OpenRouterClient, store: Store, tmp_path: Path,
    captured: io.StringIO,
) -> None:  # fmt: skip
    settings = load_settings(log_content=True, data_dir=tmp_path)
    logs.configure(settings, level="INFO", stream=captured)
    engine = Engine(client, store, settings)
    fake.script(MODEL, Reply(text="Forty-two."))
    here = Conversation("discord", "G1", "C1", "1")
    await engine.reply(here, [Turn("U1", "alice", "the answer?")], Recorder(), user_id="U1")
    (line,) = [x for x in captured.getvalue().splitlines() if "routerbot.reply" in x]
    assert 'question="the answer?"' in line
    assert "answer=Forty-two." in line
    assert "outcome=ok" in line


# -- start-up checks -----------------------------------------------------------------------


async def serve_once(env: dict[str, str], fake: FakeOpenRouter | None = None) -> tuple[int, str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DISCORD_"))}
    full |= {"OPENROUTER_API_KEY": TEST_KEY, "PORT": str(free_port())}
    if fake is not None:
        full["OPENROUTER_BASE_URL"] = fake.url
    full |= env
    process = await asyncio.create_subprocess_exec(
        ROUTERBOT, "serve", env=full, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode is not None
    text = err.decode()
    assert "Traceback" not in text
    for secret in (TEST_KEY, BOT_TOKEN, APP_TOKEN, SIGNING_SECRET):
        assert secret not in text
    return process.returncode, text.strip()


async def test_no_platform_suggests_the_terminal() -> None:
    code, err = await serve_once({})
    assert code == 2
    assert err.startswith("routerbot: nothing to serve:")
    assert err.endswith("run `routerbot chat`")


async def test_an_invalid_key_is_caught_at_start(fake: FakeOpenRouter, tmp_path: Path) -> None:
    code, err = await serve_once(
        {
            "OPENROUTER_API_KEY": "sk-or-v1-" + "0" * 32,
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "ROUTERBOT_DATA_DIR": str(tmp_path),
        },
        fake,
    )
    assert code == 2
    assert err == (
        "routerbot: OPENROUTER_API_KEY was refused by OpenRouter (invalid or revoked): create "
        "a key at https://openrouter.ai/settings/keys"
    )


async def test_a_data_dir_that_cannot_be_written(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, err = await serve_once({"ROUTERBOT_DATA_DIR": str(blocker / "data")})
    assert code == 2
    assert "set ROUTERBOT_DATA_DIR to a folder the bot may write" in err


@pytest.mark.parametrize(
    ("env", "says"),
    [
        (
            {"SLACK_BOT_TOKEN": APP_TOKEN, "SLACK_APP_TOKEN": APP_TOKEN},
            "SLACK_BOT_TOKEN holds an app-level token (xapp-...)",
        ),
        (
            {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_APP_TOKEN": BOT_TOKEN},
            "the xoxb- token belongs in SLACK_BOT_TOKEN",
        ),
    ],
    ids=["xapp as bot token", "xoxb as app token"],
)
async def test_slack_tokens_in_the_wrong_place(
    env: dict[str, str], says: str, tmp_path: Path
) -> None:
    code, err = await serve_once({**env, "ROUTERBOT_DATA_DIR": str(tmp_path)})
    assert code == 2
    assert says in err


# -- shutdown ------------------------------------------------------------------------------


async def start_serving(
    fake: FakeOpenRouter, slack: FakeSlack, tmp_path: Path, **env: str
) -> tuple[asyncio.subprocess.Process, str]:
    port = free_port()
    full = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DISCORD_"))}
    full |= {
        "OPENROUTER_API_KEY": TEST_KEY,
        "OPENROUTER_BASE_URL": fake.url,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_BASE_URL": slack.api_url,
        "PORT": str(port),
        "ROUTERBOT_DATA_DIR": str(tmp_path),
        "ROUTERBOT_LOG_FORMAT": "json",
        **env,
    }
    process = await asyncio.create_subprocess_exec(
        ROUTERBOT, "serve", env=full, stderr=asyncio.subprocess.PIPE
    )
    base = f"http://127.0.0.1:{port}"
    await wait_until_healthy(base)
    slack.events_url = base + "/slack/events"
    return process, base


async def test_sigterm_during_a_streamed_reply_still_ends_with_the_full_text(
    fake: FakeOpenRouter, tmp_path: Path
) -> None:
    answer = " ".join(f"word{i}" for i in range(60))
    fake.script(MODEL, Reply(text=answer, tokens_per_s=40))  # about 1.5 s of streaming
    async with FakeSlack() as slack:
        slack.add_user("U1", "Alice")
        process, _ = await start_serving(fake, slack, tmp_path)
        ts = await slack.say("U1", "C1", f"<@{BOT_USER_ID}> talk")
        await eventually(lambda: slack.count("chat.appendStream") >= 1, "the stream to start")
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), timeout=30)
        assert process.returncode == 0, err.decode()
        (message,) = slack.replies_to("C1", ts)
        assert message.text == answer
        assert not message.streaming
        records = [json.loads(line) for line in err.decode().splitlines()]
        assert any(r["message"].startswith("every reply finished") for r in records)


async def test_replies_past_the_grace_period_are_stopped_and_say_so(
    fake: FakeOpenRouter, tmp_path: Path
) -> None:
    fake.script(MODEL, Reply(text=" ".join(["slow"] * 100), tokens_per_s=10))  # 10 s
    async with FakeSlack() as slack:
        slack.add_user("U1", "Alice")
        process, _ = await start_serving(fake, slack, tmp_path, ROUTERBOT_SHUTDOWN_GRACE_S="0.5")
        ts = await slack.say("U1", "C1", f"<@{BOT_USER_ID}> talk slowly")
        await eventually(lambda: slack.count("chat.appendStream") >= 1, "the stream to start")
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), timeout=30)
        assert process.returncode == 0, err.decode()
        (message,) = slack.replies_to("C1", ts)
        assert message.text.startswith("slow")
        assert message.text.endswith("_Stopped: the bot is restarting; ask again in a minute._")
        assert not message.streaming


@pytest.mark.parametrize(
    ("env", "says"),
    [
        (
            {"SLACK_BOT_TOKEN": "xoxb-revoked", "SLACK_SIGNING_SECRET": SIGNING_SECRET},
            "routerbot: SLACK_BOT_TOKEN was refused by Slack (invalid_auth)",
        ),
        (
            {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_APP_TOKEN": "xapp-1-revoked"},
            "routerbot: SLACK_APP_TOKEN was refused by Slack (invalid_auth)",
        ),
    ],
    ids=["bot token", "app token"],
)
async def test_a_slack_token_slack_refuses_is_caught_at_start(
    env: dict[str, str], says: str, fake: FakeOpenRouter, tmp_path: Path
) -> None:
    async with FakeSlack() as slack:
        code, err = await serve_once(
            {**env, "SLACK_API_BASE_URL": slack.api_url, "ROUTERBOT_DATA_DIR": str(tmp_path)},
            fake,
        )
    assert code == 2
    assert err.startswith(says)
