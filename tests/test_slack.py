"""The Slack adapter end to end: the real slack-bolt app behind its real HTTP endpoint
(and Socket Mode), signed requests from the fake Slack, the real AsyncWebClient writing
back to it, and the fake OpenRouter answering."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from adapters.pacing import SLACK_LIMITS, Pacer
from adapters.serve import Server
from adapters.slack import SlackBot
from bot.config import Settings, load_settings
from bot.engine import Engine
from bot.openrouter import OpenRouterClient
from bot.store import ChannelKey, Store
from bot.tools import build_toolbox
from tests.conftest import make_client
from tests.fakes.openrouter import TEST_KEY, FakeOpenRouter, Reply
from tests.fakes.slack import (
    APP_TOKEN,
    BOT_TOKEN,
    BOT_USER_ID,
    SIGNING_SECRET,
    TEAM_ID,
    FakeSlack,
    Message,
    Tier,
)
from tests.waiting import eventually

MODEL = "openai/gpt-4o-mini"
MENTION = f"<@{BOT_USER_ID}>"
# Slack's budgets over windows a hundred times shorter, so tests take milliseconds.
FAST = {method: (calls, window / 100) for method, (calls, window) in SLACK_LIMITS.items()}


@dataclass
class Harness:
    fake: FakeOpenRouter
    slack: FakeSlack
    bot: SlackBot
    store: Store
    settings: Settings

    async def reply_to(self, channel: str, thread_ts: str, count: int = 1) -> list[Message]:
        """Waits until the bot's reply in a thread is finished; returns its messages."""

        def finished() -> bool:
            replies = self.slack.replies_to(channel, thread_ts)
            return (
                self.bot.outcomes["answered"] >= count
                and not self.bot.replying
                and bool(replies)
                and not any(m.streaming for m in replies)
            )

        await eventually(finished, "the bot's reply")
        return self.slack.replies_to(channel, thread_ts)

    async def quiet(self) -> None:
        """Waits until every delivered event has been decided and every reply is done."""
        await self.slack.settled()
        await eventually(
            lambda: (
                sum(self.bot.outcomes.values()) >= len(self.slack.deliveries)
                and not self.bot.replying
            ),
            "the bot to decide on every event",
        )
        await self.bot.idle()


Factory = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(max_text=4_000) as fake_slack:
        fake_slack.add_user("U1", "Alice")
        fake_slack.add_user("U2", "Bob")
        fake_slack.add_user("UADMIN", "Olga", admin=True)
        yield fake_slack


@pytest.fixture
async def harness(fake: FakeOpenRouter, slack: FakeSlack, tmp_path: Path) -> AsyncIterator[Factory]:
    """Builds the bot as `routerbot serve` does, with HTTP events (or Socket Mode)."""
    opened: list[Any] = []

    async def build(
        *, socket_mode: bool = False, on: FakeSlack | None = None, **overrides: Any
    ) -> Harness:
        """`on`: another fake Slack than the fixture's (one that refuses streaming, ...)."""
        target = on or slack
        options: dict[str, Any] = {
            "openrouter_api_key": TEST_KEY,
            "openrouter_base_url": fake.url,
            "slack_bot_token": BOT_TOKEN,
            "slack_api_base_url": target.api_url,
            "data_dir": tmp_path / "data",
        }
        options["slack_app_token" if socket_mode else "slack_signing_secret"] = (
            APP_TOKEN if socket_mode else SIGNING_SECRET
        )
        options.update(overrides)
        settings = load_settings(**options)
        store = await Store.open(settings.database_path)
        client: OpenRouterClient = make_client(fake, max_retries=0)
        toolbox = await build_toolbox(settings, store, client)
        engine = Engine(client, store, settings, toolbox.registry)
        bot = SlackBot(engine, settings, pacer=Pacer(FAST))
        server = Server(engine, bot)
        opened.extend([server, bot, toolbox, client, store])
        if socket_mode:
            await server.start("127.0.0.1", 0)
            await bot.start_socket_mode()
            await target.wait_for_socket()
        else:
            target.events_url = await server.start("127.0.0.1", 0) + "/slack/events"
        return Harness(fake, target, bot, store, settings)

    yield build
    for thing in opened:
        if isinstance(thing, Server):
            await thing.stop()
        elif isinstance(thing, SlackBot):
            await thing.aclose()
        elif isinstance(thing, Store):
            await thing.close()
        else:
            await thing.aclose()


