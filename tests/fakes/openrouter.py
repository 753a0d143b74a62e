"""A fake OpenRouter on 127.0.0.1 that speaks the real API's shapes.

Scriptable per model, the way pydantic-ai's FunctionModel is: a `Reply` (or a function of
the request body returning one) says what a model answers, how fast, and how it fails.
Every request is recorded. Shared by the tests and the benchmarks; run it on its own with
`python -m tests.fakes.openrouter --port 8081`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

TEST_KEY = "sk-or-v1-" + "0123456789abcdef" * 4
MANAGEMENT_KEY = "sk-or-v1-" + "fedcba9876543210" * 4


@dataclass
class Reply:
    """What one model does with a request."""

    text: str = "Hello from the fake model."
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # {"name", "arguments"}
    ttft_s: float = 0.0  # time to first token
    tokens_per_s: float | None = None  # None: every token at once
    keepalives: int = 0  # `: OPENROUTER PROCESSING` comments before the first token
    served_as: str | None = None  # the `model` the response names, e.g. a dated slug
    provider: str = "FakeProvider"
    usage_on_finish_chunk: bool = False  # usage on the finish_reason chunk, not after it
    finish_reason: str | None = None  # instead of "stop" (or "tool_calls"), e.g. "length"
    # Failing before any output: `fail_status` for the first `fail_times` requests (None:
    # every request), with OpenRouter's error body.
    fail_status: int | None = None
    fail_times: int | None = None
    fail_message: str = "Provider returned error"
    fail_metadata: dict[str, Any] | None = None
    retry_after: float | None = None
    fail_in_body: bool = False  # answer HTTP 200 with the error in the body instead
    garbage: bool = False  # answer HTTP 200 with a body that is not JSON
    # Failing mid-stream, after `k` tokens: an error chunk, a dropped connection, a stall.
    error_after: int | None = None
    error_code: int | str = 502
    drop_after: int | None = None
    stall_after: int | None = None
    stall_s: float = 30.0


Script = Reply | Callable[[dict[str, Any]], Reply]


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float  # time.monotonic()


def model_entry(
    model_id: str,
    name: str,
    context: int = 128_000,
    prompt: str = "0.000001",
    completion: str = "0.000002",
    *,
    tools: bool = True,
    images: bool = False,
) -> dict[str, Any]:
    params = ["temperature", "max_tokens"] + (["tools", "tool_choice"] if tools else [])
    return {
        "id": model_id,
        "canonical_slug": model_id,
        "name": name,
        "created": 1750000000,
        "context_length": context,
        "pricing": {"prompt": prompt, "completion": completion, "request": "0", "image": "0"},
        "architecture": {
            "input_modalities": ["text", "image"] if images else ["text"],
            "output_modalities": ["text"],
        },
        "top_provider": {"max_completion_tokens": 16384, "is_moderated": False},
        "supported_parameters": params,
    }


DEFAULT_MODELS = [
    model_entry("openrouter/auto", "Auto Router", 2_000_000, "-1", "-1", images=True),
    model_entry(
        "anthropic/claude-sonnet-4",
        "Anthropic: Claude Sonnet 4",
        200_000,
        "0.000003",
        "0.000015",
        images=True,
    ),
    model_entry(
        "anthropic/claude-haiku-4.5",
        "Anthropic: Claude Haiku 4.5",
        200_000,
        "0.000001",
        "0.000005",
        images=True,
    ),
    model_entry(
        "openai/gpt-4o-mini",
        "OpenAI: GPT-4o-mini",
        128_000,
        "0.00000015",
        "0.0000006",
        images=True,
    ),
    model_entry("openai/gpt-4o", "OpenAI: GPT-4o", 128_000, "0.0000025", "0.00001", images=True),
    model_entry(
        "google/gemini-2.5-flash",
        "Google: Gemini 2.5 Flash",
        1_048_576,
        "0.0000003",
        "0.0000025",
        images=True,
    ),
    model_entry(
        "meta-llama/llama-3.1-8b-instruct",
        "Meta: Llama 3.1 8B Instruct",
        131_072,
        "0.00000002",
        "0.00000003",
    ),
    model_entry(
        "meta-llama/llama-3.1-8b:free",
        "Meta: Llama 3.1 8B (free)",
        131_072,
        "0",
        "0",
        tools=False,
    ),
    model_entry("z-ai/glm-4.7", "Z.AI: GLM 4.7", 202_752, "0.0000004", "0.0000015"),
    model_entry("mistralai/mistral-small", "Mistral: Small", 32_000, tools=False),
    model_entry("tiny/short-context", "Tiny: Short Context", 300),
]


def _tokens(text: str) -> list[str]:
    return re.findall(r"\S+\s*|\s+", text)


def _error_body(status: int | str, message: str, metadata: dict[str, Any] | None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": status, "message": message}
    if metadata is not None:
        error["metadata"] = metadata
    return {"error": error, "user_id": "user_fake"}


class _Failure(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        metadata: dict[str, Any] | None = None,
        retry_after: float | None = None,
        in_body: bool = False,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.metadata = status, message, metadata
        self.retry_after, self.in_body = retry_after, in_body


class FakeOpenRouter:
    def __init__(
        self,
        *,
        keys: tuple[str, ...] = (TEST_KEY,),
        management_keys: tuple[str, ...] = (MANAGEMENT_KEY,),
        models: list[dict[str, Any]] | None = None,
    ) -> None:
        self.keys = set(keys) | set(management_keys)
        self.management_keys = set(management_keys)
        self.models = list(DEFAULT_MODELS if models is None else models)
        self.scripts: dict[str, Script] = {}
        self.default = Reply()
        self.requests: list[Recorded] = []
        self.models_delay_s = 0.0
        self.models_fail_status: int | None = None
        self.credits_data = {"total_credits": 100.5, "total_usage": 25.75}
        self.key_data: dict[str, Any] = {
            "label": "sk-or-v1-012...def",
            "limit": 100,
            "limit_remaining": 74.5,
            "limit_reset": "monthly",
            "usage": 25.5,
            "usage_daily": 1.2,
            "usage_monthly": 25.5,
            "is_free_tier": False,
        }
        self._failures: dict[str, int] = {}
        self._ids = itertools.count(1)
        # Per streamed answer: its last message, and when its first token and end went out
        # (time.monotonic(), one clock for every process of a benchmark).
        self.streams: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- scripting ------------------------------------------------------------------

    def script(self, model: str, reply: Script) -> None:
        self.scripts[model] = reply

    def chat_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def count(self, path_suffix: str) -> int:
        return sum(1 for r in self.requests if r.path.endswith(path_suffix))

    # -- lifecycle ------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application()
        app.router.add_post("/api/v1/chat/completions", self._chat)
        app.router.add_get("/api/v1/models", self._models)
        app.router.add_get("/api/v1/credits", self._credits)
        app.router.add_get("/api/v1/key", self._key)
        app.router.add_get("/api/v1/auth/key", self._key)
        app.router.add_get("/_fake/streams", self._streams)
        # handler_cancellation: a client that hangs up ends a stalled stream at once.
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        sockets = self._runner.addresses
        bound_port = sockets[0][1]
        self.url = f"http://{host}:{bound_port}/api/v1"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeOpenRouter:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- handlers -------------------------------------------------------------------

    async def _record(self, request: web.Request) -> Recorded:
        body: Any = None
        if request.can_read_body:
            raw = await request.read()
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        recorded = Recorded(
            request.method, request.path, dict(request.headers), body, time.monotonic()
        )
        self.requests.append(recorded)
        return recorded

    def _key_of(self, request: web.Request) -> str | None:
        auth = request.headers.get("Authorization", "")
        key = auth.removeprefix("Bearer ").strip()
        return key if auth.startswith("Bearer ") and key in self.keys else None

    @staticmethod
    def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
        return web.json_response(body, status=status, headers=headers)

    def _unauthorized(self) -> web.Response:
        return self._json(_error_body(401, "No auth credentials found", None), 401)

    async def _models(self, request: web.Request) -> web.Response:
        await self._record(request)
        if self.models_delay_s:
            await asyncio.sleep(self.models_delay_s)
        if self.models_fail_status is not None:
            status = self.models_fail_status
            return self._json(_error_body(status, "Service unavailable", None), status)
        data = self.models
        if request.query.get("supported_parameters"):
            wanted = request.query["supported_parameters"]
            data = [m for m in data if wanted in m["supported_parameters"]]
        return self._json({"data": data})

    async def _credits(self, request: web.Request) -> web.Response:
        await self._record(request)
        key = self._key_of(request)
        if key is None:
            return self._unauthorized()
        if key not in self.management_keys:
            message = "Only management keys can perform this operation"
            return self._json(_error_body(403, message, None), 403)
        return self._json({"data": self.credits_data})

    async def _key(self, request: web.Request) -> web.Response:
        await self._record(request)
        if self._key_of(request) is None:
            return self._unauthorized()
        return self._json({"data": self.key_data})

    def _catalogued(self, model_id: str) -> dict[str, Any] | None:
        return next((m for m in self.models if m["id"] == model_id), None)

    def _plan(self, model_id: str, body: dict[str, Any]) -> Reply:
        """The reply `model_id` gives this request, or a _Failure it fails with."""
        entry = self._catalogued(model_id)
        if entry is None and model_id not in self.scripts:
            raise _Failure(400, f"{model_id} is not a valid model ID")
        script = self.scripts.get(model_id, self.default)
        reply = script(body) if callable(script) else script
        if reply.fail_status is not None:
            seen = self._failures.get(model_id, 0)
            self._failures[model_id] = seen + 1
            if reply.fail_times is None or seen < reply.fail_times:
                raise _Failure(
                    reply.fail_status,
                    reply.fail_message,
                    reply.fail_metadata,
                    reply.retry_after,
                    reply.fail_in_body,
                )
        if entry is not None:
            if body.get("tools") and "tools" not in entry["supported_parameters"]:
                raise _Failure(404, "No endpoints found that support tool use.")
            prompt_tokens = len(json.dumps(body.get("messages", []))) // 4
            if prompt_tokens > entry["context_length"]:
                raise _Failure(
                    400,
                    f"This endpoint's maximum context length is {entry['context_length']} "
                    f"tokens. However, you requested about {prompt_tokens} tokens.",
                )
        return reply

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        recorded = await self._record(request)
        if self._key_of(request) is None:
            return self._unauthorized()
        body = recorded.body
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return self._json(_error_body(400, "Input required: messages", None), 400)
        candidates = body.get("models") or [body.get("model")]
        if len(candidates) > 3:
            message = "'models' array must have 3 items or fewer."
            return self._json(_error_body(400, message, None), 400)
        failure: _Failure | None = None
        for model_id in candidates:
            try:
                reply = self._plan(str(model_id), body)
            except _Failure as exc:
                failure = exc
                # Key, credit and moderation failures end the request: other models of
                # the same account would fail the same way.
                if exc.status in (401, 402, 403):
                    break
                continue
            served = reply.served_as or str(model_id)
            if reply.garbage and body.get("stream"):
                response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
                await response.prepare(request)
                await response.write(b'data: {"id": "gen-x", "choi\n\n')
                return response
            if reply.garbage:
                return web.Response(text="<html>502 Bad Gateway</html>", content_type="text/html")
            if body.get("stream"):
                return await self._stream(request, body, reply, served)
            if reply.ttft_s:
                await asyncio.sleep(reply.ttft_s)
            return self._complete(body, reply, served)
        assert failure is not None
        headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after else None
        error = _error_body(failure.status, failure.message, failure.metadata)
        return self._json(error, 200 if failure.in_body else failure.status, headers)

    def _usage(self, body: dict[str, Any], served: str, completion_tokens: int) -> dict[str, Any]:
        prompt_tokens = len(json.dumps(body.get("messages", []))) // 4
        entry = self._catalogued(served) or {"pricing": {"prompt": "0", "completion": "0"}}
        price_in = max(0.0, float(entry["pricing"]["prompt"]))
        price_out = max(0.0, float(entry["pricing"]["completion"]))
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "cost": prompt_tokens * price_in + completion_tokens * price_out,
            "prompt_tokens_details": {"cached_tokens": 0},
        }

    @staticmethod
    def _calls(reply: Reply) -> list[dict[str, Any]]:
        calls = []
        for index, call in enumerate(reply.tool_calls):
            arguments = call.get("arguments", {})
            raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
            calls.append(
                {
                    "id": f"call_{index}_{call['name']}",
                    "type": "function",
                    "index": index,
                    "function": {"name": call["name"], "arguments": raw},
                }
            )
        return calls

    def _complete(self, body: dict[str, Any], reply: Reply, served: str) -> web.Response:
        generation = f"gen-{next(self._ids)}"
        calls = self._calls(reply)
        finish = reply.finish_reason or ("tool_calls" if calls else "stop")
        message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
        if calls:
            message["tool_calls"] = calls
        return self._json(
            {
                "id": generation,
                "provider": reply.provider,
                "model": served,
                "object": "chat.completion",
                "created": int(time.time()),
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": finish,
                        "native_finish_reason": finish,
                        "message": message,
                    }
                ],
                "usage": self._usage(body, served, len(_tokens(reply.text))),
            },
            headers={"X-Generation-Id": generation},
        )

    async def _stream(
        self, request: web.Request, body: dict[str, Any], reply: Reply, served: str
    ) -> web.StreamResponse:
        started = time.monotonic()
        generation = f"gen-{next(self._ids)}"
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Generation-Id": generation,
            }
        )
        await response.prepare(request)
        base = {
            "id": generation,
            "model": served,
            "provider": reply.provider,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
        }

        async def send(payload: dict[str, Any] | str) -> None:
            data = payload if isinstance(payload, str) else json.dumps({**base, **payload})
            await response.write(f"data: {data}\n\n".encode())

        def delta(content: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {"choices": [{"index": 0, "delta": content, "finish_reason": finish}]}

        for _ in range(reply.keepalives):
            await response.write(b": OPENROUTER PROCESSING\n\n")
            await asyncio.sleep(reply.ttft_s / max(1, reply.keepalives))
        if not reply.keepalives and reply.ttft_s:
            await asyncio.sleep(reply.ttft_s)

        tokens = _tokens(reply.text)
        gap = 1 / reply.tokens_per_s if reply.tokens_per_s else 0.0
        messages = body.get("messages") or [{}]
        timing: dict[str, Any] = {
            "last_message": messages[-1].get("content"),
            "requested_at": started,
            "first_token_at": None,
        }
        self.streams.append(timing)
        calls = self._calls(reply)
        finish = reply.finish_reason or ("tool_calls" if calls else "stop")
        usage = self._usage(body, served, len(tokens))
        for number, token in enumerate(tokens):
            if reply.error_after is not None and number == reply.error_after:
                await send(
                    {
                        "error": {"code": reply.error_code, "message": "Provider returned error"},
                        **delta({"content": ""}, "error"),
                    }
                )
                return response
            if reply.drop_after is not None and number == reply.drop_after:
                assert request.transport is not None
                request.transport.close()
                return response
            if reply.stall_after is not None and number == reply.stall_after:
                await asyncio.sleep(reply.stall_s)
            if number and gap:
                await asyncio.sleep(gap)
            content: dict[str, Any] = {"content": token}
            if number == 0:
                content["role"] = "assistant"
                timing["first_token_at"] = time.monotonic()
            last = number == len(tokens) - 1 and not calls
            chunk = delta(content, finish if last else None)
            if last and reply.usage_on_finish_chunk:
                chunk["usage"] = usage
            await send(chunk)
        for call in calls:
            raw = call["function"]["arguments"]
            head = {**call, "function": {"name": call["function"]["name"], "arguments": ""}}
            await send(delta({"tool_calls": [head]}))
            middle = len(raw) // 2
            for part in (raw[:middle], raw[middle:]):
                if part:
                    fragment = {"index": call["index"], "function": {"arguments": part}}
                    await send(delta({"tool_calls": [fragment]}))
        if calls or not tokens:
            chunk = delta({}, finish)
            if reply.usage_on_finish_chunk:
                chunk["usage"] = usage
            await send(chunk)
        if not reply.usage_on_finish_chunk:
            await send({"choices": [], "usage": usage})
        await send("[DONE]")
        timing["ended_at"] = time.monotonic()
        return response

    async def _streams(self, request: web.Request) -> web.Response:
        return web.json_response(self.streams)


async def _serve(port: int, reply: Reply) -> None:
    fake = FakeOpenRouter()
    fake.default = reply
    url = await fake.start(port=port)
    print(url, flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--ttft", type=float, default=0.3, help="seconds to the first token")
    parser.add_argument("--tokens", type=int, default=200, help="tokens per answer")
    parser.add_argument("--rate", type=float, default=100.0, help="tokens per second")
    args = parser.parse_args()
    text = " ".join(f"word{i}" for i in range(args.tokens))
    reply = Reply(text=text, ttft_s=args.ttft, tokens_per_s=args.rate)
    asyncio.run(_serve(args.port, reply))


if __name__ == "__main__":
    main()
