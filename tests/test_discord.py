"""The Discord adapter end to end: the real discord.py client logged into the fake
Discord's REST and gateway, the fake OpenRouter answering."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import discord
import pytest
from discord.gateway import DiscordWebSocket

from adapters.discord import DiscordBot
from adapters.pacing import Pacer
from bot.config import Settings, load_settings
from bot.engine import Engine
from bot.openrouter import OpenRouterClient
from bot.store import ChannelKey, Store
from bot.tools import build_toolbox
from tests.conftest import make_client
from tests.fakes.discord import (
    BOT_ID,
    CHANNEL_ID,
    DM_ID,
    GUILD_ID,
    MANAGE_CHANNELS,
    THREAD_ID,
    TOKEN,
    FakeDiscord,
    Interaction,
)
from tests.fakes.openrouter import TEST_KEY, FakeOpenRouter, Reply
from tests.waiting import eventually

MODEL = "openai/gpt-4o-mini"
MENTION = f"<@{BOT_ID}>"
ALICE, BOB, OTHER_BOT = "100", "101", "102"
EPHEMERAL = 64


@dataclass
class Harness:
    fake: FakeOpenRouter
    discord: FakeDiscord
    bot: DiscordBot
    store: Store
    settings: Settings

    async def reply_to(self, message_id: str, count: int = 1) -> dict[str, Any]:
        """Waits until the bot's reply to a message is finished; returns its last message."""

        def finished() -> bool:
            return self.bot.outcomes["answered"] >= count and not self.bot.replying

        await eventually(finished, "the bot's reply")
        replies = [
            m
            for m in self.discord.messages.values()
            if m["author"]["id"] == BOT_ID
            and (m.get("message_reference") or {}).get("message_id") == message_id
        ]
        assert replies, "the bot answered with a reply to the message"
        return replies[-1]

    def answer_pages(self, first: dict[str, Any]) -> list[dict[str, Any]]:
        """The bot's messages from `first` on, in its channel."""
        history = self.discord.replies_by_bot(first["channel_id"])
        return history[history.index(first) :]


Factory = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def discord_fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as fake_discord:
        fake_discord.add_user(ALICE, "Alice")
        fake_discord.add_user(BOB, "Bob")
        fake_discord.add_user(OTHER_BOT, "Otherbot", bot=True)
        yield fake_discord


@pytest.fixture
async def harness(
    fake: FakeOpenRouter, discord_fake: FakeDiscord, tmp_path: Path
) -> AsyncIterator[Factory]:
    opened: list[Any] = []
    route_base = discord.http.Route.BASE
    gateway = DiscordWebSocket.DEFAULT_GATEWAY

    async def build(on: FakeDiscord | None = None, **overrides: Any) -> Harness:
        target = on or discord_fake
        options: dict[str, Any] = {
            "openrouter_api_key": TEST_KEY,
            "openrouter_base_url": fake.url,
            "discord_bot_token": TOKEN,
            "discord_api_base_url": target.api_url,
            "data_dir": tmp_path / "data",
            **overrides,
        }
        settings = load_settings(**options)
        store = await Store.open(settings.database_path)
        client: OpenRouterClient = make_client(fake, max_retries=0)
        toolbox = await build_toolbox(settings, store, client)
        engine = Engine(client, store, settings, toolbox.registry)
        bot = DiscordBot(engine, settings, guild_ready_timeout_s=0.05)
        bot.pacer = Pacer({"edit": (5, 0.05)}, per_channel=frozenset({"edit"}))
        bot.spacing_s = 0.01
        opened.extend([bot, toolbox, client, store])
        await bot.start()
        await target.connected()
        return Harness(fake, target, bot, store, settings)

    yield build
    for thing in opened:
        if isinstance(thing, Store):
            await thing.close()
        else:
            await thing.aclose()
    discord.http.Route.BASE = route_base
    DiscordWebSocket.DEFAULT_GATEWAY = gateway


def chat_bodies(fake: FakeOpenRouter) -> list[dict[str, Any]]:
    return [r.body for r in fake.chat_requests()]


