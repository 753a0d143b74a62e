"""Waiting on a condition instead of for a fixed time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

WITHIN_S = 10.0
POLL_S = 0.01


async def eventually(condition: Callable[[], object], what: str = "the condition") -> None:
    """Returns as soon as `condition()` is true; fails the test after WITHIN_S seconds."""
    deadline = time.monotonic() + WITHIN_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(POLL_S)
