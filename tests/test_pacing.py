"""The Slack pacer: one budget per workspace and method, held back by `ratelimited`."""

from __future__ import annotations

import asyncio

import pytest

from adapters.pacing import Pacer


class Clock:
    """Virtual time: sleeping advances it, so the test runs in no real time."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


async def test_calls_of_one_workspace_share_one_rhythm() -> None:
    clock = Clock()
    pacer = Pacer({"chat.update": 1.2}, clock=clock, sleep=clock.sleep)
    times = []
    for _ in range(4):  # four replies updating at once in one workspace
        await pacer.wait("T1", "chat.update")
        times.append(clock.now)
    assert times == pytest.approx([0.0, 1.2, 2.4, 3.6])
    await pacer.wait("T2", "chat.update")  # another workspace has its own budget
    assert clock.now == times[-1]


async def test_post_message_is_paced_per_channel() -> None:
    clock = Clock()
    pacer = Pacer({"chat.postMessage": 1.0}, clock=clock, sleep=clock.sleep)
    await pacer.wait("T1", "chat.postMessage", "C1")
    await pacer.wait("T1", "chat.postMessage", "C2")
    assert clock.now == 0.0
    await pacer.wait("T1", "chat.postMessage", "C1")
    assert clock.now == 1.0


async def test_ratelimited_holds_the_whole_budget_back() -> None:
    clock = Clock()
    pacer = Pacer({"chat.update": 0.5}, clock=clock, sleep=clock.sleep)
    await pacer.wait("T1", "chat.update")
    pacer.hold("T1", "chat.update", "", 7.0)
    await pacer.wait("T1", "chat.update")
    assert clock.now == 7.0
    await pacer.wait("T1", "chat.update")
    assert clock.now == 7.5