def text_of(message: dict[str, Any]) -> str:
    """A message's content without the footer and activity lines."""
    lines = message["content"].split("\n")
    while lines and lines[-1].startswith("-# "):
        lines.pop()
    return "\n".join(lines)


def footer_of(message: dict[str, Any]) -> list[str]:
    return [line[3:] for line in message["content"].split("\n") if line.startswith("-# ")]


# -- connecting ----------------------------------------------------------------------------


async def test_the_bot_logs_in_through_the_configured_rest_root_and_gateway(
    harness: Factory, discord_fake: FakeDiscord
) -> None:
    h = await harness()
    assert discord_fake.count("GET", "/gateway/bot") == 1
    assert discord_fake.identify is not None
    intents = discord.Intents._from_value(discord_fake.identify["intents"])
    assert intents.guilds
    assert intents.guild_messages
    assert intents.dm_messages
    assert intents.message_content
    names = {c["name"] for c in discord_fake.commands}
    assert names == {"model", "credits"}
    model = next(c for c in discord_fake.commands if c["name"] == "model")
    verbs = {o["name"] for o in model["options"]}
    assert verbs == {"show", "list", "set", "auto", "fallbacks", "prompt", "tools", "budget",
                     "reset"}  # fmt: skip
    assert h.bot.client.user is not None
    assert str(h.bot.client.user.id) == BOT_ID


async def test_commands_sync_to_one_guild_when_asked(
    harness: Factory, discord_fake: FakeDiscord
) -> None:
    await harness(discord_guild=GUILD_ID)
    assert discord_fake.count("PUT", f"/guilds/{GUILD_ID}/commands") == 1


async def test_without_the_message_content_intent_it_still_answers_mentions(
    harness: Factory, fake: FakeOpenRouter, caplog: pytest.LogCaptureFixture
) -> None:
    async with FakeDiscord(message_content_allowed=False) as strict:
        strict.add_user(ALICE, "Alice")
        with caplog.at_level(logging.WARNING, logger="adapters.discord.app"):
            h = await harness(on=strict)
        assert h.bot.message_content is False
        warnings = [r for r in caplog.records if "Message Content intent" in r.getMessage()]
        assert len(warnings) == 1
        fake.script(MODEL, Reply(text="Still here."))
        asked = await strict.say(ALICE, CHANNEL_ID, f"{MENTION} hello?", mentions=[BOT_ID])
        reply = await h.reply_to(asked)
        assert text_of(reply) == "Still here."


# -- conversations ---------------------------------------------------------------------


async def test_a_mention_is_answered_by_a_reply_whose_edits_end_in_the_full_text(
    harness: Factory, discord_fake: FakeDiscord, fake: FakeOpenRouter
) -> None:
    h = await harness()
    answer = "Discord streams by editing. " * 10
    fake.script(MODEL, Reply(text=answer.strip(), tokens_per_s=300))
    asked = await discord_fake.say(ALICE, CHANNEL_ID, f"{MENTION} how?", mentions=[BOT_ID])
    reply = await h.reply_to(asked)
    assert text_of(reply) == answer.strip()
    assert reply["edits"] >= 1, "the text grew by edits"
    assert footer_of(reply) == ["openrouter/openai/gpt-4o-mini"]
    assert discord_fake.count("POST", f"/channels/{CHANNEL_ID}/typing") >= 1
    (body,) = chat_bodies(fake)
    assert body["messages"][-1] == {"role": "user", "content": "Alice: how?"}


async def test_a_reply_chain_is_the_context(
    harness: Factory, discord_fake: FakeDiscord, fake: FakeOpenRouter
) -> None:
    h = await harness()
    fake.script(MODEL, Reply(text="Blue."))
    first = await discord_fake.say(ALICE, CHANNEL_ID, f"{MENTION} sky colour?", mentions=[BOT_ID])
    answer = await h.reply_to(first)
    fake.script(MODEL, Reply(text="Because of Rayleigh scattering."))
    # A reply to the bot needs no mention.
    second = await discord_fake.say(BOB, CHANNEL_ID, "why?", reply_to=answer["id"])
    await h.reply_to(second, count=2)
    messages = chat_bodies(fake)[-1]["messages"]
    assert messages[-3:] == [
        {"role": "user", "content": "Alice: sky colour?"},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "Bob: why?"},
    ]