@asynccontextmanager
async def other_slack(**options: Any) -> AsyncIterator[FakeSlack]:
    """A fake Slack set up differently from the fixture's, with Alice in it."""
    async with FakeSlack(max_text=4_000, **options) as other:
        other.add_user("U1", "Alice")
        yield other


def chat_bodies(fake: FakeOpenRouter) -> list[dict[str, Any]]:
    return [r.body for r in fake.chat_requests()]


# -- conversations ---------------------------------------------------------------------


async def test_a_mention_is_answered_in_its_thread_with_streamed_text(
    harness: Factory, slack: FakeSlack, fake: FakeOpenRouter
) -> None:
    h = await harness()
    answer = "Paris is the capital of France. " * 12
    # About 0.7 s of streaming: appends go out at most every 0.25 s.
    fake.script(MODEL, Reply(text=answer.strip(), tokens_per_s=100))
    ts = await slack.say("U1", "C1", f"{MENTION} what is the capital of France?")
    (message,) = await h.reply_to("C1", ts)
    assert message.thread_ts == ts
    assert message.text == answer.strip()
    assert message.footer() == ["openrouter/openai/gpt-4o-mini"]
    appends = [c for c in slack.calls if c.method == "chat.appendStream"]
    assert len(appends) >= 2, "the text arrived in several pieces as it streamed"
    assert slack.count("chat.startStream") == 1
    start = next(c for c in slack.calls if c.method == "chat.startStream")
    assert start.params["recipient_user_id"] == "U1"
    assert start.params["recipient_team_id"] == TEAM_ID
    # The model saw the question by the asker's name, without the bot's mention.
    (body,) = chat_bodies(fake)
    assert body["messages"][-1] == {
        "role": "user",
        "content": "Alice: what is the capital of France?",
    }
    # Slack sent app_mention and message for the one mention: one answer.
    await h.quiet()
    assert len(slack.replies_to("C1", ts)) == 1
    assert h.bot.outcomes["answered"] == 1


async def test_without_streaming_the_answer_is_posted_then_edited(
    harness: Factory, fake: FakeOpenRouter
) -> None:
    async with other_slack(streaming=False) as old_slack:
        h = await harness(on=old_slack)
        text = "One. " * 60
        fake.script(MODEL, Reply(text=text.strip(), tokens_per_s=300))
        ts = await old_slack.say("U1", "C1", f"{MENTION} count")
        (message,) = await h.reply_to("C1", ts)
        assert message.text == text.strip()
        first = next(c for c in old_slack.calls if c.method == "chat.postMessage")
        assert first.params["text"] == "_Thinking…_", "a placeholder appears at once"
        assert message.edits >= 2
        assert message.footer() == ["openrouter/openai/gpt-4o-mini"]
        assert message.blocks[0] == {"type": "markdown", "text": text.strip()}
        # The workspace refused streaming once; the next reply does not ask again.
        fake.script(MODEL, Reply(text="Again."))
        again = await old_slack.say("U1", "C1", f"{MENTION} again")
        await h.reply_to("C1", again, count=2)
        assert old_slack.count("chat.startStream") == 1


async def test_a_follow_up_in_the_thread_needs_no_mention(
    harness: Factory, slack: FakeSlack, fake: FakeOpenRouter
) -> None:
    h = await harness()
    fake.script(MODEL, Reply(text="It is 42."))
    root = await slack.say("U1", "C1", f"{MENTION} what is the answer?")
    await h.reply_to("C1", root)
    fake.script(MODEL, Reply(text="Because Deep Thought said so."))
    await slack.say("U2", "C1", "why that number?", thread_ts=root)
    replies = await h.reply_to("C1", root, count=2)
    assert [m.text for m in replies] == ["It is 42.", "Because Deep Thought said so."]
    # The model got the thread: both people by name, and its own earlier answer.
    messages = chat_bodies(fake)[-1]["messages"]
    assert messages[-3:] == [
        {"role": "user", "content": "Alice: what is the answer?"},
        {"role": "assistant", "content": "It is 42."},
        {"role": "user", "content": "Bob: why that number?"},
    ]
    assert slack.count("conversations.replies") == 0, "the thread came from events alone"


async def test_a_thread_the_bot_is_not_in_stays_quiet(
    harness: Factory, slack: FakeSlack, fake: FakeOpenRouter
) -> None:
    h = await harness()
    root = await slack.say("U1", "C1", "lunch?")
    await slack.say("U2", "C1", "yes, noon", thread_ts=root)
    await h.quiet()
    assert h.bot.outcomes == {"ignored": 2}
    assert not fake.chat_requests()
    assert not slack.replies_to("C1", root)


