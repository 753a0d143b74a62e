"""`/model` and `/credits`, and the limits, through the fake OpenRouter and a real store."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from bot.commands import Caller, Commands
from bot.config import load_settings
from bot.engine import Conversation, Delta, Engine, Failed, Final, Turn
from bot.formatting import Document, document_text
from bot.limits import ChannelGates, RateLimiter, month_bounds
from bot.openrouter import OpenRouterClient
from bot.store import ChannelKey, Store
from bot.tools import ToolRegistry
from tests.conftest import make_client
from tests.fakes.openrouter import FakeOpenRouter, Reply
from tests.test_engine import Recorder, barrier_tool

KEY = ChannelKey("slack", "T1", "C1")
ADMIN = Caller("U-admin", "alice", is_admin=True)
MEMBER = Caller("U-member", "bob")


def commands_for(client: OpenRouterClient, store: Store, **settings: Any) -> Commands:
    engine = Engine(client, store, load_settings(**settings), ToolRegistry([barrier_tool(1)]))
    return Commands(engine)


def fields(doc: Document) -> dict[str, str]:
    return dict(doc.fields)


async def test_view_says_where_each_value_comes_from(
    client: OpenRouterClient, store: Store
) -> None:
    commands = commands_for(client, store, system_prompt="p" * 300)
    await store.update_settings(
        KEY.workspace_default(), {"fallbacks": ["openrouter/z-ai/glm-4.7"]}, by="owner"
    )
    doc = await commands.run("/model", "", KEY, MEMBER)
    shown = fields(doc)
    assert shown["Model"] == "openrouter/openai/gpt-4o-mini (default)"
    assert shown["Fallbacks"] == "openrouter/z-ai/glm-4.7 (workspace)"
    assert shown["System prompt"] == "p" * 117 + "... (default)"
    assert shown["Tools"] == "read, list, glob, grep, webfetch, todo (default)"
    assert shown["Budget"] == "none (default)"
    assert doc.ephemeral


async def test_set_a_model(client: OpenRouterClient, store: Store) -> None:
    commands = commands_for(client, store)
    doc = await commands.run("/model", "set anthropic/claude-sonnet-4", KEY, ADMIN)
    assert doc.ok
    assert doc.title == "Set model to openrouter/anthropic/claude-sonnet-4"
    assert doc.announcement == (
        "@alice set this channel's model to openrouter/anthropic/claude-sonnet-4."
    )
    assert not doc.ephemeral
    assert fields(doc)["Model"] == "openrouter/anthropic/claude-sonnet-4"
    assert await store.get_settings(KEY) == {"model": "openrouter/anthropic/claude-sonnet-4"}


async def test_a_bad_id_gets_a_suggestion_and_changes_nothing(
    client: OpenRouterClient, store: Store
) -> None:
    doc = await commands_for(client, store).run("/model", "set z-ai/glm-4.8", KEY, ADMIN)
    assert not doc.ok
    assert "Did you mean openrouter/z-ai/glm-4.7?" in document_text(doc)
    assert doc.announcement is None
    assert await store.get_settings(KEY) == {}


async def test_a_member_may_view_but_not_change(client: OpenRouterClient, store: Store) -> None:
    commands = commands_for(client, store)
    doc = await commands.run("/model", "set openai/gpt-4o", KEY, MEMBER)
    assert not doc.ok
    assert "Only this channel's or workspace's admins" in doc.notes[0]
    assert "ROUTERBOT_ADMINS" in doc.notes[0]
    assert await store.get_settings(KEY) == {}
    # ROUTERBOT_ADMINS grants it.
    listed = commands_for(client, store, admins="U-other, U-member")
    assert (await listed.run("/model", "set openai/gpt-4o", KEY, MEMBER)).ok


async def test_fallbacks_auto_prompt_budget_tools_and_reset(
    client: OpenRouterClient, store: Store
) -> None:
    commands = commands_for(client, store)

    async def run(text: str) -> Document:
        doc = await commands.run("/model", text, KEY, ADMIN)
        assert doc.ok, document_text(doc)
        return doc

    doc = await run("fallbacks z-ai/glm-4.7 openrouter/openai/gpt-4o")
    assert fields(doc)["Fallbacks"] == "openrouter/z-ai/glm-4.7, openrouter/openai/gpt-4o"
    assert fields(await run("fallbacks clear"))["Fallbacks"] == "none"
    assert fields(await run("auto"))["Model"] == "openrouter/auto"
    doc = await run("prompt You answer in French.")
    assert fields(doc)["System prompt"] == "You answer in French."
    assert fields(await run("prompt clear"))["System prompt"] == "none"
    assert fields(await run("budget 25"))["Budget"] == "$25.00 a month"
    assert fields(await run("tools meet"))["Tools"] == "meet"
    doc = await run("reset")
    assert doc.title == "Reset to defaults"
    assert doc.announcement == "@alice reset this channel's settings to the defaults."
    assert fields(doc)["Model"] == "openrouter/openai/gpt-4o-mini (default)"
    assert await store.get_settings(KEY) == {}


async def test_switching_to_a_model_without_tools_says_so(
    client: OpenRouterClient, store: Store
) -> None:
    commands = commands_for(client, store)
    await commands.run("/model", "tools meet", KEY, ADMIN)
    doc = await commands.run("/model", "set mistralai/mistral-small", KEY, ADMIN)
    assert any("cannot use tools, so tools are off" in n for n in doc.notes)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("frobnicate", "`frobnicate` is not a /model command."),
        ("set", "Give one model id"),
        ("set a/b c/d", "Give one model id"),
        ("fallbacks", "Give fallback ids"),
        ("prompt", "Give the prompt text"),
        ("budget lots", "Give the budget in USD"),
        ("budget -5", "Give the budget in USD"),
    ],
)
async def test_usage_for_what_cannot_be_parsed(
    client: OpenRouterClient, store: Store, text: str, problem: str
) -> None:
    doc = await commands_for(client, store).run("/model", text, KEY, ADMIN)
    assert not doc.ok
    assert problem in doc.notes[0]
    assert "/model set ID" in doc.notes[-1]
    assert await store.get_settings(KEY) == {}


async def test_unknown_tools_are_refused(client: OpenRouterClient, store: Store) -> None:
    doc = await commands_for(client, store).run("/model", "tools meet bash", KEY, ADMIN)
    assert not doc.ok
    assert doc.notes == ["Unknown tool(s): bash. Tools: meet; or `off`."]


async def test_list_models_with_paging(client: OpenRouterClient, store: Store) -> None:
    commands = commands_for(client, store)
    doc = await commands.run("/model", "list", KEY, MEMBER)
    assert doc.table is not None
    assert len(doc.table.rows) == 10
    assert doc.title == "Models (11)"
    assert doc.notes[0] == "Page 1 of 2; next: /model list page 2"
    doc = await commands.run("/model", "list page 2", KEY, MEMBER)
    assert doc.table is not None
    assert [r[0] for r in doc.table.rows] == ["openrouter/z-ai/glm-4.7"]
    doc = await commands.run("/model", "list claude", KEY, MEMBER)
    assert doc.table is not None
    assert doc.table.rows[1] == [
        "openrouter/anthropic/claude-sonnet-4",
        "200,000",
        "3.00",
        "15.00",
        "yes",
        "yes",
    ]
    doc = await commands.run("/model", "list glm-4.8", KEY, MEMBER)
    assert not doc.ok
    assert doc.notes == ["No model matches 'glm-4.8'.", "Did you mean openrouter/z-ai/glm-4.7?"]


async def test_credits(fake: FakeOpenRouter, client: OpenRouterClient, store: Store) -> None:
    fake.key_data = {**fake.key_data, "limit_remaining": 0.5}
    for cost in (0.25, 0.5):
        await store.record_usage(
            KEY,
            user_id="U1",
            model="openai/gpt-4o",
            prompt_tokens=1,
            completion_tokens=1,
            cost=cost,
            generation_id=None,
        )
    doc = await commands_for(client, store).run("/credits", "", KEY, MEMBER)
    shown = fields(doc)
    assert shown["Balance"] == "$0.50 left of the key's $100.00 limit, resets monthly"
    assert shown["Account today"] == "$1.20"
    assert shown["Account this month"] == "$25.50"
    assert shown["This channel today"] == "$0.75"
    assert shown["This channel this month"] == "$0.75 (2 replies)"
    assert doc.notes[0].startswith("Warning: the balance is below $1.00")
    assert doc.notes[-1] == "Figures from OpenRouter, just now."


async def test_credits_when_openrouter_is_down(fake: FakeOpenRouter, store: Store) -> None:
    fake.keys = set()  # every key is refused
    async with make_client(fake, max_retries=0) as client:
        doc = await commands_for(client, store).run("/credits", "", KEY, MEMBER)
    assert not doc.ok
    assert "OpenRouter rejected the bot's API key" in doc.notes[0]


# -- limits -----------------------------------------------------------------------------


def test_rate_limiter_window() -> None:
    now = [0.0]
    limiter = RateLimiter(3, 60, clock=lambda: now[0])
    assert [limiter.acquire("u") for _ in range(3)] == [None, None, None]
    assert limiter.acquire("u") == 60
    assert limiter.acquire("v") is None
    now[0] = 30
    assert limiter.acquire("u") == 30
    now[0] = 60
    assert limiter.acquire("u") is None


def test_month_bounds() -> None:
    start, end = month_bounds(1_765_000_000)  # 2025-12-06
    assert time.strftime("%Y-%m-%d", time.gmtime(start)) == "2025-12-01"
    assert time.strftime("%Y-%m-%d", time.gmtime(end)) == "2026-01-01"


async def test_the_rate_limit_refuses_with_when_it_lifts(
    client: OpenRouterClient, store: Store
) -> None:
    engine = Engine(client, store, load_settings(user_rate_limit=2))
    here = Conversation("slack", "T1", "C1", "t")
    sinks = [Recorder() for _ in range(3)]
    for sink in sinks:
        await engine.reply(here, [Turn("U1", "ann", "hi")], sink, user_id="U1")
    assert sinks[0].of(Final)
    assert sinks[1].of(Final)
    (refused,) = sinks[2].of(Failed)
    assert refused.kind == "limit"
    assert refused.message.startswith("You have sent 2 requests in the last minute")
    assert "Try again in" in refused.message


async def test_the_channel_allowlist(client: OpenRouterClient, store: Store) -> None:
    engine = Engine(client, store, load_settings(channel_allowlist="C9"))
    sink = Recorder()
    await engine.reply(
        Conversation("slack", "T1", "C1", "t"), [Turn("U1", "a", "hi")], sink, user_id="U1"
    )
    assert "ROUTERBOT_CHANNEL_ALLOWLIST" in sink.of(Failed)[0].message


async def test_the_budget_refuses_once_spent(
    fake: FakeOpenRouter, client: OpenRouterClient, store: Store
) -> None:
    engine = Engine(client, store, load_settings())
    commands = Commands(engine)
    await commands.run("/model", "budget 1", KEY, ADMIN)
    await store.record_usage(
        KEY,
        user_id="U1",
        model="openai/gpt-4o",
        prompt_tokens=1,
        completion_tokens=1,
        cost=1.25,
        generation_id=None,
    )
    sink = Recorder()
    here = Conversation(KEY.platform, KEY.workspace, KEY.channel, "t")
    assert await engine.reply(here, [Turn("U1", "a", "hi")], sink, user_id="U1") is None
    (refused,) = sink.of(Failed)
    assert refused.message.startswith("This channel has spent $1.25 of its $1.00 monthly budget")
    assert "/model budget" in refused.message
    assert fake.chat_requests() == []


async def test_the_concurrency_queue_waits_its_turn(
    fake: FakeOpenRouter, client: OpenRouterClient, store: Store
) -> None:
    engine = Engine(client, store, load_settings(channel_concurrency=2))
    fake.script("openai/gpt-4o-mini", Reply(text="word " * 20, tokens_per_s=40))
    changed = asyncio.Event()
    sinks = [Recorder(changed) for _ in range(5)]
    tasks = [
        asyncio.create_task(
            engine.reply(
                Conversation("slack", "T1", "C1", f"t{i}"),
                [Turn("U", "a", "hi")],
                sink,
                user_id=f"U{i}",
            )
        )
        for i, sink in enumerate(sinks)
    ]

    async def two_streaming() -> None:
        while sum(1 for s in sinks if s.of(Delta)) < 2:
            changed.clear()
            await changed.wait()

    await asyncio.wait_for(two_streaming(), timeout=10)
    # Two replies run; the other three wait in line, nothing refused.
    assert engine.gates.busy(KEY) == 5
    assert len(fake.chat_requests()) == 2
    finals = await asyncio.gather(*tasks)
    assert all(f is not None for f in finals)
    assert not any(s.of(Failed) for s in sinks)
    assert len(fake.chat_requests()) == 5
    assert engine.gates.busy(KEY) == 0


async def test_gates_keep_at_most_n_inside() -> None:
    gates = ChannelGates(2)
    inside = 0
    peak = 0
    release = asyncio.Event()
    two_inside = asyncio.Event()

    async def work() -> None:
        nonlocal inside, peak
        async with gates.slot("C"):
            inside += 1
            peak = max(peak, inside)
            if inside == 2:
                two_inside.set()
            await release.wait()
            inside -= 1

    tasks = [asyncio.create_task(work()) for _ in range(6)]
    await asyncio.wait_for(two_inside.wait(), timeout=10)
    assert gates.busy("C") == 6
    release.set()
    await asyncio.gather(*tasks)
    assert peak == 2