async def test_a_threads_history_is_the_context(
    harness: Factory, discord_fake: FakeDiscord, fake: FakeOpenRouter
) -> None:
    h = await harness()
    discord_fake.message(ALICE, THREAD_ID, "the build is red")
    discord_fake.message(BOB, THREAD_ID, "since the upgrade")
    fake.script(MODEL, Reply(text="Pin the old version."))
    asked = await discord_fake.say(ALICE, THREAD_ID, f"{MENTION} ideas?", mentions=[BOT_ID])
    await h.reply_to(asked)
    contents = [m["content"] for m in chat_bodies(fake)[0]["messages"]]
    assert contents[-3:] == ["Alice: the build is red", "Bob: since the upgrade", "Alice: ideas?"]
    # Settings of a thread are its parent channel's.
    key = ChannelKey("discord", GUILD_ID, CHANNEL_ID)
    await h.store.update_settings(key, {"model": "openrouter/openai/gpt-4o"}, by="test")
    fake.script("openai/gpt-4o", Reply(text="From 4o."))
    again = await discord_fake.say(ALICE, THREAD_ID, f"{MENTION} sure?", mentions=[BOT_ID])
    assert text_of(await h.reply_to(again, count=2)) == "From 4o."


async def test_a_direct_message_is_answered(
    harness: Factory, discord_fake: FakeDiscord, fake: FakeOpenRouter
) -> None:
    h = await harness()
    fake.script(MODEL, Reply(text="Hi Alice."))
    asked = await discord_fake.say(ALICE, DM_ID, "hello")
    assert text_of(await h.reply_to(asked)) == "Hi Alice."


async def test_bots_and_the_bots_own_messages_are_ignored(
    harness: Factory, discord_fake: FakeDiscord, fake: FakeOpenRouter
) -> None:
    h = await harness()
    await discord_fake.say(OTHER_BOT, CHANNEL_ID, f"{MENTION} loop?", mentions=[BOT_ID])
    fake.script(MODEL, Reply(text=f"Mentioning {MENTION} myself."))
    asked = await discord_fake.say(ALICE, CHANNEL_ID, f"{MENTION} go", mentions=[BOT_ID])
    await h.reply_to(asked)
    await discord_fake.say(BOB, CHANNEL_ID, "just chatting")
    await eventually(lambda: sum(h.bot.outcomes.values()) >= 4, "every message decided")
    assert h.bot.outcomes["answered"] == 1
    assert len(fake.chat_requests()) == 1


# -- long answers and mentions -----------------------------------------------------------


async def test_a_7000_character_answer_is_split_with_fences_intact(
    harness: Factory, discord_fake: FakeDiscord, fake: FakeOpenRouter
) -> None:
    h = await harness()
    code = "\n".join(f"    total = total + step({i})  # line {i}" for i in range(110))
    prose = "\n\n".join(f"Part {i}. " + "Some careful words. " * 12 for i in range(6))
    answer = f"{prose}\n\n```python\n{code}\n```\n\n{prose}"
    assert len(answer) >= 7_000
    fake.script(MODEL, Reply(text=answer, tokens_per_s=5_000))
    asked = await discord_fake.say(ALICE, CHANNEL_ID, f"{MENTION} essay", mentions=[BOT_ID])
    first = await h.reply_to(asked)
    pages = h.answer_pages(first)
    assert len(pages) >= 4
    assert all(len(p["content"]) <= 2_000 for p in pages)
    for page in pages:
        assert text_of(page).count("```") % 2 == 0
    joined = "\n".join(text_of(p) for p in pages)
    assert re.sub(r"```\w*", " ", joined).split() == re.sub(r"```\w*", " ", answer).split()
    assert footer_of(pages[-1]) == ["openrouter/openai/gpt-4o-mini"]


