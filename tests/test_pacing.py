"""The pacer: budgets per workspace (or channel) and method, held back by 429s."""

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


def pacer(clock: Clock, **limits: tuple[int, float]) -> Pacer:
    return Pacer(
        {k.replace("_", "."): v for k, v in limits.items()},
        per_channel=frozenset({"chat.postMessage"}),
        clock=clock,
        sleep=clock.sleep,
    )


async def test_a_workspace_budget_allows_a_burst_then_one_rhythm() -> None:
    clock = Clock()
    budget = pacer(clock, chat_update=(3, 60.0))
    times = []
    for _ in range(5):  # five replies updating in one workspace
        await budget.wait("T1", "chat.update")
        times.append(clock.now)
    assert times == pytest.approx([0.0, 0.0, 0.0, 60.0, 60.0])
    await budget.wait("T2", "chat.update")  # another workspace has its own budget
    assert clock.now == pytest.approx(60.0)


async def test_post_message_is_paced_per_channel() -> None:
    clock = Clock()
    budget = pacer(clock, chat_postMessage=(1, 1.0))
    await budget.wait("T1", "chat.postMessage", "C1")
    await budget.wait("T1", "chat.postMessage", "C2")
    assert clock.now == 0.0
    await budget.wait("T1", "chat.postMessage", "C1")
    assert clock.now == 1.0


def test_progress_calls_leave_a_reserve_and_never_queue() -> None:
    clock = Clock()
    budget = pacer(clock, chat_update=(4, 10.0))
    assert budget.try_take("T1", "chat.update", reserve=2) == 0
    assert budget.try_take("T1", "chat.update", reserve=2) == 0
    # Two calls are left in the window, kept for final texts: a progress call waits...
    assert budget.try_take("T1", "chat.update", reserve=2) == pytest.approx(10.0)
    # ... while a call that must go still may.
    assert budget.try_take("T1", "chat.update") == 0
    assert budget.delay("T1", "chat.update") == 0
    assert budget.try_take("T1", "chat.update") == 0
    assert budget.try_take("T1", "chat.update") == pytest.approx(10.0)


async def test_a_429_holds_the_whole_budget_back() -> None:
    clock = Clock()
    budget = pacer(clock, chat_update=(50, 60.0))
    await budget.wait("T1", "chat.update")
    budget.hold("T1", "chat.update", "", 7.0)
    assert budget.try_take("T1", "chat.update") == pytest.approx(7.0)
    await budget.wait("T1", "chat.update")
    assert clock.now == pytest.approx(7.0)


def test_methods_without_a_limit_go_at_once_until_a_429() -> None:
    clock = Clock()
    budget = pacer(clock)
    assert budget.try_take("T1", "chat.stopStream") == 0
    budget.hold("T1", "chat.stopStream", "", 2.0)
    assert budget.try_take("T1", "chat.stopStream") == pytest.approx(2.0)