async def test_following_threads_can_be_turned_off(
    harness: Factory, slack: FakeSlack, fake: FakeOpenRouter
) -> None:
    h = await harness(slack_follow_threads=False)
    root = await slack.say("U1", "C1", f"{MENTION} hi")
    await h.reply_to("C1", root)
    await slack.say("U1", "C1", "thanks!", thread_ts=root)
    await h.quiet()
    assert len(slack.replies_to("C1", root)) == 1
    assert len(fake.chat_requests()) == 1


async def test_a_mention_inside_an_old_thread_reads_the_thread_once(
    harness: Factory, slack: FakeSlack, fake: FakeOpenRouter
) -> None:
    h = await harness()
    root = slack.add_message("C1", "the deploy failed again", user="U1")
    for i in range(5):
        slack.add_message("C1", f"log line {i}", user="U2", thread_ts=root)
    fake.script(MODEL, Reply(text="Looks like a disk problem."))
    await slack.say("U1", "C1", f"{MENTION} what do you make of it?", thread_ts=root)
    await h.reply_to("C1", root)
    contents = [m["content"] for m in chat_bodies(fake)[-1]["messages"]]
    assert contents[-7:] == [
        "Alice: the deploy failed again",
        *[f"Bob: log line {i}" for i in range(5)],
        "Alice: what do you make of it?",
    ]
    fake.script(MODEL, Reply(text="Free some space."))
    await slack.say("U2", "C1", "and the fix?", thread_ts=root)
    await h.reply_to("C1", root, count=2)
    assert slack.count("conversations.replies") == 1
    assert slack.count("users.info") == 2, "each person's name is fetched once"


async def test_a_long_thread_is_read_page_by_page(
    harness: Factory, slack: FakeSlack, fake: FakeOpenRouter
) -> None:
    h = await harness()
    root = slack.add_message("C1", "incident channel", user="U1")
    for i in range(250):
        slack.add_message("C1", f"update {i}", user="U2", thread_ts=root)
    fake.script(MODEL, Reply(text="Summary."))
    await slack.say("U1", "C1", f"{MENTION} summarise", thread_ts=root)
    await h.reply_to("C1", root)
    pages = [c for c in slack.calls if c.method == "conversations.replies"]
    assert len(pages) == 2
    assert pages[1].params["cursor"] == pages[0].params["limit"]
    contents = [m["content"] for m in chat_bodies(fake)[0]["messages"]]
    assert contents[1] == "Alice: incident channel"
    assert contents[-2:] == ["Bob: update 249", "Alice: summarise"]


async def test_a_direct_message_is_answered(
    harness: Factory, slack: FakeSlack, fake: FakeOpenRouter
) -> None:
    h = await harness()
    fake.script(MODEL, Reply(text="Hello, Alice."))
    ts = await slack.say("U1", "D1", "hello there", channel_type="im")
    (message,) = await h.reply_to("D1", ts)
    assert message.text == "Hello, Alice."
    fake.script(MODEL, Reply(text="Still here."))
    await slack.say("U1", "D1", "you there?", thread_ts=ts, channel_type="im")
    await h.reply_to("D1", ts, count=2)


async def test_the_bots_own_messages_and_edits_are_ignored(
    harness: Factory, fake: FakeOpenRouter
) -> None:
    async with other_slack(streaming=False) as edit_slack:
        h = await harness(on=edit_slack)
        # An answer that even mentions the bot: its echo must not start a loop.
        fake.script(MODEL, Reply(text=f"Ask {MENTION} anything. " * 20, tokens_per_s=500))
        ts = await edit_slack.say("U1", "C1", f"{MENTION} introduce yourself")
        await h.reply_to("C1", ts)
        await h.quiet()
        events = [envelope["event"] for envelope, _ in edit_slack.deliveries]
        assert any(e.get("bot_id") for e in events), "Slack echoed the bot's post"
        assert any(e.get("subtype") == "message_changed" for e in events), "... and edits"
        assert len(fake.chat_requests()) == 1
        assert h.bot.outcomes["answered"] == 1


# -- delivery --------------------------------------------------------------------------


