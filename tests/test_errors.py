"""Every error kind, produced by the fake over real sockets, and its user-facing message."""

from __future__ import annotations

import pytest

from bot.openrouter import ChatRequest, OpenRouterClient, OpenRouterError
from bot.openrouter.errors import ErrorKind, classify, error_from_body, redact
from tests.conftest import make_client
from tests.fakes.openrouter import TEST_KEY, FakeOpenRouter, Reply

HELLO = [{"role": "user", "content": "hello"}]
MINI = "openai/gpt-4o-mini"


async def fail_with(fake: FakeOpenRouter, request: ChatRequest, **kw: object) -> OpenRouterError:
    async with make_client(fake, max_retries=0, **kw) as client:
        with pytest.raises(OpenRouterError) as caught:
            await client.complete(request)
    return caught.value


def assert_plain(message: str) -> None:
    """A message for people: no key, no traceback, no Python repr."""
    assert TEST_KEY not in message
    assert "sk-or-v1" not in message
    assert "Traceback" not in message
    assert "Error(" not in message
    assert message.endswith((".", "?"))


@pytest.mark.parametrize(
    ("reply", "kind", "words"),
    [
        (
            Reply(fail_status=402, fail_message="Insufficient credits"),
            ErrorKind.INSUFFICIENT_CREDITS,
            "/credits",
        ),
        (
            Reply(
                fail_status=403,
                fail_message="Input flagged",
                fail_metadata={"reasons": ["harassment", "violence"], "flagged_input": "..."},
            ),
            ErrorKind.MODERATION,
            "(harassment, violence)",
        ),
        (
            Reply(
                fail_status=429, retry_after=42, fail_metadata={"error_type": "rate_limit_exceeded"}
            ),
            ErrorKind.RATE_LIMITED,
            "about 42 s",
        ),
        (
            Reply(fail_status=503, fail_message="No instances available"),
            ErrorKind.PROVIDER_UNAVAILABLE,
            "fallback models",
        ),
        (
            Reply(fail_status=408, fail_message="Request timed out"),
            ErrorKind.TIMEOUT,
            "took too long",
        ),
        (
            Reply(fail_status=400, fail_message="Invalid value for temperature"),
            ErrorKind.BAD_REQUEST,
            "Invalid value for temperature",
        ),
    ],
)
async def test_status_errors(
    fake: FakeOpenRouter, reply: Reply, kind: ErrorKind, words: str
) -> None:
    fake.script(MINI, reply)
    error = await fail_with(fake, ChatRequest([MINI], HELLO))
    assert error.kind is kind
    assert words in error.user_message
    assert str(error) == error.user_message
    assert_plain(error.user_message)


async def test_invalid_key(fake: FakeOpenRouter) -> None:
    bad = "sk-or-v1-" + "9" * 64
    async with OpenRouterClient.create(api_key=bad, base_url=fake.url, max_retries=0) as client:
        with pytest.raises(OpenRouterError) as caught:
            await client.complete(ChatRequest([MINI], HELLO))
    error = caught.value
    assert error.kind is ErrorKind.INVALID_KEY
    assert "OPENROUTER_API_KEY" in error.user_message
    assert bad not in error.user_message
    assert bad not in error.detail
    assert bad not in repr(error)
    assert_plain(error.user_message)


async def test_unknown_model(fake: FakeOpenRouter) -> None:
    error = await fail_with(fake, ChatRequest(["acme/nonsense-1"], HELLO))
    assert error.kind is ErrorKind.UNKNOWN_MODEL
    assert "`openrouter/acme/nonsense-1`" in error.user_message
    assert "/model" in error.user_message
    assert_plain(error.user_message)


async def test_model_without_tool_use(fake: FakeOpenRouter) -> None:
    tools = [{"type": "function", "function": {"name": "read", "parameters": {}}}]
    error = await fail_with(fake, ChatRequest(["meta-llama/llama-3.1-8b:free"], HELLO, tools=tools))
    assert error.kind is ErrorKind.NO_TOOL_SUPPORT
    assert "cannot use tools" in error.user_message
    assert_plain(error.user_message)


async def test_context_too_long(fake: FakeOpenRouter) -> None:
    long = [{"role": "user", "content": "word " * 2000}]
    error = await fail_with(fake, ChatRequest(["tiny/short-context"], long))
    assert error.kind is ErrorKind.CONTEXT_TOO_LONG
    assert "too long" in error.user_message
    assert "new thread" in error.user_message
    assert_plain(error.user_message)


async def test_malformed_response(fake: FakeOpenRouter) -> None:
    fake.script(MINI, Reply(garbage=True))
    error = await fail_with(fake, ChatRequest([MINI], HELLO))
    assert error.kind is ErrorKind.MALFORMED_RESPONSE
    assert_plain(error.user_message)


async def test_malformed_stream_chunk(fake: FakeOpenRouter) -> None:
    fake.script(MINI, Reply(garbage=True))
    async with make_client(fake, max_retries=0) as client:
        with pytest.raises(OpenRouterError) as caught:
            async for _ in client.stream(ChatRequest([MINI], HELLO)):
                pass
    assert caught.value.kind is ErrorKind.MALFORMED_RESPONSE


async def test_upstream_timeout_message(fake: FakeOpenRouter) -> None:
    fake.script(MINI, Reply(text="late", ttft_s=5))
    error = await fail_with(fake, ChatRequest([MINI], HELLO), idle_timeout_s=0.2)
    assert error.kind is ErrorKind.TIMEOUT
    assert_plain(error.user_message)


def test_string_codes_and_metadata_types() -> None:
    assert (
        classify(None, "", {"error_type": "context_length_exceeded"}) is ErrorKind.CONTEXT_TOO_LONG
    )
    error = error_from_body({"error": {"code": "server_error", "message": "boom"}}, status=None)
    assert error.kind is ErrorKind.PROVIDER_UNAVAILABLE
    error = error_from_body(
        {
            "error": {
                "code": 503,
                "message": "x",
                "availability": {"retryable": True, "retry_after": 7},
            }
        },
        status=503,
    )
    assert error.kind is ErrorKind.PROVIDER_UNAVAILABLE
    assert error.retry_after == 7
    assert error_from_body("not json", status=502).kind is ErrorKind.PROVIDER_UNAVAILABLE
    assert error_from_body(None, status=400).kind is ErrorKind.MALFORMED_RESPONSE


def test_keys_in_upstream_text_are_redacted() -> None:
    error = error_from_body(
        {"error": {"code": 400, "message": f"bad header Bearer {TEST_KEY} rejected"}}, status=400
    )
    assert TEST_KEY not in error.detail
    assert TEST_KEY not in error.user_message
    assert redact("token xoxb-1 and secret", ["xoxb-1"]) == "token [redacted] and secret"