async def test_everyone_in_model_output_pings_nobody(
    harness: Factory, discord_fake: FakeDiscord, fake: FakeOpenRouter
) -> None:
    h = await harness()
    fake.script(MODEL, Reply(text="@everyone and @here and <@101>, look!"))
    asked = await discord_fake.say(ALICE, CHANNEL_ID, f"{MENTION} shout", mentions=[BOT_ID])
    reply = await h.reply_to(asked)
    assert text_of(reply) == "@everyone and @here and <@101>, look!"
    sent = [
        c.body
        for c in discord_fake.calls
        if c.method in ("POST", "PATCH") and c.path.startswith("/channels/") and c.body
    ]
    assert sent
    for body in sent:
        assert body["allowed_mentions"]["parse"] == []
        assert not body["allowed_mentions"].get("users")
        assert not body["allowed_mentions"].get("replied_user")


async def test_edits_slow_down_when_discord_answers_429(
    harness: Factory, discord_fake: FakeDiscord, fake: FakeOpenRouter
) -> None:
    h = await harness()
    discord_fake.edit_limit = (2, 1.0)
    answer = " ".join(f"w{i}" for i in range(300))
    fake.script(MODEL, Reply(text=answer, tokens_per_s=400))
    asked = await discord_fake.say(ALICE, CHANNEL_ID, f"{MENTION} go", mentions=[BOT_ID])
    reply = await h.reply_to(asked)
    assert any(c.status == 429 for c in discord_fake.calls)
    assert text_of(reply) == answer
    metrics = h.bot.engine.metrics
    assert metrics.value(
        "routerbot_platform_rate_limited_total", platform="discord", method="PATCH"
    )


# -- errors and files ---------------------------------------------------------------------


async def test_an_upstream_failure_becomes_a_friendly_reply(
    harness: Factory, discord_fake: FakeDiscord, fake: FakeOpenRouter
) -> None:
    h = await harness()
    fake.script(MODEL, Reply(fail_status=429, fail_message="Rate limit exceeded"))
    asked = await discord_fake.say(ALICE, CHANNEL_ID, f"{MENTION} hi", mentions=[BOT_ID])
    reply = await h.reply_to(asked)
    assert reply["content"].startswith("⚠️ ")
    assert "Traceback" not in reply["content"]
    assert TEST_KEY not in reply["content"]


async def test_a_text_attachment_is_read_by_a_tool(
    harness: Factory, discord_fake: FakeDiscord, fake: FakeOpenRouter
) -> None:
    h = await harness()
    notes = discord_fake.add_attachment("notes.md", b"# Plan\n- ship on Friday\n")

    def script(body: dict[str, Any]) -> Reply:
        results = [m["content"] for m in body["messages"] if m["role"] == "tool"]
        if results:
            return Reply(text="Your plan: " + results[0].splitlines()[1])
        return Reply(text="", tool_calls=[{"name": "read", "arguments": {"path": "notes.md"}}])

    fake.script(MODEL, script)
    asked = await discord_fake.say(
        ALICE, CHANNEL_ID, f"{MENTION} what's the plan?", mentions=[BOT_ID], attachments=[notes]
    )
    reply = await h.reply_to(asked)
    assert text_of(reply).endswith("- ship on Friday"), "the tool read the file's second line"
    first = chat_bodies(fake)[0]["messages"][-1]["content"]
    assert first.endswith("(attached, in the workspace: notes.md)")


# -- app commands -------------------------------------------------------------------------


def subcommand(name: str, **options: Any) -> list[dict[str, Any]]:
    values = [
        {"name": key, "type": 4 if isinstance(value, int) else 3, "value": value}
        for key, value in options.items()
    ]
    return [{"name": name, "type": 1, "options": values}]