async def test_a_retried_event_is_answered_once_even_after_a_restart(
    harness: Factory, slack: FakeSlack, fake: FakeOpenRouter
) -> None:
    h = await harness()
    ts = slack.add_message("C1", f"{MENTION} hello", user="U1")
    event = {"type": "app_mention", "channel": "C1", "user": "U1", "text": f"{MENTION} hello"}
    envelope = slack.envelope({**event, "ts": ts, "event_ts": ts}, event_id="Ev0RETRY")
    assert await slack.deliver(envelope) == 200
    assert await slack.deliver(envelope, retry_num=1) == 200
    assert await slack.deliver(envelope, retry_num=2) == 200
    await h.reply_to("C1", ts)
    await h.quiet()
    assert (h.bot.outcomes["answered"], h.bot.outcomes["duplicate"]) == (1, 2)
    # A new process on the same database still knows the event.
    again = await harness()
    assert await slack.deliver(envelope, retry_num=3) == 200
    await eventually(lambda: again.bot.outcomes["duplicate"] == 1, "the new bot's decision")
    await again.bot.idle()
    assert again.bot.outcomes["answered"] == 0
    assert len(fake.chat_requests()) == 1
    assert len(slack.replies_to("C1", ts)) == 1


async def test_a_bad_signature_is_refused_and_nothing_is_answered(
    harness: Factory, slack: FakeSlack, fake: FakeOpenRouter
) -> None:
    h = await harness()
    ts = slack.add_message("C1", f"{MENTION} hello", user="U1")
    envelope = slack.envelope(
        {"type": "app_mention", "channel": "C1", "user": "U1", "text": "hi", "ts": ts}
    )
    assert await slack.deliver(envelope, secret="not-the-secret") == 401
    plain = slack.envelope(
        {"type": "message", "channel": "C1", "user": "U1", "text": "hi", "ts": ts,
         "channel_type": "channel"}
    )  # fmt: skip
    assert await slack.deliver(plain, secret="not-the-secret") == 401
    assert await slack.deliver(plain) == 200  # signed, and not for the bot
    stale = json.dumps(envelope)
    assert slack.events_url is not None
    headers = {
        "Content-Type": "application/json",
        **slack.signature_headers(stale, timestamp=1_000_000_000),  # signed long ago
    }
    async with slack.http().post(slack.events_url, data=stale, headers=headers) as response:
        assert response.status == 401
    status, _ = await slack.command("/model", "", user="U1", secret="wrong")
    assert status == 401
    assert h.bot.outcomes == {"ignored": 1}
    assert not fake.chat_requests()
    assert not slack.replies_to("C1", ts)
    assert not slack.responses


async def test_socket_mode_answers_a_mention(
    harness: Factory, slack: FakeSlack, fake: FakeOpenRouter
) -> None:
    h = await harness(socket_mode=True)
    assert slack.events_url is None
    open_calls = [c for c in slack.calls if c.method == "apps.connections.open"]
    assert len(open_calls) == 1, "apps.connections.open went to SLACK_API_BASE_URL"
    assert await h.bot.ready(), "/readyz counts the socket as connected"
    fake.script(MODEL, Reply(text="Over the socket."))
    ts = await slack.say("U1", "C1", f"{MENTION} are you there?")
    (message,) = await h.reply_to("C1", ts)
    assert message.text == "Over the socket."
    assert all(status == 200 for _, status in slack.deliveries), "every envelope was acked"


# -- long answers and rate limits ---------------------------------------------------------


def long_answer() -> str:
    """About 10,000 characters: paragraphs and a code block."""
    paragraphs = [f"Section {i}. " + "The quick brown fox jumps. " * 14 for i in range(20)]
    code = "\n".join(f"    total += step({i})  # line {i}" for i in range(120))
    text = "\n\n".join(paragraphs[:10]) + f"\n\n```python\n{code}\n```\n\n"
    return text + "\n\n".join(paragraphs[10:])


def words(text: str) -> list[str]:
    return [w for w in re.sub(r"```\w*", " ", text).split() if w]


@pytest.mark.parametrize("streaming", [True, False], ids=["streamed", "edited"])
async def test_a_10000_character_answer_arrives_whole_across_messages(
    harness: Factory, fake: FakeOpenRouter, streaming: bool
) -> None:
    answer = long_answer()
    assert len(answer) >= 10_000
    async with other_slack(streaming=streaming) as small:
        h = await harness(on=small)
        fake.script(MODEL, Reply(text=answer, tokens_per_s=4_000))
        ts = await small.say("U1", "C1", f"{MENTION} write a long report")
        messages = await h.reply_to("C1", ts)
        assert len(messages) >= 3
        assert all(len(m.text) <= 4_000 for m in messages)
        assert words("\n".join(m.text for m in messages)) == words(answer)
        for m in messages:  # every message renders on its own: fences balanced
            assert m.text.count("```") % 2 == 0, m.text[-200:]
        assert messages[-1].footer() == ["openrouter/openai/gpt-4o-mini"]
        assert all(not m.footer() for m in messages[:-1])


