"""Chat completions through the real httpx client against the fake OpenRouter."""

from __future__ import annotations

from typing import Any

import pytest

from bot.openrouter import (
    ChatRequest,
    Completion,
    Done,
    FellBack,
    OpenRouterClient,
    OpenRouterError,
    StreamEvent,
    TextDelta,
)
from bot.openrouter.errors import ErrorKind
from tests.conftest import make_client
from tests.fakes.openrouter import TEST_KEY, FakeOpenRouter, Reply

HELLO = [{"role": "user", "content": "hello"}]


async def collect(client: OpenRouterClient, request: ChatRequest) -> list[StreamEvent]:
    return [event async for event in client.stream(request)]


def final(events: list[StreamEvent]) -> Completion:
    last = events[-1]
    assert isinstance(last, Done)
    return last.completion


def text_of(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


async def test_plain_completion(fake: FakeOpenRouter, client: OpenRouterClient) -> None:
    fake.script("openai/gpt-4o-mini", Reply(text="Plain answer."))
    done = await client.complete(ChatRequest(["openai/gpt-4o-mini"], HELLO))
    assert done.text == "Plain answer."
    assert done.model == "openai/gpt-4o-mini"
    assert done.finish_reason == "stop"
    assert done.generation_id is not None
    assert done.generation_id.startswith("gen-")
    assert done.usage is not None
    assert done.usage.completion_tokens == 2
    assert done.passed_over == []
    sent = fake.chat_requests()[0].body
    assert sent["stream"] is False
    assert sent["model"] == "openai/gpt-4o-mini"


async def test_stream_text_arrives_in_pieces_and_whole(
    fake: FakeOpenRouter, client: OpenRouterClient
) -> None:
    text = "one two three four five six"
    fake.script("openai/gpt-4o-mini", Reply(text=text, keepalives=3))
    events = await collect(client, ChatRequest(["openai/gpt-4o-mini"], HELLO))
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert len(deltas) == 6
    assert text_of(events) == text
    done = final(events)
    assert done.text == text
    assert done.usage is not None
    assert done.usage.completion_tokens == 6
    assert done.usage.cost is not None
    assert done.usage.cost > 0


async def test_usage_accepted_on_the_finish_chunk(
    fake: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake.script("openai/gpt-4o-mini", Reply(text="a b c", usage_on_finish_chunk=True))
    done = final(await collect(client, ChatRequest(["openai/gpt-4o-mini"], HELLO)))
    assert done.usage is not None
    assert done.usage.completion_tokens == 3


async def test_streamed_tool_calls_are_assembled_by_index(
    fake: FakeOpenRouter, client: OpenRouterClient
) -> None:
    calls = [
        {"name": "read", "arguments": {"path": "notes/log.txt", "limit": 20}},
        {"name": "todo", "arguments": ""},
    ]
    fake.script("openai/gpt-4o-mini", Reply(text="", tool_calls=calls))
    tools = [{"type": "function", "function": {"name": "read", "parameters": {}}}]
    done = final(await collect(client, ChatRequest(["openai/gpt-4o-mini"], HELLO, tools=tools)))
    assert done.finish_reason == "tool_calls"
    assert [c.name for c in done.tool_calls] == ["read", "todo"]
    assert done.tool_calls[0].arguments == {"path": "notes/log.txt", "limit": 20}
    assert done.tool_calls[0].id == "call_0_read"
    assert done.tool_calls[1].raw_arguments == ""
    assert done.tool_calls[1].arguments == {}


async def test_plain_tool_calls(fake: FakeOpenRouter, client: OpenRouterClient) -> None:
    fake.script("openai/gpt-4o-mini", Reply(text="", tool_calls=[{"name": "list"}]))
    done = await client.complete(ChatRequest(["openai/gpt-4o-mini"], HELLO))
    assert [(c.name, c.arguments) for c in done.tool_calls] == [("list", {})]


async def test_options_are_passed_through(fake: FakeOpenRouter, client: OpenRouterClient) -> None:
    tools = [{"type": "function", "function": {"name": "read", "parameters": {}}}]
    request = ChatRequest(
        ["openai/gpt-4o-mini"],
        HELLO,
        tools=tools,
        tool_choice="auto",
        parallel_tool_calls=False,
        provider={"sort": "throughput", "data_collection": "deny"},
        plugins=[{"id": "web"}],
        session_id="slack-T1-C1-123.456",
        reasoning={"effort": "low"},
        temperature=0.3,
        max_tokens=512,
    )
    await client.complete(request)
    sent = fake.chat_requests()[0].body
    assert sent["tools"] == tools
    assert sent["tool_choice"] == "auto"
    assert sent["parallel_tool_calls"] is False
    assert sent["provider"] == {"sort": "throughput", "data_collection": "deny"}
    assert sent["plugins"] == [{"id": "web"}]
    assert sent["session_id"] == "slack-T1-C1-123.456"
    assert sent["reasoning"] == {"effort": "low"}
    assert sent["temperature"] == 0.3
    assert sent["max_tokens"] == 512
    assert "models" not in sent


async def test_unset_options_are_left_out(fake: FakeOpenRouter, client: OpenRouterClient) -> None:
    await client.complete(ChatRequest(["openai/gpt-4o-mini"], HELLO))
    sent = fake.chat_requests()[0].body
    assert set(sent) == {"model", "messages", "stream"}


async def test_headers_carry_key_and_attribution(
    fake: FakeOpenRouter, client: OpenRouterClient
) -> None:
    await client.complete(ChatRequest(["openai/gpt-4o-mini"], HELLO))
    headers = fake.chat_requests()[0].headers
    assert headers["Authorization"] == f"Bearer {TEST_KEY}"
    assert headers["HTTP-Referer"] == "https://example.test/routerbot"
    assert headers["X-Title"] == "routerbot-tests"
    assert TEST_KEY not in repr(client)


# -- fallback chains --------------------------------------------------------------------

FIVE = [
    "openai/gpt-4o-mini",
    "openai/gpt-4o",
    "google/gemini-2.5-flash",
    "z-ai/glm-4.7",
    "anthropic/claude-haiku-4.5",
]


async def test_chain_of_five_where_four_fail(fake: FakeOpenRouter) -> None:
    for model in FIVE[:4]:
        fake.script(model, Reply(fail_status=503, fail_message=f"{model} is down"))
    fake.script(
        FIVE[4], Reply(text="The fifth answered.", served_as="anthropic/claude-4.5-haiku-20251001")
    )
    async with make_client(fake, max_retries=0) as client:
        events = await collect(client, ChatRequest(FIVE, HELLO))
    done = final(events)
    assert done.text == "The fifth answered."
    assert done.model == "anthropic/claude-4.5-haiku-20251001"
    assert [p.model for p in done.passed_over] == FIVE[:4]
    assert {p.kind for p in done.passed_over} == {"provider_unavailable"}
    # The first request carried three models, the rest of the chain went in a second one.
    bodies = [r.body for r in fake.chat_requests()]
    assert [b.get("models") for b in bodies] == [FIVE[:3], FIVE[3:]]
    assert [b["model"] for b in bodies] == [FIVE[0], FIVE[3]]
    fell_back = [e for e in events if isinstance(e, FellBack)]
    assert len(fell_back) == 1
    assert [p.model for p in fell_back[0].failed] == FIVE[:3]


async def test_models_skipped_inside_one_request_are_named(
    fake: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake.script("openai/gpt-4o-mini", Reply(fail_status=502))
    done = await client.complete(ChatRequest(["openai/gpt-4o-mini", "openai/gpt-4o"], HELLO))
    assert done.model == "openai/gpt-4o"
    assert [p.model for p in done.passed_over] == ["openai/gpt-4o-mini"]
    assert len(fake.chat_requests()) == 1


async def test_whole_chain_failing_raises_with_everything_tried(fake: FakeOpenRouter) -> None:
    for model in FIVE:
        fake.script(model, Reply(fail_status=503))
    async with make_client(fake, max_retries=0) as client:
        with pytest.raises(OpenRouterError) as caught:
            await collect(client, ChatRequest(FIVE, HELLO))
    assert caught.value.kind is ErrorKind.PROVIDER_UNAVAILABLE
    assert [p.model for p in caught.value.passed_over] == FIVE
    assert len(fake.chat_requests()) == 2


async def test_chain_stops_at_an_error_no_model_would_fix(fake: FakeOpenRouter) -> None:
    fake.script("openai/gpt-4o-mini", Reply(fail_status=402, fail_message="Insufficient credits"))
    async with make_client(fake, max_retries=0) as client:
        with pytest.raises(OpenRouterError) as caught:
            await client.complete(ChatRequest(FIVE, HELLO))
    assert caught.value.kind is ErrorKind.INSUFFICIENT_CREDITS
    assert len(fake.chat_requests()) == 1


# -- retries ----------------------------------------------------------------------------


class RecordingSleep:
    """Stands in for asyncio.sleep so Retry-After waits can be checked without waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


async def test_transient_failures_are_retried_with_backoff(fake: FakeOpenRouter) -> None:
    fake.script("openai/gpt-4o-mini", Reply(text="third time", fail_status=502, fail_times=2))
    sleep = RecordingSleep()
    async with make_client(fake, sleep=sleep, backoff_base_s=0.5, backoff_cap_s=8) as client:
        done = await client.complete(ChatRequest(["openai/gpt-4o-mini"], HELLO))
    assert done.text == "third time"
    assert len(fake.chat_requests()) == 3
    # Exponential with jitter: between half and all of 0.5 s, then of 1 s.
    assert 0.25 <= sleep.delays[0] <= 0.5
    assert 0.5 <= sleep.delays[1] <= 1.0


async def test_retry_after_is_honoured(fake: FakeOpenRouter) -> None:
    fake.script(
        "openai/gpt-4o-mini", Reply(text="ok", fail_status=429, fail_times=1, retry_after=3)
    )
    sleep = RecordingSleep()
    async with make_client(fake, sleep=sleep) as client:
        done = await client.complete(ChatRequest(["openai/gpt-4o-mini"], HELLO))
    assert done.text == "ok"
    assert sleep.delays == [3.0]


async def test_retry_after_beyond_the_cap_moves_on_to_the_next_model(
    fake: FakeOpenRouter,
) -> None:
    fake.script("openai/gpt-4o-mini", Reply(fail_status=429, retry_after=600))
    sleep = RecordingSleep()
    async with make_client(fake, sleep=sleep, retry_after_cap_s=20) as client:
        chain = ["openai/gpt-4o-mini", "openai/gpt-4o", "z-ai/glm-4.7", "google/gemini-2.5-flash"]
        fake.script("openai/gpt-4o", Reply(fail_status=429, retry_after=600))
        fake.script("z-ai/glm-4.7", Reply(fail_status=429, retry_after=600))
        done = await client.complete(ChatRequest(chain, HELLO))
    assert done.model == "google/gemini-2.5-flash"
    assert sleep.delays == []


async def test_retries_are_bounded(fake: FakeOpenRouter) -> None:
    fake.script("openai/gpt-4o-mini", Reply(fail_status=503))
    async with make_client(fake, max_retries=2) as client:
        with pytest.raises(OpenRouterError):
            await client.complete(ChatRequest(["openai/gpt-4o-mini"], HELLO))
    assert len(fake.chat_requests()) == 3


async def test_connection_errors_are_retried_then_reported() -> None:
    # A port nothing listens on: bind one, then close it.
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sleep = RecordingSleep()
    async with OpenRouterClient.create(
        api_key=TEST_KEY, base_url=f"http://127.0.0.1:{port}/api/v1", sleep=sleep
    ) as client:
        with pytest.raises(OpenRouterError) as caught:
            await client.complete(ChatRequest(["openai/gpt-4o-mini"], HELLO))
    assert caught.value.kind is ErrorKind.PROVIDER_UNAVAILABLE
    assert len(sleep.delays) == 2
    assert "connect" in caught.value.detail.lower()
    assert "could not reach OpenRouter" in caught.value.user_message


# -- streams that go wrong --------------------------------------------------------------

LONG = "alpha beta gamma delta epsilon zeta eta theta"


async def test_mid_stream_error_keeps_the_text_and_is_not_retried(
    fake: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake.script("openai/gpt-4o-mini", Reply(text=LONG, error_after=3))
    seen: list[str] = []

    async def consume() -> None:
        request = ChatRequest(["openai/gpt-4o-mini", "openai/gpt-4o"], HELLO)
        async for event in client.stream(request):
            if isinstance(event, TextDelta):
                seen.append(event.text)

    with pytest.raises(OpenRouterError) as caught:
        await consume()
    error = caught.value
    assert error.kind is ErrorKind.PROVIDER_UNAVAILABLE
    assert error.partial_text == "alpha beta gamma "
    assert "".join(seen) == error.partial_text
    # Text was shown: no retry and no fallback to the second model.
    assert len(fake.chat_requests()) == 1


async def test_mid_stream_error_with_a_string_code(
    fake: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake.script("openai/gpt-4o-mini", Reply(text=LONG, error_after=2, error_code="server_error"))
    with pytest.raises(OpenRouterError) as caught:
        await collect(client, ChatRequest(["openai/gpt-4o-mini"], HELLO))
    assert caught.value.kind is ErrorKind.PROVIDER_UNAVAILABLE
    assert caught.value.partial_text == "alpha beta "


async def test_error_before_any_text_falls_back(
    fake: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake.script("openai/gpt-4o-mini", Reply(text=LONG, error_after=0))
    fake.script("openai/gpt-4o", Reply(text="from the fallback"))
    chain = ["openai/gpt-4o-mini", "z-ai/glm-4.7", "google/gemini-2.5-flash", "openai/gpt-4o"]
    async with make_client(fake, max_retries=0) as c:
        done = final(await collect(c, ChatRequest(chain, HELLO)))
    assert done.text == "from the fallback"


async def test_dropped_connection_keeps_the_text(
    fake: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake.script("openai/gpt-4o-mini", Reply(text=LONG, drop_after=4))
    with pytest.raises(OpenRouterError) as caught:
        await collect(client, ChatRequest(["openai/gpt-4o-mini"], HELLO))
    assert caught.value.kind is ErrorKind.PROVIDER_UNAVAILABLE
    assert caught.value.partial_text == "alpha beta gamma delta "
    assert len(fake.chat_requests()) == 1


async def test_silence_between_chunks_times_out(fake: FakeOpenRouter) -> None:
    fake.script("openai/gpt-4o-mini", Reply(text=LONG, stall_after=2, stall_s=30))
    async with make_client(fake, idle_timeout_s=0.3) as client:
        with pytest.raises(OpenRouterError) as caught:
            await collect(client, ChatRequest(["openai/gpt-4o-mini"], HELLO))
    assert caught.value.kind is ErrorKind.TIMEOUT
    assert caught.value.partial_text == "alpha beta "


async def test_idle_timeout_does_not_cap_a_long_answer(fake: FakeOpenRouter) -> None:
    # 40 tokens at 50 per second take 0.8 s in all, far beyond the 0.3 s idle timeout,
    # with no gap between chunks longer than 20 ms.
    words = " ".join(f"w{i}" for i in range(40))
    fake.script("openai/gpt-4o-mini", Reply(text=words, tokens_per_s=50, ttft_s=0.1, keepalives=2))
    async with make_client(fake, idle_timeout_s=0.3) as client:
        done = final(await collect(client, ChatRequest(["openai/gpt-4o-mini"], HELLO)))
    assert done.text == words


async def test_a_200_carrying_an_error_is_an_error(fake: FakeOpenRouter) -> None:
    fake.script(
        "openai/gpt-4o-mini",
        Reply(fail_status=402, fail_in_body=True, fail_message="Insufficient credits"),
    )
    async with make_client(fake) as client:
        with pytest.raises(OpenRouterError) as caught:
            await client.complete(ChatRequest(["openai/gpt-4o-mini"], HELLO))
    assert caught.value.kind is ErrorKind.INSUFFICIENT_CREDITS


# -- prompt caching ---------------------------------------------------------------------


def breakpoints(body: dict[str, Any]) -> list[int]:
    found = []
    for index, message in enumerate(body["messages"]):
        content = message.get("content")
        if isinstance(content, list) and any("cache_control" in p for p in content):
            found.append(index)
    return found


CONVERSATION = [
    {"role": "system", "content": "You are helpful."},
    {"role": "user", "content": "first"},
    {"role": "assistant", "content": "answer"},
    {"role": "user", "content": "second"},
]


async def test_anthropic_requests_get_cache_breakpoints(
    fake: FakeOpenRouter, client: OpenRouterClient
) -> None:
    await client.complete(ChatRequest(["anthropic/claude-sonnet-4"], CONVERSATION))
    body = fake.chat_requests()[0].body
    assert breakpoints(body) == [0, 2]
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "You are helpful.", "cache_control": {"type": "ephemeral"}}
    ]
    assert body["messages"][3]["content"] == "second"
    # The caller's messages are not changed.
    assert CONVERSATION[0]["content"] == "You are helpful."


async def test_other_vendors_get_no_breakpoints(
    fake: FakeOpenRouter, client: OpenRouterClient
) -> None:
    await client.complete(ChatRequest(["openai/gpt-4o"], CONVERSATION))
    assert breakpoints(fake.chat_requests()[0].body) == []