async def answered(interaction: Interaction) -> dict[str, Any]:
    """The first thing the bot sent for an interaction: the callback or a follow-up."""
    await eventually(lambda: interaction.callbacks, "the interaction's answer")
    callback = interaction.callbacks[0]
    if callback["type"] == 5:  # deferred: the answer is a follow-up
        await eventually(lambda: interaction.followups, "the follow-up")
        return interaction.followups[0]
    data: dict[str, Any] = callback["data"]
    return data


async def test_model_autocomplete_offers_matching_ids_the_current_first(
    harness: Factory, discord_fake: FakeDiscord
) -> None:
    await harness()
    options = [
        {
            "name": "set",
            "type": 1,
            "options": [{"name": "model", "type": 3, "value": "gpt", "focused": True}],
        }
    ]
    interaction = await discord_fake.interact("model", options, user_id=ALICE, kind=4)
    await eventually(lambda: interaction.callbacks, "the autocomplete answer")
    (callback,) = interaction.callbacks
    assert callback["type"] == 8
    values = [c["value"] for c in callback["data"]["choices"]]
    assert values[0] == "openrouter/openai/gpt-4o-mini"
    assert set(values) == {"openrouter/openai/gpt-4o-mini", "openrouter/openai/gpt-4o"}
    assert len(values) <= 25


async def test_model_show_is_ephemeral(harness: Factory, discord_fake: FakeDiscord) -> None:
    await harness()
    interaction = await discord_fake.interact("model", subcommand("show"), user_id=ALICE)
    data = await answered(interaction)
    assert data["flags"] & EPHEMERAL
    fields = {f["name"]: f["value"] for f in data["embeds"][0]["fields"]}
    assert fields["Model"] == "openrouter/openai/gpt-4o-mini (default)"


async def test_model_set_needs_manage_channels(harness: Factory, discord_fake: FakeDiscord) -> None:
    h = await harness()
    options = subcommand("set", model="anthropic/claude-sonnet-4")
    interaction = await discord_fake.interact("model", options, user_id=ALICE)
    data = await answered(interaction)
    assert data["flags"] & EPHEMERAL
    assert "Only this channel's or workspace's admins" in data["embeds"][0]["description"]
    assert await h.store.get_settings(ChannelKey("discord", GUILD_ID, CHANNEL_ID)) == {}


async def test_model_set_with_manage_channels_is_announced(
    harness: Factory, discord_fake: FakeDiscord, fake: FakeOpenRouter
) -> None:
    h = await harness()
    options = subcommand("set", model="anthropic/claude-sonnet-4")
    interaction = await discord_fake.interact(
        "model", options, user_id=BOB, permissions=MANAGE_CHANNELS
    )
    data = await answered(interaction)
    assert not data.get("flags", 0) & EPHEMERAL
    assert data["content"] == (
        f"<@{BOB}> set this channel's model to openrouter/anthropic/claude-sonnet-4."
    )
    assert data["allowed_mentions"]["parse"] == []
    key = ChannelKey("discord", GUILD_ID, CHANNEL_ID)
    assert await h.store.get_settings(key) == {"model": "openrouter/anthropic/claude-sonnet-4"}


async def test_a_slow_command_is_deferred_then_answered(
    harness: Factory, discord_fake: FakeDiscord, fake: FakeOpenRouter
) -> None:
    await harness()
    fake.models_delay_s = 2.5  # past the bot's 2 s: it defers, as Discord allows 3 s
    interaction = await discord_fake.interact(
        "model", subcommand("list", query="claude"), user_id=ALICE
    )
    data = await answered(interaction)
    assert interaction.callbacks[0]["type"] == 5
    assert "claude-sonnet-4" in data["embeds"][0]["description"]


async def test_credits(harness: Factory, discord_fake: FakeDiscord) -> None:
    await harness()
    interaction = await discord_fake.interact("credits", user_id=ALICE)
    data = await answered(interaction)
    assert data["flags"] & EPHEMERAL
    embed = data["embeds"][0]
    assert embed["title"] == "OpenRouter credits"
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Balance"].startswith("$74.50")


async def test_the_token_stays_out_of_reprs(harness: Factory) -> None:
    h = await harness()
    assert TOKEN not in repr(h.bot) + repr(h.settings)