async def test_ratelimited_updates_still_end_with_the_whole_text(
    harness: Factory, fake: FakeOpenRouter
) -> None:
    async with other_slack(streaming=False) as strict:
        # Far stricter than Slack, and than the bot's own pacing: 429s are certain.
        strict.tiers["chat.update"] = Tier(3, 1.0)
        h = await harness(on=strict)
        answer = " ".join(f"word{i}" for i in range(400))
        fake.script(MODEL, Reply(text=answer, tokens_per_s=500))
        ts = await strict.say("U1", "C1", f"{MENTION} go")
        (message,) = await h.reply_to("C1", ts)
        limited = [c for c in strict.calls if c.error == "ratelimited"]
        assert limited, "Slack answered ratelimited at least once"
        counted = h.bot.engine.metrics.value(
            "routerbot_platform_rate_limited_total", platform="slack", method="chat.update"
        )
        assert counted == len(limited)
        assert message.text == answer
        # After a 429 the bot waited out Retry-After before the next update.
        first = limited[0]
        later = [
            c
            for c in strict.calls
            if c.method == "chat.update" and c.at > first.at and c.status == 200
        ]
        assert later
        assert later[0].at - first.at >= 0.9


# -- errors ------------------------------------------------------------------------------


async def test_an_upstream_failure_becomes_a_friendly_message(
    harness: Factory, slack: FakeSlack, fake: FakeOpenRouter
) -> None:
    h = await harness()
    fake.script(MODEL, Reply(fail_status=402, fail_message="Insufficient credits"))
    ts = await slack.say("U1", "C1", f"{MENTION} hello")
    (message,) = await h.reply_to("C1", ts)
    assert message.text.startswith("⚠️ ")
    assert "credits" in message.text
    assert "Traceback" not in message.text
    assert TEST_KEY not in message.text


async def test_a_model_that_fails_half_way_keeps_its_text_and_says_so(
    harness: Factory, slack: FakeSlack, fake: FakeOpenRouter
) -> None:
    h = await harness()
    fake.script(MODEL, Reply(text="one two three four five six", error_after=3))
    ts = await slack.say("U1", "C1", f"{MENTION} count")
    (message,) = await h.reply_to("C1", ts)
    body, _, error = message.text.partition("\n\n⚠️ ")
    assert body.split() == ["one", "two", "three"]
    assert error


async def test_model_output_cannot_ping_the_channel(
    harness: Factory, slack: FakeSlack, fake: FakeOpenRouter
) -> None:
    h = await harness()
    fake.script(MODEL, Reply(text="Attention <!channel> and <!here>: done."))
    ts = await slack.say("U1", "C1", f"{MENTION} announce it")
    (message,) = await h.reply_to("C1", ts)
    assert "<!channel>" not in message.text
    assert "<!here>" not in message.text
    assert message.text.replace("\u200b", "") == "Attention <!channel> and <!here>: done."


# -- files -------------------------------------------------------------------------------


async def test_a_file_attached_in_the_thread_is_read_by_a_tool(
    harness: Factory, slack: FakeSlack, fake: FakeOpenRouter
) -> None:
    h = await harness()
    log = slack.add_file("build.log", b"step 1 ok\nERROR: disk full on /var\nstep 3 skipped\n")

    def script(body: dict[str, Any]) -> Reply:
        results = [m["content"] for m in body["messages"] if m["role"] == "tool"]
        if results:
            return Reply(text="The log says: " + results[0].splitlines()[1])
        return Reply(text="", tool_calls=[{"name": "read", "arguments": {"path": "build.log"}}])

    fake.script(MODEL, script)
    ts = await slack.say("U1", "C1", f"{MENTION} what broke?", files=[log])
    (message,) = await h.reply_to("C1", ts)
    assert "ERROR: disk full on /var" in message.text
    assert slack.downloads == ["F0001"]
    first = chat_bodies(fake)[0]["messages"][-1]["content"]
    assert first.endswith("(attached, in the workspace: build.log)")
    assert message.tasks, "the tool's activity showed as a task in the stream"
    assert [status for _, status in message.tasks.values()] == ["complete"]


