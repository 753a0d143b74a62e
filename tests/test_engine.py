"""The conversation engine through the fake OpenRouter, with a real SQLite store."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.config import load_settings
from bot.engine import (
    Attachment,
    Cancelled,
    Conversation,
    Delta,
    Engine,
    Failed,
    Final,
    Notice,
    ReplyEvent,
    Started,
    ToolFinished,
    ToolStarted,
    Turn,
)
from bot.openrouter import OpenRouterClient
from bot.store import Store
from bot.tools import FunctionTool, ToolContext, ToolRegistry
from tests.fakes.openrouter import FakeOpenRouter, Reply

HERE = Conversation("slack", "T1", "C1", "1700000000.000100")
KEY = HERE.key


class Recorder:
    """A sink that keeps every event, and can wait for one."""

    def __init__(self, changed: asyncio.Event | None = None) -> None:
        self.events: list[ReplyEvent] = []
        # Shared by several recorders, it tells a test that any of them got an event.
        self.changed = changed or asyncio.Event()

    async def emit(self, event: ReplyEvent) -> None:
        self.events.append(event)
        self.changed.set()

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    @property
    def text(self) -> str:
        return "".join(e.text for e in self.of(Delta))

    async def wait_for(self, kind: type[Any]) -> None:
        async def until() -> None:
            while not self.of(kind):
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(until(), timeout=10)


def barrier_tool(parties: int, contexts: list[ToolContext] | None = None) -> FunctionTool:
    """A test tool: every call waits until `parties` calls are running at once."""
    barrier = asyncio.Barrier(parties)

    async def meet(ctx: ToolContext, who: str) -> str:
        """Waits for the other calls of the round, then says who came.

        Args:
            who: the name to report.
        """
        if contexts is not None:
            contexts.append(ctx)
        # Deadlocks (and fails on the timeout) unless the calls run concurrently.
        await asyncio.wait_for(barrier.wait(), timeout=5)
        return f"{who} is here"

    return FunctionTool(meet, activity=lambda a: f"Meeting {a['who']}")


async def broken(ctx: ToolContext) -> str:
    """Always fails."""
    raise RuntimeError("disk on fire at /srv/secret/path")


def engine_for(
    client: OpenRouterClient, store: Store, tools: ToolRegistry | None = None, **settings: Any
) -> Engine:
    return Engine(client, store, load_settings(**settings), tools)


def turn(name: str, text: str, **kw: Any) -> Turn:
    return Turn(author_id=f"U-{name}", author_name=name, text=text, **kw)


async def test_multi_turn_conversation_with_attributed_turns(
    fake: FakeOpenRouter, client: OpenRouterClient, store: Store
) -> None:
    fake.script("openai/gpt-4o-mini", Reply(text="Tuesday works for both of you."))
    engine = engine_for(client, store, system_prompt="Be brief.")
    turns = [
        turn("alice", "Can we meet Tuesday?"),
        Turn("B1", "routerbot", "Let me check.", from_bot=True),
        turn("bob", "Tuesday is fine for me"),
    ]
    sink = Recorder()
    final = await engine.reply(HERE, turns, sink, user_id="U-bob")
    assert final is not None
    assert final.text == sink.text == "Tuesday works for both of you."
    sent = fake.chat_requests()[0].body["messages"]
    assert sent == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "alice: Can we meet Tuesday?"},
        {"role": "assistant", "content": "Let me check."},
        {"role": "user", "content": "bob: Tuesday is fine for me"},
    ]
    assert isinstance(sink.events[0], Started)
    assert sink.events[0].model == "openrouter/openai/gpt-4o-mini"
    assert isinstance(sink.events[-1], Final)
    assert final.generation_id is not None
    assert final.usage.completion_tokens == 6
    assert final.cost is not None
    # One ledger row for the reply.
    spent, replies = await store.spend(KEY, 0)
    assert replies == 1
    assert spent == pytest.approx(final.cost)


async def test_images_go_to_models_that_take_them(
    fake: FakeOpenRouter, client: OpenRouterClient, store: Store
) -> None:
    engine = engine_for(client, store)
    picture = Attachment("chart.png", "image/png", data=b"\x89PNG")
    await engine.reply(
        HERE,
        [turn("alice", "what is this?", attachments=(picture,))],
        Recorder(),
        user_id="U-alice",
    )
    content = fake.chat_requests()[0].body["messages"][-1]["content"]
    assert content[0] == {"type": "text", "text": "alice: what is this?"}
    assert content[1]["image_url"]["url"] == "data:image/png;base64,iVBORw=="


async def test_images_are_left_out_with_a_notice(
    fake: FakeOpenRouter, client: OpenRouterClient, store: Store
) -> None:
    engine = engine_for(client, store, default_model="openrouter/z-ai/glm-4.7")
    picture = Attachment("chart.png", "image/png", url="https://files.example/chart.png")
    sink = Recorder()
    await engine.reply(HERE, [turn("alice", "see", attachments=(picture,))], sink, user_id="U-a")
    assert fake.chat_requests()[0].body["messages"][-1]["content"] == "alice: see"
    assert [n.text for n in sink.of(Notice)] == [
        "Left out 1 image(s): openrouter/z-ai/glm-4.7 does not take images."
    ]


# -- context window ---------------------------------------------------------------------


async def test_oldest_turns_are_dropped_for_a_small_context(
    fake: FakeOpenRouter, client: OpenRouterClient, store: Store
) -> None:
    engine = engine_for(client, store, default_model="openrouter/tiny/short-context")
    turns = [turn("alice", f"message {i}: " + "words " * 30) for i in range(10)]
    sink = Recorder()
    final = await engine.reply(HERE, turns, sink, user_id="U-alice")
    assert final is not None
    sent = fake.chat_requests()[0].body["messages"]
    assert sent[0]["role"] == "system"
    assert sent[-1]["content"].startswith("alice: message 9:")
    assert 2 <= len(sent) < 11
    dropped = 11 - len(sent)
    assert [n.text for n in sink.of(Notice)] == [
        f"Left out the {dropped} oldest message(s) to fit the model."
    ]


async def test_a_context_error_trims_harder_and_retries_once(
    fake: FakeOpenRouter, client: OpenRouterClient, store: Store
) -> None:
    message = "This endpoint's maximum context length is 128000 tokens."
    fake.script(
        "openai/gpt-4o-mini", Reply(text="ok", fail_status=400, fail_times=1, fail_message=message)
    )
    engine = engine_for(client, store)
    turns = [turn("alice", f"line {i}") for i in range(8)]
    sink = Recorder()
    final = await engine.reply(HERE, turns, sink, user_id="U-alice")
    assert final is not None
    assert final.text == "ok"
    first, second = (r.body["messages"] for r in fake.chat_requests())
    assert len(first) == 9
    assert len(second) == 5
    assert second[-1]["content"] == "alice: line 7"
    assert "Left out more old messages to fit the model." in [n.text for n in sink.of(Notice)]


async def test_a_context_error_twice_is_reported(
    fake: FakeOpenRouter, client: OpenRouterClient, store: Store
) -> None:
    message = "This endpoint's maximum context length is 128000 tokens."
    fake.script("openai/gpt-4o-mini", Reply(fail_status=400, fail_message=message))
    sink = Recorder()
    turns = [turn("alice", f"line {i}") for i in range(4)]
    assert await engine_for(client, store).reply(HERE, turns, sink, user_id="U-a") is None
    (failed,) = sink.of(Failed)
    assert failed.kind == "context_too_long"
    assert len(fake.chat_requests()) == 2


async def test_a_single_turn_too_long_gets_a_clear_message(
    fake: FakeOpenRouter, client: OpenRouterClient, store: Store
) -> None:
    engine = engine_for(client, store, default_model="openrouter/tiny/short-context")
    sink = Recorder()
    assert await engine.reply(HERE, [turn("alice", "x" * 5000)], sink, user_id="U-a") is None
    (failed,) = sink.of(Failed)
    assert failed.message.startswith("This message is too long for the model")
    assert "Shorten it" in failed.message
    assert fake.chat_requests() == []


# -- tools ------------------------------------------------------------------------------


def two_calls_then_answer(body: dict[str, Any]) -> Reply:
    tool_results = [m for m in body["messages"] if m["role"] == "tool"]
    if tool_results:
        return Reply(text=" and ".join(m["content"] for m in tool_results))
    return Reply(
        text="Checking.",
        tool_calls=[
            {"name": "meet", "arguments": {"who": "alice"}},
            {"name": "meet", "arguments": {"who": "bob"}},
        ],
    )


async def test_tool_loop_runs_one_rounds_calls_concurrently(
    fake: FakeOpenRouter, client: OpenRouterClient, store: Store
) -> None:
    fake.script("openai/gpt-4o-mini", two_calls_then_answer)
    contexts: list[ToolContext] = []
    engine = engine_for(client, store, ToolRegistry([barrier_tool(2, contexts)]))
    await store.update_settings(KEY, {"tools": ["meet"]}, by="admin")
    sink = Recorder()
    final = await engine.reply(HERE, [turn("carol", "who is here?")], sink, user_id="U-carol")
    assert final is not None
    assert final.text == "Checking.\n\nalice is here and bob is here"
    assert sink.text == final.text
    started = sink.of(ToolStarted)
    assert [(s.name, s.summary) for s in started] == [("meet", "who=alice"), ("meet", "who=bob")]
    assert [s.activity for s in started] == ["Meeting alice", "Meeting bob"]
    assert all(f.ok for f in sink.of(ToolFinished))
    assert {c.thread for c in contexts} == {HERE.thread}
    assert contexts[0].workspace.root.parts[-4:] == ("workspaces", "slack", "C1", HERE.thread)
    second = fake.chat_requests()[1].body
    assert second["tools"][0]["function"]["name"] == "meet"
    assistant = second["messages"][-3]
    assert [c["function"]["arguments"] for c in assistant["tool_calls"]] == [
        '{"who": "alice"}',
        '{"who": "bob"}',
    ]
    assert final.usage.completion_tokens > 0
    _, replies = await store.spend(KEY, 0)
    assert replies == 1


async def test_tool_failures_go_back_to_the_model(
    fake: FakeOpenRouter, client: OpenRouterClient, store: Store
) -> None:
    def script(body: dict[str, Any]) -> Reply:
        results = [m["content"] for m in body["messages"] if m["role"] == "tool"]
        if results:
            return Reply(text=" | ".join(results))
        return Reply(
            text="",
            tool_calls=[{"name": "broken"}, {"name": "nope"}, {"name": "meet", "arguments": {}}],
        )

    fake.script("openai/gpt-4o-mini", script)
    engine = engine_for(client, store, ToolRegistry([FunctionTool(broken), barrier_tool(1)]))
    await store.update_settings(KEY, {"tools": ["broken", "meet"]}, by="admin")
    sink = Recorder()
    final = await engine.reply(HERE, [turn("a", "go")], sink, user_id="U-a")
    assert final is not None
    assert final.text == (
        "Error: broken failed unexpectedly (RuntimeError) | "
        "Error: there is no tool named 'nope'; available: broken, meet | "
        "Error: invalid arguments (who: Field required)"
    )
    assert [f.ok for f in sink.of(ToolFinished)] == [False, False, False]


async def test_tool_rounds_are_bounded(
    fake: FakeOpenRouter, client: OpenRouterClient, store: Store
) -> None:
    fake.script(
        "openai/gpt-4o-mini",
        Reply(text="", tool_calls=[{"name": "meet", "arguments": {"who": "x"}}]),
    )
    engine = engine_for(client, store, ToolRegistry([barrier_tool(1)]), max_tool_rounds=3)
    await store.update_settings(KEY, {"tools": ["meet"]}, by="admin")
    sink = Recorder()
    final = await engine.reply(HERE, [turn("a", "loop forever")], sink, user_id="U-a")
    assert final is not None
    assert len(fake.chat_requests()) == 4
    assert len(sink.of(ToolStarted)) == 3
    assert final.notices[-1].startswith("Stopped after 3 rounds of tool calls")


async def test_tools_are_off_for_a_model_without_tool_use(
    fake: FakeOpenRouter, client: OpenRouterClient, store: Store
) -> None:
    engine = engine_for(client, store, ToolRegistry([barrier_tool(1)]))
    await store.update_settings(
        KEY, {"tools": ["meet"], "model": "openrouter/mistralai/mistral-small"}, by="admin"
    )
    sink = Recorder()
    assert await engine.reply(HERE, [turn("a", "hi")], sink, user_id="U-a") is not None
    assert "tools" not in fake.chat_requests()[0].body
    assert "Tools are off" in sink.of(Notice)[0].text


# -- fallbacks, errors, cancellation ----------------------------------------------------


async def test_a_fallback_is_used_and_reported(
    fake: FakeOpenRouter, client: OpenRouterClient, store: Store
) -> None:
    fake.script("openai/gpt-4o-mini", Reply(fail_status=503))
    fake.script("z-ai/glm-4.7", Reply(text="from the fallback"))
    await store.update_settings(KEY, {"fallbacks": ["openrouter/z-ai/glm-4.7"]}, by="admin")
    sink = Recorder()
    final = await engine_for(client, store).reply(HERE, [turn("a", "hi")], sink, user_id="U-a")
    assert final is not None
    assert final.model == "z-ai/glm-4.7"
    assert [p.model for p in final.passed_over] == ["openai/gpt-4o-mini"]


async def test_errors_reach_the_sink_as_plain_messages(
    fake: FakeOpenRouter, client: OpenRouterClient, store: Store
) -> None:
    fake.script("openai/gpt-4o-mini", Reply(text="one two three four", error_after=2))
    sink = Recorder()
    assert (
        await engine_for(client, store).reply(HERE, [turn("a", "hi")], sink, user_id="U-a") is None
    )
    (failed,) = sink.of(Failed)
    assert failed.kind == "provider_unavailable"
    assert failed.partial_text == "one two "
    assert "Try again" in failed.message


async def test_a_newer_message_supersedes_the_reply(
    fake: FakeOpenRouter, client: OpenRouterClient, store: Store
) -> None:
    fake.script("openai/gpt-4o-mini", Reply(text="slow " * 50, tokens_per_s=20))
    engine = engine_for(client, store)
    first = Recorder()
    task = asyncio.create_task(engine.reply(HERE, [turn("a", "one")], first, user_id="U-a"))
    await first.wait_for(Delta)
    fake.script("openai/gpt-4o-mini", Reply(text="fresh"))
    second = Recorder()
    final = await engine.reply(HERE, [turn("a", "one"), turn("a", "two")], second, user_id="U-a")
    with pytest.raises(asyncio.CancelledError):
        await task
    assert first.of(Cancelled)
    assert final is not None
    assert final.text == "fresh"
    assert engine.cancel(HERE) is False  # nothing left running


@pytest.mark.parametrize(
    ("reply", "note"),
    [
        (Reply(text=""), "The model sent an empty answer."),
        (Reply(text="cut", finish_reason="length"), "The answer was cut off"),
        (Reply(text="", finish_reason="content_filter"), "content filter stopped the answer"),
    ],
)
async def test_unusual_endings_are_explained(
    fake: FakeOpenRouter, client: OpenRouterClient, store: Store, reply: Reply, note: str
) -> None:
    fake.script("openai/gpt-4o-mini", reply)
    sink = Recorder()
    final = await engine_for(client, store).reply(HERE, [turn("a", "hi")], sink, user_id="U-a")
    assert final is not None
    assert note in final.notices[-1]
    assert note in sink.of(Notice)[-1].text
