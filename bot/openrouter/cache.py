"""A cached value that one request refreshes for every concurrent caller."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


class CachedValue(Generic[T]):
    """Holds a value for `ttl_s` seconds.

    Concurrent callers of an expired value share one fetch. When a refresh fails and an
    older copy exists, the older copy is served (and the failure logged): a stale model
    list beats no answer.
    """

    STALE_RETRY_S = 30.0

    def __init__(
        self,
        fetch: Callable[[], Awaitable[T]],
        ttl_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._ttl_s = ttl_s
        self._clock = clock
        self._value: T | None = None
        self._fetched_at: float | None = None  # when to count freshness from
        self._value_at: float | None = None  # when the value was really fetched
        self._inflight: asyncio.Task[T] | None = None

    @property
    def fresh(self) -> bool:
        return self._fetched_at is not None and self._clock() - self._fetched_at < self._ttl_s

    def age(self) -> float | None:
        """Seconds since the value was fetched; None before the first fetch."""
        return None if self._value_at is None else self._clock() - self._value_at

    async def get(self) -> T:
        if self._value is not None and self.fresh:
            return self._value
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(self._refresh())
        # shield: a caller that gives up must not cancel the fetch the others wait on.
        return await asyncio.shield(self._inflight)

    async def _refresh(self) -> T:
        try:
            value = await self._fetch()
        except Exception:
            if self._value is None:
                raise
            log.warning("refresh failed; serving the cached copy")
            # Try again after a short pause rather than on every call while upstream is down.
            pause = min(self._ttl_s, self.STALE_RETRY_S)
            self._fetched_at = self._clock() - self._ttl_s + pause
            return self._value
        finally:
            self._inflight = None
        self._value = value
        self._fetched_at = self._value_at = self._clock()
        return value
