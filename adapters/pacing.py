"""Pacing platform API calls: one budget per workspace and method (or per channel),
shared by every reply.

A budget allows at most `limit` calls in any `window` seconds, as Slack's tiers and
Discord's buckets count them: chat.update is 50 a minute per Slack workspace, however
many replies stream at once; a Discord channel takes 5 message edits per 5 seconds.

Calls come in two kinds. A call a reply cannot do without (its first message, its final
text) waits for its turn with `wait`. A call that only shows progress (one more update
while text streams) asks `try_take`, which leaves `reserve` calls of the window to the
first kind and otherwise says how long until it could go; the reply then sends more text
in a later call instead of queueing. A rate-limit answer holds the whole budget back for
its `Retry-After`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

# Slack's documented limits: (calls, seconds). Tier 3 is 50+ a minute, tier 4 100+.
SLACK_LIMITS: Mapping[str, tuple[int, float]] = {
    "chat.update": (50, 60.0),
    "chat.appendStream": (100, 60.0),
    "chat.startStream": (20, 60.0),
    "chat.postMessage": (1, 1.0),  # per channel
    "chat.delete": (50, 60.0),
    "conversations.replies": (50, 60.0),
}
SLACK_PER_CHANNEL = frozenset({"chat.postMessage"})


@dataclass
class Budget:
    """At most `limit` calls in any `window` seconds; `limit` 0: no limit but 429s."""

    limit: int
    window: float
    times: deque[float] = field(default_factory=deque)
    held_until: float = 0.0

    def delay(self, now: float, reserve: int = 0) -> float:
        """Seconds until a call may go, leaving `reserve` calls of the window unused."""
        wait = max(0.0, self.held_until - now)
        if not self.limit:
            return wait
        while self.times and self.times[0] <= now - self.window:
            self.times.popleft()
        allowed = max(1, self.limit - reserve)
        if len(self.times) >= allowed:
            wait = max(wait, self.times[len(self.times) - allowed] + self.window - now)
        return wait

    def take(self, now: float) -> None:
        if self.limit:
            self.times.append(now)

    def headroom(self, now: float) -> int:
        if self.delay(now) > 0:
            return 0
        return self.limit - len(self.times) if self.limit else UNLIMITED


UNLIMITED = 1_000_000


class Pacer:
    """`limits`: method -> (calls, seconds); methods in `per_channel` have a budget per
    channel, the others one per workspace. Methods without a limit go at once, unless
    the platform answered 429."""

    def __init__(
        self,
        limits: Mapping[str, tuple[int, float]] = SLACK_LIMITS,
        *,
        per_channel: frozenset[str] = SLACK_PER_CHANNEL,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.limits = dict(limits)
        self.per_channel = per_channel
        self._clock = clock
        self._sleep = sleep
        self._budgets: dict[tuple[str, str], Budget] = {}

    def _budget(self, team: str, method: str, channel: str) -> Budget:
        key = (f"{team}/{channel}" if method in self.per_channel else team, method)
        budget = self._budgets.get(key)
        if budget is None:
            budget = self._budgets[key] = Budget(*self.limits.get(method, (0, 0.0)))
        return budget

    def try_take(self, team: str, method: str, channel: str = "", *, reserve: int = 0) -> float:
        """Takes a call now and returns 0, or returns how many seconds until one is free
        (leaving `reserve` calls of the window to calls that must go)."""
        budget = self._budget(team, method, channel)
        now = self._clock()
        wait = budget.delay(now, reserve)
        if wait <= 0:
            budget.take(now)
        return wait

    def delay(self, team: str, method: str, channel: str = "") -> float:
        """Seconds until a call of this budget could go, without taking it."""
        return self._budget(team, method, channel).delay(self._clock())

    def headroom(self, team: str, method: str, channel: str = "") -> int:
        """Calls left in the current window (0 while held back by a 429)."""
        return self._budget(team, method, channel).headroom(self._clock())

    async def wait(self, team: str, method: str, channel: str = "") -> None:
        """Waits for this call's turn, and takes it."""
        while (wait := self.try_take(team, method, channel)) > 0:
            await self._sleep(wait)

    def hold(self, team: str, method: str, channel: str, seconds: float) -> None:
        """The platform said 429: no call of this budget before `seconds` from now."""
        budget = self._budget(team, method, channel)
        budget.held_until = max(budget.held_until, self._clock() + seconds)