async def test_files_are_fetched_from_slack_only_and_within_the_size_cap(
    harness: Factory, slack: FakeSlack, fake: FakeOpenRouter
) -> None:
    h = await harness(max_attachment_mb=0.001)
    big = slack.add_file("dump.bin", b"x" * 5_000, "application/octet-stream")
    elsewhere = dict(slack.add_file("notes.txt", b"hi"), url_private="http://10.0.0.1/notes.txt")
    elsewhere["url_private_download"] = elsewhere["url_private"]
    fake.script(MODEL, Reply(text="Noted."))
    ts = await slack.say("U1", "C1", f"{MENTION} look", files=[big, elsewhere])
    await h.reply_to("C1", ts)
    assert slack.downloads == []
    content = chat_bodies(fake)[0]["messages"][-1]["content"]
    assert "dump.bin is 0.0 MB, over the 0.001 MB" in content
    assert "could not download notes.txt" in content


# -- commands ----------------------------------------------------------------------------


def response_text(response: dict[str, Any]) -> str:
    return json.dumps(response["blocks"]) + response["text"]


async def test_model_shows_the_channels_settings_to_the_caller_alone(
    harness: Factory, slack: FakeSlack
) -> None:
    await harness()
    status, body = await slack.command("/model", "", user="U1")
    assert status == 200
    assert body == ""  # acknowledged at once; the answer follows through response_url
    await eventually(lambda: slack.responses, "the answer to /model")
    (_, response) = slack.responses[0]
    assert response["response_type"] == "ephemeral"
    assert response["blocks"][0]["type"] == "header"
    assert "openrouter/openai/gpt-4o-mini" in response_text(response)


async def test_model_set_is_refused_without_permission(harness: Factory, slack: FakeSlack) -> None:
    h = await harness()
    await slack.command("/model", "set anthropic/claude-sonnet-4", user="U1")
    await eventually(lambda: slack.responses, "the answer to /model set")
    (_, response) = slack.responses[0]
    assert response["response_type"] == "ephemeral"
    assert "Only this channel's or workspace's admins" in response_text(response)
    assert await h.store.get_settings(ChannelKey("slack", TEAM_ID, "C1")) == {}


@pytest.mark.parametrize("user", ["UADMIN", "U2"], ids=["workspace admin", "ROUTERBOT_ADMINS"])
async def test_model_set_by_an_admin_is_announced_in_the_channel(
    harness: Factory, slack: FakeSlack, fake: FakeOpenRouter, user: str
) -> None:
    h = await harness(admins="U2")
    await slack.command("/model", "set anthropic/claude-sonnet-4", user=user)
    await eventually(lambda: slack.responses, "the answer to /model set")
    (_, response) = slack.responses[0]
    assert response["response_type"] == "in_channel"
    assert response["text"].startswith(
        f"<@{user}> set this channel's model to openrouter/anthropic/claude-sonnet-4."
    )
    key = ChannelKey("slack", TEAM_ID, "C1")
    assert await h.store.get_settings(key) == {"model": "openrouter/anthropic/claude-sonnet-4"}
    # The next mention in that channel uses it.
    fake.script("anthropic/claude-sonnet-4", Reply(text="Sonnet here."))
    ts = await slack.say("U1", "C1", f"{MENTION} who are you?")
    (message,) = await h.reply_to("C1", ts)
    assert message.text == "Sonnet here."
    assert message.footer() == ["openrouter/anthropic/claude-sonnet-4"]


async def test_credits_warn_when_the_balance_is_low(
    harness: Factory, slack: FakeSlack, fake: FakeOpenRouter
) -> None:
    await harness(low_balance_usd=5.0)
    fake.key_data.update(limit=10, limit_remaining=2.5, usage=7.5)
    await slack.command("/credits", "", user="U1")
    await eventually(lambda: slack.responses, "the answer to /credits")
    (_, response) = slack.responses[0]
    text = response_text(response)
    assert "$2.50" in text
    assert "Warning: the balance is below $5.00" in text
    assert response["response_type"] == "ephemeral"


async def test_a_slow_command_is_acknowledged_before_it_is_answered(
    harness: Factory, slack: FakeSlack, fake: FakeOpenRouter
) -> None:
    await harness()
    fake.models_delay_s = 1.0  # the catalogue takes a second to come
    status, _ = await slack.command("/model", "list claude", user="U1")
    assert status == 200
    assert not slack.responses, "the ack came back before the slow part was done"
    await eventually(lambda: slack.responses, "the answer to /model list")
    assert "claude-sonnet-4" in response_text(slack.responses[0][1])


