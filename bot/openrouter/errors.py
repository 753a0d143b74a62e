"""OpenRouter failures, mapped once to a small typed set.

Every error carries `user_message`: a plain sentence that says what to do next, safe to
show in a channel. Upstream text is kept in `detail` for logs, with anything shaped like
a key redacted.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from typing import Any

from .types import PassedOver

KEY_PATTERN = re.compile(r"sk-or-[A-Za-z0-9_-]+")
CREDITS_URL = "https://openrouter.ai/settings/credits"


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Text with every known secret and anything shaped like an OpenRouter key hidden."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return KEY_PATTERN.sub("sk-or-[redacted]", text)


class ErrorKind(enum.StrEnum):
    INVALID_KEY = "invalid_key"
    INSUFFICIENT_CREDITS = "insufficient_credits"
    MODERATION = "moderation"
    RATE_LIMITED = "rate_limited"
    UNKNOWN_MODEL = "unknown_model"
    NO_TOOL_SUPPORT = "no_tool_support"
    CONTEXT_TOO_LONG = "context_too_long"
    PROVIDER_UNAVAILABLE = "provider_unavailable"
    TIMEOUT = "timeout"
    MALFORMED_RESPONSE = "malformed_response"
    BAD_REQUEST = "bad_request"

    @property
    def transient(self) -> bool:
        """Worth sending the same request again after a pause."""
        return self in _TRANSIENT

    @property
    def falls_back(self) -> bool:
        """Worth going on with the next models of the fallback chain."""
        return self in _FALLS_BACK


_TRANSIENT = {ErrorKind.RATE_LIMITED, ErrorKind.PROVIDER_UNAVAILABLE, ErrorKind.TIMEOUT}
# A key, credit or moderation problem fails the same way on every model, so the chain
# stops there; a model that is missing, down or lacks tools may have a sibling that works.
_FALLS_BACK = _TRANSIENT | {
    ErrorKind.UNKNOWN_MODEL,
    ErrorKind.NO_TOOL_SUPPORT,
    ErrorKind.MALFORMED_RESPONSE,
}


class OpenRouterError(Exception):
    """A failure talking to OpenRouter. `str()` is the user-facing message."""

    kind: ErrorKind = ErrorKind.BAD_REQUEST

    def __init__(
        self,
        detail: str = "",
        *,
        status: int | None = None,
        model: str | None = None,
        retry_after: float | None = None,
        partial_text: str = "",
    ) -> None:
        self.detail = redact(detail)
        self.status = status
        self.model = model
        self.retry_after = retry_after
        # Text the model had already streamed when the error arrived.
        self.partial_text = partial_text
        # Models of the fallback chain tried before this error, set by the client.
        self.passed_over: list[PassedOver] = []
        super().__init__(self.user_message)

    @property
    def _model_name(self) -> str:
        return f"`{display_model(self.model)}`" if self.model else "the model"

    @property
    def _model_name_at_start(self) -> str:
        """The same at the start of a sentence (str.capitalize would lowercase the id)."""
        name = self._model_name
        return name[:1].upper() + name[1:]

    @property
    def user_message(self) -> str:
        detail = f" ({self.detail.rstrip('.')})" if self.detail else ""
        return f"OpenRouter refused the request{detail}. Check the command and try again."

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind.value!r}, status={self.status!r})"


class InvalidKeyError(OpenRouterError):
    kind = ErrorKind.INVALID_KEY

    @property
    def user_message(self) -> str:
        return (
            "OpenRouter rejected the bot's API key. An admin needs to set a valid "
            "OPENROUTER_API_KEY (https://openrouter.ai/settings/keys)."
        )


class InsufficientCreditsError(OpenRouterError):
    kind = ErrorKind.INSUFFICIENT_CREDITS

    @property
    def user_message(self) -> str:
        return (
            "The OpenRouter account is out of credits, or this key has reached its "
            f"spending limit. Check with /credits; an admin can add credits at {CREDITS_URL}."
        )


class ModerationError(OpenRouterError):
    kind = ErrorKind.MODERATION

    def __init__(self, detail: str = "", *, reasons: Iterable[str] = (), **kw: Any) -> None:
        self.reasons = [str(r) for r in reasons]
        super().__init__(detail, **kw)

    @property
    def user_message(self) -> str:
        why = f" ({', '.join(self.reasons)})" if self.reasons else ""
        return (
            f"The provider's moderation flagged this message{why}. Rephrase it, or pick "
            "another model with /model."
        )


class RateLimitedError(OpenRouterError):
    kind = ErrorKind.RATE_LIMITED

    @property
    def user_message(self) -> str:
        when = (
            f"again in about {max(1, round(self.retry_after))} s"
            if self.retry_after
            else "again in a minute"
        )
        return (
            f"{self._model_name_at_start} is rate-limited right now. Try {when}, or add "
            "fallback models with /model."
        )


class UnknownModelError(OpenRouterError):
    kind = ErrorKind.UNKNOWN_MODEL

    @property
    def user_message(self) -> str:
        return (
            f"OpenRouter does not know {self._model_name}. Pick a model with /model "
            "(ids look like openrouter/<vendor>/<model>)."
        )


class NoToolSupportError(OpenRouterError):
    kind = ErrorKind.NO_TOOL_SUPPORT

    @property
    def user_message(self) -> str:
        return (
            f"{self._model_name_at_start} cannot use tools. Pick a model that can with "
            "/model, or turn tools off for this channel."
        )


class ContextTooLongError(OpenRouterError):
    kind = ErrorKind.CONTEXT_TOO_LONG

    @property
    def user_message(self) -> str:
        return (
            f"This conversation is too long for {self._model_name}. Start a new thread, "
            "or pick a model with a larger context window with /model."
        )


class ProviderUnavailableError(OpenRouterError):
    kind = ErrorKind.PROVIDER_UNAVAILABLE

    @property
    def user_message(self) -> str:
        return (
            f"No provider could serve {self._model_name} just now. Try again in a minute, "
            "or add fallback models with /model."
        )


class UnreachableError(ProviderUnavailableError):
    """No connection to OpenRouter at all (as opposed to OpenRouter finding no provider)."""

    @property
    def user_message(self) -> str:
        return (
            "The bot could not reach OpenRouter. Try again in a minute; if it keeps "
            "happening, whoever runs the bot should check its network and OPENROUTER_BASE_URL."
        )


class UpstreamTimeoutError(OpenRouterError):
    kind = ErrorKind.TIMEOUT

    @property
    def user_message(self) -> str:
        return (
            "OpenRouter took too long to answer. Try again; if it keeps happening, pick a "
            "faster model with /model."
        )


class MalformedResponseError(OpenRouterError):
    kind = ErrorKind.MALFORMED_RESPONSE

    @property
    def user_message(self) -> str:
        return (
            "OpenRouter sent an answer the bot could not read. Try again; if it keeps "
            "happening, pick another model with /model."
        )


def display_model(api_id: str) -> str:
    """The canonical form `openrouter/<vendor>/<model>` of an OpenRouter API id."""
    return api_id if api_id.startswith("openrouter/") else f"openrouter/{api_id}"


def _retry_after(headers: Mapping[str, str], metadata: Mapping[str, Any]) -> float | None:
    for raw in (headers.get("retry-after"), metadata.get("retry_after")):
        if raw is None:
            continue
        try:
            return max(0.0, float(raw))
        except (TypeError, ValueError):
            continue
    return None


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


_CONTEXT_WORDS = re.compile(r"context length|context window|maximum context|too many tokens", re.I)
_UNKNOWN_MODEL_WORDS = re.compile(r"not a valid model|model not found|unknown model", re.I)
_STRING_CODES: dict[str, ErrorKind] = {
    "rate_limit_exceeded": ErrorKind.RATE_LIMITED,
    "provider_unavailable": ErrorKind.PROVIDER_UNAVAILABLE,
    "server_error": ErrorKind.PROVIDER_UNAVAILABLE,
    "context_length_exceeded": ErrorKind.CONTEXT_TOO_LONG,
    "timeout": ErrorKind.TIMEOUT,
    "invalid_api_key": ErrorKind.INVALID_KEY,
    "insufficient_credits": ErrorKind.INSUFFICIENT_CREDITS,
    "moderation": ErrorKind.MODERATION,
}
_CLASSES: dict[ErrorKind, type[OpenRouterError]] = {
    cls.kind: cls
    for cls in (
        OpenRouterError,
        InvalidKeyError,
        InsufficientCreditsError,
        ModerationError,
        RateLimitedError,
        UnknownModelError,
        NoToolSupportError,
        ContextTooLongError,
        ProviderUnavailableError,
        UpstreamTimeoutError,
        MalformedResponseError,
    )
}


def classify(status: int | None, message: str, metadata: Mapping[str, Any]) -> ErrorKind:
    """The kind of an OpenRouter error from its status, message and metadata."""
    error_type = metadata.get("error_type")
    if isinstance(error_type, str) and error_type in _STRING_CODES:
        return _STRING_CODES[error_type]
    if status == 401:
        return ErrorKind.INVALID_KEY
    if status == 402:
        return ErrorKind.INSUFFICIENT_CREDITS
    if status == 403:
        return ErrorKind.MODERATION
    if status == 404:
        if "tool" in message.lower():
            return ErrorKind.NO_TOOL_SUPPORT
        if _UNKNOWN_MODEL_WORDS.search(message):
            return ErrorKind.UNKNOWN_MODEL
        return ErrorKind.PROVIDER_UNAVAILABLE
    if status == 408:
        return ErrorKind.TIMEOUT
    if status == 429:
        return ErrorKind.RATE_LIMITED
    if status in (500, 502, 503, 524, 529):
        return ErrorKind.PROVIDER_UNAVAILABLE
    if _CONTEXT_WORDS.search(message):
        return ErrorKind.CONTEXT_TOO_LONG
    if _UNKNOWN_MODEL_WORDS.search(message):
        return ErrorKind.UNKNOWN_MODEL
    return ErrorKind.BAD_REQUEST


def error_from_body(
    body: Any,
    *,
    status: int | None,
    headers: Mapping[str, str] | None = None,
    model: str | None = None,
    partial_text: str = "",
) -> OpenRouterError:
    """The typed error for an error body (`{"error": {...}}`) or anything unreadable."""
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        if status is not None and status >= 500:
            return ProviderUnavailableError(
                f"HTTP {status}", status=status, model=model, partial_text=partial_text
            )
        return MalformedResponseError(
            f"HTTP {status}: no error object", status=status, model=model, partial_text=partial_text
        )
    message = str(err.get("message") or "")
    raw_meta = err.get("metadata")
    metadata: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
    availability = err.get("availability")
    if isinstance(availability, dict):
        metadata = {**availability, **metadata}
    code = err.get("code")
    code_status = _as_int(code)
    if isinstance(code, str) and code in _STRING_CODES and "error_type" not in metadata:
        metadata = {**metadata, "error_type": code}
    effective = code_status if code_status is not None else status
    kind = classify(effective, message, metadata)
    cls = _CLASSES[kind]
    kwargs: dict[str, Any] = {
        "status": effective,
        "model": model,
        "retry_after": _retry_after(headers or {}, metadata),
        "partial_text": partial_text,
    }
    if cls is ModerationError:
        reasons = metadata.get("reasons")
        kwargs["reasons"] = reasons if isinstance(reasons, list) else []
    return cls(message, **kwargs)
