"""The OpenRouter client: chat completions over one shared httpx.AsyncClient.

Request flow: a fallback chain of any length is cut into groups of at most 3 models
(what one request's `models` may hold); each group is one request, retried with backoff
on transient failures; a group that still fails hands over to the next. Once text has
reached the caller nothing is retried, because the user has already seen it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any, Self

import httpx

from . import caching
from .cache import CachedValue
from .catalogue import Catalogue
from .credits import Credits
from .errors import (
    ErrorKind,
    InvalidKeyError,
    MalformedResponseError,
    OpenRouterError,
    ProviderUnavailableError,
    UnreachableError,
    UpstreamTimeoutError,
    error_from_body,
    redact,
)
from .stream import SSEDecoder, StreamAssembler, completion_from_json
from .types import (
    JSON,
    ChatRequest,
    Completion,
    Done,
    FellBack,
    PassedOver,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
)

log = logging.getLogger(__name__)

MAX_MODELS_PER_REQUEST = 3
DEFAULT_BASE_URL = "https://openrouter.ai/api/v1"


def _chain_groups(models: list[str]) -> list[list[str]]:
    unique = list(dict.fromkeys(models))
    step = MAX_MODELS_PER_REQUEST
    return [unique[i : i + step] for i in range(0, len(unique), step)]


def _model_key(model_id: str) -> frozenset[str]:
    base = re.sub(r"-\d{8}$", "", model_id.split(":")[0])
    return frozenset(re.split(r"[/.-]", base))


def _same_model(served: str, asked: str) -> bool:
    """Whether the served id is the asked one. OpenRouter names the model that served by a
    dated slug whose words may come in another order (`anthropic/claude-haiku-4.5` is
    served as `anthropic/claude-4.5-haiku-20251001`)."""
    return served == asked or _model_key(served) == _model_key(asked)


def _with_generation_id(completion: Completion, response: httpx.Response) -> Completion:
    """The generation id from the body, or else from the `X-Generation-Id` header."""
    if completion.generation_id is not None:
        return completion
    return replace(completion, generation_id=response.headers.get("x-generation-id"))


def _endpoint_error(status: int, body: Any) -> OpenRouterError:
    """The error for a GET endpoint; there a 403 means the key may not read it."""
    if status == 403:
        return InvalidKeyError("the key may not read this endpoint", status=status)
    return error_from_body(body, status=status)


def _passed(model: str, error: OpenRouterError) -> PassedOver:
    return PassedOver(model=model, kind=error.kind.value, reason=error.detail or error.kind.value)


class OpenRouterClient:
    """Async OpenRouter API client. Create once, share, close on shutdown."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        site_url: str | None = None,
        site_name: str | None = None,
        management_key: str | None = None,
        max_retries: int = 2,
        retry_after_cap_s: float = 20.0,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 8.0,
        models_ttl_s: float = 3600.0,
        credits_ttl_s: float = 300.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._http = http
        self._api_key = api_key
        self._management_key = management_key
        self._base_url = base_url.rstrip("/")
        self._attribution = {
            name: value
            for name, value in (("HTTP-Referer", site_url), ("X-Title", site_name))
            if value
        }
        self.max_retries = max_retries
        self.retry_after_cap_s = retry_after_cap_s
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self._sleep = sleep
        self.catalogue = Catalogue(self._fetch_models, models_ttl_s)
        self._credits: CachedValue[Credits] = CachedValue(self._fetch_credits, credits_ttl_s)

    def __repr__(self) -> str:  # never the key
        return f"OpenRouterClient(base_url={self._base_url!r})"

    @classmethod
    def create(
        cls,
        *,
        api_key: str,
        connect_timeout_s: float = 10.0,
        idle_timeout_s: float = 90.0,
        **kwargs: Any,
    ) -> Self:
        """A client on a new httpx.AsyncClient with the bot's timeouts.

        httpx's read timeout applies to each read from the socket, so it bounds the silence
        between two chunks of a stream, not the length of an answer.
        """
        timeout = httpx.Timeout(
            connect=connect_timeout_s, read=idle_timeout_s, write=30.0, pool=None
        )
        # Each streamed reply holds a connection for its whole length: no cap on their number
        # here (the bot's own concurrency limits decide), but idle ones are pooled.
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
        http = httpx.AsyncClient(timeout=timeout, limits=limits)
        return cls(http, api_key=api_key, **kwargs)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- chat -----------------------------------------------------------------------

    async def complete(self, request: ChatRequest) -> Completion:
        """One answer, not streamed."""
        async for event in self._run(request, stream=False):
            if isinstance(event, Done):
                return event.completion
        raise MalformedResponseError("the response ended without a result")  # pragma: no cover

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """Text and reasoning deltas as they arrive, FellBack when the chain moves on, then Done.

        A failure raises OpenRouterError; one that cut a stream short keeps the text
        received so far in `partial_text`.
        """
        return self._run(request, stream=True)

    async def _run(self, request: ChatRequest, *, stream: bool) -> AsyncIterator[StreamEvent]:
        if not request.models:
            raise ValueError("a chat request needs at least one model")
        passed_over: list[PassedOver] = []
        groups = _chain_groups(request.models)
        for number, group in enumerate(groups, start=1):
            body = request.body(group, stream=stream)
            if request.prompt_caching:
                body["messages"] = caching.prepare_messages(request.messages, group)
            try:
                async for event in self._group(body, group, stream=stream):
                    if isinstance(event, Done):
                        served = event.completion.model
                        skipped = next(
                            (i for i, m in enumerate(group) if _same_model(served, m)), 0
                        )
                        passed_over += [
                            PassedOver(
                                m, ErrorKind.PROVIDER_UNAVAILABLE.value, "skipped by OpenRouter"
                            )
                            for m in group[:skipped]
                        ]
                        yield Done(replace(event.completion, passed_over=passed_over))
                        return
                    yield event
            except OpenRouterError as error:
                failed = [_passed(m, error) for m in group]
                last = number == len(groups)
                if error.partial_text or not error.kind.falls_back or last:
                    error.passed_over = passed_over + failed
                    raise
                log.info(
                    "models %s failed (%s); going on with the fallback chain",
                    ",".join(group),
                    error.kind.value,
                )
                passed_over += failed
                yield FellBack(failed)

    async def _group(
        self, body: JSON, group: list[str], *, stream: bool
    ) -> AsyncIterator[StreamEvent]:
        """One request for one group of models, retried while nothing has been shown."""
        attempt = 0
        while True:
            assembler = StreamAssembler(group[0])
            try:
                async for event in self._attempt(body, assembler, stream=stream):
                    yield event
                return
            except OpenRouterError as error:
                if assembler.started and stream:
                    raise
                delay = self._retry_delay(error, attempt)
                if delay is None:
                    raise
                log.info("retrying %s in %.2fs after %s", group[0], delay, error.kind.value)
            await self._sleep(delay)
            attempt += 1

    def _retry_delay(self, error: OpenRouterError, attempt: int) -> float | None:
        """Seconds to wait before sending again, or None to give up on this request."""
        if not error.kind.transient or attempt >= self.max_retries:
            return None
        if error.retry_after is not None:
            # A wait longer than the cap is better spent on the next model of the chain.
            return error.retry_after if error.retry_after <= self.retry_after_cap_s else None
        ceiling = min(self.backoff_cap_s, self.backoff_base_s * 2.0**attempt)
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    async def _attempt(
        self, body: JSON, assembler: StreamAssembler, *, stream: bool
    ) -> AsyncIterator[StreamEvent]:
        url = f"{self._base_url}/chat/completions"
        model = str(body["model"])
        try:
            async with self._http.stream(
                "POST", url, json=body, headers=self._headers(self._api_key)
            ) as response:
                if response.status_code != 200:
                    raise await self._error_from(response, model)
                if not stream or "text/event-stream" not in response.headers.get(
                    "content-type", ""
                ):
                    completion = await self._read_completion(response, model)
                    if completion.text:
                        yield TextDelta(completion.text)
                    yield Done(completion)
                    return
                async for event in self._read_stream(response, assembler):
                    yield event
                completion = _with_generation_id(assembler.completion(), response)
        except httpx.TimeoutException:
            raise UpstreamTimeoutError(
                "no data from OpenRouter in time", model=model, partial_text=assembler.text
            ) from None
        except httpx.TransportError as exc:
            raise UnreachableError(
                f"connection to OpenRouter failed: {type(exc).__name__}",
                model=model,
                partial_text=assembler.text,
            ) from None
        yield Done(completion)

    async def _read_stream(
        self, response: httpx.Response, assembler: StreamAssembler
    ) -> AsyncIterator[StreamEvent]:
        decoder = SSEDecoder()
        finished = False
        async for line in response.aiter_lines():
            payload = decoder.feed(line)
            if payload is None:
                continue
            if payload.strip() == "[DONE]":
                finished = True
                break
            try:
                chunk = json.loads(payload)
            except ValueError:
                chunk = None
            if not isinstance(chunk, dict):
                raise MalformedResponseError(
                    "a stream chunk was not a JSON object",
                    model=assembler.model,
                    partial_text=assembler.text,
                )
            added = assembler.add(chunk)
            if added.error is not None or assembler.finish_reason == "error":
                raise error_from_body(
                    {"error": added.error or {"message": "the provider failed mid-answer"}},
                    status=502,
                    model=assembler.model,
                    partial_text=assembler.text,
                )
            if added.reasoning:
                yield ReasoningDelta(added.reasoning)
            if added.text:
                yield TextDelta(added.text)
        if not finished and assembler.finish_reason is None:
            raise ProviderUnavailableError(
                "the stream ended before the answer did",
                model=assembler.model,
                partial_text=assembler.text,
            )

    async def _read_completion(self, response: httpx.Response, model: str) -> Completion:
        raw = await response.aread()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise MalformedResponseError("the response was not a JSON object", model=model)
        completion, error = completion_from_json(body, model)
        if error is not None:
            # A 200 may still carry an error, at the top or in choices[0].
            raise error_from_body({"error": error}, status=None, model=completion.model)
        if not isinstance(body.get("choices"), list) or not body["choices"]:
            raise MalformedResponseError("the response had no choices", model=model)
        return _with_generation_id(completion, response)

    async def _error_from(self, response: httpx.Response, model: str | None) -> OpenRouterError:
        raw = await response.aread()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        error = error_from_body(
            body, status=response.status_code, headers=response.headers, model=model
        )
        log.debug(
            "OpenRouter answered %s: %s",
            response.status_code,
            redact(raw[:500].decode("utf-8", "replace"), self._secrets()),
        )
        return error

    def _headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}", **self._attribution}

    def _secrets(self) -> list[str]:
        return [k for k in (self._api_key, self._management_key) if k]

    # -- other endpoints ----------------------------------------------------------

    async def _get(self, path: str, key: str) -> tuple[int, Any]:
        """GET a JSON endpoint, retrying transient failures; returns status and body."""
        attempt = 0
        while True:
            try:
                response = await self._http.get(
                    f"{self._base_url}{path}", headers=self._headers(key)
                )
            except httpx.TimeoutException:
                error: OpenRouterError = UpstreamTimeoutError(f"GET {path} timed out")
            except httpx.TransportError as exc:
                error = UnreachableError(f"GET {path} failed: {type(exc).__name__}")
            else:
                try:
                    body = response.json()
                except ValueError:
                    body = None
                if response.status_code == 200 or response.status_code == 403:
                    return response.status_code, body
                error = error_from_body(body, status=response.status_code, headers=response.headers)
            delay = self._retry_delay(error, attempt)
            if delay is None:
                raise error
            await self._sleep(delay)
            attempt += 1

    async def _fetch_models(self) -> list[JSON]:
        status, body = await self._get("/models", self._api_key)
        data = body.get("data") if isinstance(body, dict) else None
        if status != 200:
            raise _endpoint_error(status, body)
        if not isinstance(data, list):
            raise MalformedResponseError("/models had no data list")
        return [entry for entry in data if isinstance(entry, dict)]

    async def credits(self) -> Credits:
        """The balance, cached for the credits TTL."""
        return await self._credits.get()

    def credits_age(self) -> float | None:
        """Seconds since the balance was read from OpenRouter."""
        return self._credits.age()

    async def _fetch_credits(self) -> Credits:
        status, body = await self._get("/credits", self._management_key or self._api_key)
        if status == 200 and isinstance(body, dict) and isinstance(body.get("data"), dict):
            return Credits.from_credits(body["data"])
        if status == 200:
            raise MalformedResponseError("/credits had no data")
        # 403: only management keys may read /credits; any key may read its own /key.
        status, body = await self._get("/key", self._api_key)
        if status != 200:
            raise _endpoint_error(status, body)
        if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
            raise MalformedResponseError("/key had no data")
        return Credits.from_key(body["data"])