async def test_secrets_stay_out_of_reprs(harness: Factory) -> None:
    h = await harness()
    shown = repr(h.bot) + repr(h.settings)
    assert BOT_TOKEN not in shown
    assert SIGNING_SECRET not in shown


# -- what a reply shows while it runs -----------------------------------------------------


async def test_tool_activity_shows_under_the_text_while_tools_run(
    harness: Factory, fake: FakeOpenRouter
) -> None:
    async with other_slack(streaming=False) as edit_slack:
        h = await harness(on=edit_slack)
        notes = edit_slack.add_file("notes.txt", b"remember the milk\n")

        def script(body: dict[str, Any]) -> Reply:
            if any(m["role"] == "tool" for m in body["messages"]):
                return Reply(text="Milk.", ttft_s=0.3)  # time to show the activity line
            return Reply(text="", tool_calls=[{"name": "read", "arguments": {"path": "notes.txt"}}])

        fake.script(MODEL, script)
        ts = await edit_slack.say("U1", "C1", f"{MENTION} what did I note?", files=[notes])
        (message,) = await h.reply_to("C1", ts)
        shown = [str(c.params.get("text")) for c in edit_slack.calls if c.method == "chat.update"]
        assert "_Reading notes.txt: done_" in shown, "the activity line showed while it ran"
        assert message.text == "Milk.", "and is gone from the final answer"


async def test_a_dm_shows_the_thinking_status_and_channels_stop_asking(
    harness: Factory, slack: FakeSlack, fake: FakeOpenRouter
) -> None:
    h = await harness()
    fake.script(MODEL, Reply(text="Hi."))
    ts = await slack.say("U1", "D1", "hello", channel_type="im")
    await h.reply_to("D1", ts)
    (status,) = [c for c in slack.calls if c.method == "assistant.threads.setStatus"]
    assert status.params == {"channel_id": "D1", "thread_ts": ts, "status": "is thinking…"}
    for question in ("one", "two"):
        asked = await slack.say("U1", "C1", f"{MENTION} {question}")
        await h.reply_to("C1", asked, count=1 if question == "one" else 2)
    refused = [c for c in slack.calls if c.method == "assistant.threads.setStatus" and c.error]
    assert len(refused) == 1, "a refused status is not asked for again in that workspace"


async def test_the_footer_names_fallbacks_and_the_cost_when_asked(
    harness: Factory, slack: FakeSlack, fake: FakeOpenRouter
) -> None:
    h = await harness(show_cost=True, default_fallbacks="openrouter/anthropic/claude-haiku-4.5")
    fake.script(MODEL, Reply(fail_status=503))
    fake.script("anthropic/claude-haiku-4.5", Reply(text="Haiku answers."))
    ts = await slack.say("U1", "C1", f"{MENTION} hi")
    (message,) = await h.reply_to("C1", ts)
    (footer,) = message.footer()
    model, passed, cost = footer.split(" · ")
    assert model == "openrouter/anthropic/claude-haiku-4.5"
    assert passed == "passed over openrouter/openai/gpt-4o-mini"
    assert re.fullmatch(r"\$0\.0\d+", cost)


async def test_msg_too_long_is_answered_with_smaller_messages(
    harness: Factory, fake: FakeOpenRouter
) -> None:
    async with other_slack(streaming=False) as tight:
        tight.max_text = 2_000  # Slack's real limit turns out lower than the bot's
        h = await harness(on=tight)
        answer = "\n\n".join(f"Paragraph {i}. " + "lorem ipsum " * 25 for i in range(20))
        fake.script(MODEL, Reply(text=answer))
        ts = await tight.say("U1", "C1", f"{MENTION} long please")
        messages = await h.reply_to("C1", ts)
        assert any(c.error == "msg_too_long" for c in tight.calls)
        assert all(len(m.text) <= 2_000 for m in messages)
        assert words("\n".join(m.text for m in messages)) == words(answer)


async def test_an_image_goes_to_a_model_that_takes_images(
    harness: Factory, slack: FakeSlack, fake: FakeOpenRouter
) -> None:
    h = await harness()
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    picture = slack.add_file("chart.png", png, "image/png")
    fake.script(MODEL, Reply(text="A chart."))
    ts = await slack.say("U1", "C1", f"{MENTION} what is this?", files=[picture])
    await h.reply_to("C1", ts)
    content = chat_bodies(fake)[0]["messages"][-1]["content"]
    assert content[0] == {"type": "text", "text": "Alice: what is this?"}
    assert content[1]["image_url"]["url"].startswith("data:image/png;base64,")


