"""Per-user rate limits, per-channel concurrency and the month a budget covers."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager
from datetime import UTC, datetime


class LimitRefusal(Exception):
    """A request refused by a limit. `str()` says why and when it lifts; `reason` names the
    limit for metrics: rate_limit, budget or allowlist."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class RateLimiter:
    """At most `limit` requests per user in any `window_s` seconds (a sliding window)."""

    def __init__(
        self, limit: int, window_s: float = 60.0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._seen: dict[str, deque[float]] = {}

    def acquire(self, user: str) -> float | None:
        """Counts a request; returns None if allowed, else the seconds until one would be."""
        if self.limit <= 0:
            return None
        now = self._clock()
        times = self._seen.setdefault(user, deque())
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if len(times) >= self.limit:
            return times[0] + self.window_s - now
        times.append(now)
        return None


class ChannelGates:
    """At most `concurrency` replies at once per channel; the rest wait their turn, in order."""

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self._gates: dict[Hashable, tuple[asyncio.Semaphore, list[int]]] = {}

    def busy(self, key: Hashable) -> int:
        """How many replies of the channel are running or waiting."""
        gate = self._gates.get(key)
        return gate[1][0] if gate else 0

    @asynccontextmanager
    async def slot(self, key: Hashable) -> AsyncIterator[None]:
        semaphore, users = self._gates.setdefault(key, (asyncio.Semaphore(self.concurrency), [0]))
        users[0] += 1
        try:
            async with semaphore:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:  # forget idle channels, so the table does not only grow
                del self._gates[key]


def month_bounds(now: float) -> tuple[float, float]:
    """The Unix times at which the current UTC month began and the next one begins."""
    today = datetime.fromtimestamp(now, UTC)
    start = today.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else (start.replace(month=start.month + 1))
    )
    return start.timestamp(), following.timestamp()


def day_start(now: float) -> float:
    today = datetime.fromtimestamp(now, UTC)
    return today.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
