"""Pacing platform API calls: one budget per workspace and method (or per channel),
shared by every reply.

Slack limits `chat.update` per workspace (tier 3, about 50 a minute), not per message, so
ten replies streaming at once must share one rhythm; Discord's practice is about one edit
a second per channel. Each call waits for its slot; a rate-limit answer holds the whole
budget back for its `Retry-After`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping

# Seconds between two calls of a method in one Slack workspace (one channel for postMessage).
SLACK_INTERVALS: Mapping[str, float] = {
    "chat.update": 1.2,  # tier 3: 50 a minute
    "chat.appendStream": 0.6,  # tier 4: 100 a minute
    "chat.postMessage": 1.0,  # about one message a second per channel
}
SLACK_PER_CHANNEL = frozenset({"chat.postMessage"})


class Pacer:
    """`intervals`: seconds between two calls of a method; methods in `per_channel` have a
    budget per channel, the others one per workspace."""

    def __init__(
        self,
        intervals: Mapping[str, float] = SLACK_INTERVALS,
        *,
        per_channel: frozenset[str] = SLACK_PER_CHANNEL,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.intervals = dict(intervals)
        self.per_channel = per_channel
        self._clock = clock
        self._sleep = sleep
        self._next: dict[tuple[str, str], float] = {}
        self._held: dict[tuple[str, str], float] = {}

    def _key(self, team: str, method: str, channel: str) -> tuple[str, str]:
        return (f"{team}/{channel}" if method in self.per_channel else team, method)

    async def wait(self, team: str, method: str, channel: str = "") -> None:
        """Waits for this call's turn, and takes it."""
        key = self._key(team, method, channel)
        interval = self.intervals.get(method, 0.0)
        while True:
            now = self._clock()
            slot = max(now, self._next.get(key, 0.0), self._held.get(key, 0.0))
            self._next[key] = slot + interval
            if slot > now:
                await self._sleep(slot - now)
            if self._held.get(key, 0.0) <= self._clock():
                return
            # A ratelimited answer arrived while this call waited: queue again behind it.

    def hold(self, team: str, method: str, channel: str, seconds: float) -> None:
        """Slack said `ratelimited`: no call of this budget before `seconds` from now."""
        key = self._key(team, method, channel)
        until = self._clock() + seconds
        self._held[key] = max(self._held.get(key, 0.0), until)
        self._next[key] = max(self._next.get(key, 0.0), until)