# -- under load: the workspace's budgets -------------------------------------------------


async def test_when_the_update_budget_is_spent_the_final_text_is_posted_anew(
    harness: Factory, fake: FakeOpenRouter
) -> None:
    async with other_slack(streaming=False) as busy:
        h = await harness(on=busy)
        # One update a minute in this workspace: progress takes it, so the final text
        # cannot wait for the next.
        h.bot.api.pacer = Pacer({**FAST, "chat.update": (1, 60.0)})
        answer = " ".join(f"w{i}" for i in range(120))
        fake.script(MODEL, Reply(text=answer, tokens_per_s=300))
        ts = await busy.say("U1", "C1", f"{MENTION} go")
        await h.reply_to("C1", ts)
        await eventually(lambda: busy.count("chat.delete") == 1, "the stale message's removal")
        (message,) = busy.replies_to("C1", ts)
        assert message.text == answer
        assert message.footer() == ["openrouter/openai/gpt-4o-mini"]
        removed = [m for m in busy.thread("C1", ts) if m.deleted]
        assert len(removed) == 1
        partial = [text for _, text in removed[0].timeline if text][-1]
        assert answer.startswith(partial), "the removed message held the start of the answer"
        assert len(partial) < len(answer)


async def test_no_placeholder_when_the_update_budget_is_busy(
    harness: Factory, fake: FakeOpenRouter
) -> None:
    async with other_slack(streaming=False) as busy:
        h = await harness(on=busy)
        h.bot.api.pacer = Pacer({**FAST, "chat.update": (5, 60.0)})
        fake.script(MODEL, Reply(text="Straight to the point.", ttft_s=0.2))
        ts = await busy.say("U1", "C1", f"{MENTION} go")
        (message,) = await h.reply_to("C1", ts)
        # The first thing posted is the text itself, not a placeholder needing an update.
        assert [text for _, text in message.timeline] == ["Straight to the point."]
        assert busy.count("chat.update") == 0


async def test_when_the_stream_budget_is_spent_the_reply_edits(
    harness: Factory, slack: FakeSlack, fake: FakeOpenRouter
) -> None:
    h = await harness()
    h.bot.api.pacer = Pacer({**FAST, "chat.startStream": (1, 60.0)})
    fake.script(MODEL, Reply(text="First, streamed."))
    first = await slack.say("U1", "C1", f"{MENTION} one")
    await h.reply_to("C1", first)
    fake.script(MODEL, Reply(text="Second, posted."))
    second = await slack.say("U1", "C2", f"{MENTION} two")
    (message,) = await h.reply_to("C2", second, count=2)
    assert message.text == "Second, posted."
    assert slack.count("chat.startStream") == 1
    assert h.bot._abilities[TEAM_ID].streaming, "a spent budget is not a refusal"


async def test_images_held_for_threads_are_bounded(
    harness: Factory, slack: FakeSlack, fake: FakeOpenRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("adapters.slack.app.IMAGE_CACHE_BYTES", 3_000)
    h = await harness()
    fake.script(MODEL, Reply(text="A picture."))
    roots = []
    for channel in ("C1", "C2"):
        picture = slack.add_file("p.png", b"\x89PNG" + b"\x00" * 2_000, "image/png")
        roots.append(await slack.say("U1", channel, f"{MENTION} look", files=[picture]))
        await h.reply_to(channel, roots[-1], count=len(roots))
    # The first thread's image made room for the second's: asked again, the bot reads
    # that thread anew from Slack instead of from memory.
    await slack.say("U1", "C1", f"{MENTION} and now?", thread_ts=roots[0])
    await h.reply_to("C1", roots[0], count=3)
    assert slack.count("conversations.replies") == 1


async def test_at_most_ten_files_are_read_from_one_message(
    harness: Factory, slack: FakeSlack, fake: FakeOpenRouter
) -> None:
    h = await harness()
    files = [slack.add_file(f"f{i}.txt", f"file {i}".encode()) for i in range(12)]
    fake.script(MODEL, Reply(text="Many files."))
    ts = await slack.say("U1", "C1", f"{MENTION} read these", files=files)
    await h.reply_to("C1", ts)
    assert len(slack.downloads) == 10
    content = chat_bodies(fake)[0]["messages"][-1]["content"]
    assert "(f10.txt and the rest: the bot reads 10 files)" in content
