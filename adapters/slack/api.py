"""Calls to the Slack Web API, paced and retried the way Slack asks.

Every call goes through `SlackApi.call`: it waits for its slot in the workspace's budget
for that method, and on a `ratelimited` answer holds that budget back for the
`Retry-After` Slack gave and tries again, a bounded number of times.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from adapters.pacing import Pacer
from bot.metrics import Metrics

log = logging.getLogger(__name__)

RATE_LIMIT_ATTEMPTS = 6
RETRY_AFTER_CAP_S = 60.0


def error_code(error: SlackApiError) -> str:
    """Slack's short error code (`ratelimited`, `msg_too_long`, ...)."""
    response = error.response
    try:
        return str(response.get("error") or "")
    except (AttributeError, TypeError):  # a response that was not JSON
        return ""


def is_rate_limited(error: SlackApiError) -> bool:
    return error.response.status_code == 429 or error_code(error) == "ratelimited"


def retry_after(error: SlackApiError) -> float:
    raw = (error.response.headers or {}).get("Retry-After") or (error.response.headers or {}).get(
        "retry-after"
    )
    try:
        return min(RETRY_AFTER_CAP_S, max(0.0, float(raw))) if raw else 1.0
    except ValueError:
        return 1.0


class SlackApi:
    def __init__(self, web: AsyncWebClient, pacer: Pacer, metrics: Metrics | None = None) -> None:
        self.web = web
        self.pacer = pacer
        self.metrics = metrics or Metrics()

    async def call(
        self,
        method: str,
        team: str,
        channel: str,
        send: Callable[[], Awaitable[AsyncSlackResponse]],
        *,
        taken: bool = False,
    ) -> AsyncSlackResponse:
        """Runs `send` (one Web API call of `method`) in its turn; retries `ratelimited`.

        `taken`: the caller already took this call's turn with `pacer.try_take` (a progress
        update); then a `ratelimited` answer is not retried here: the reply sends newer
        text later instead."""
        for attempt in range(1, RATE_LIMIT_ATTEMPTS + 1):
            if not taken or attempt > 1:
                await self.pacer.wait(team, method, channel)
            try:
                return await send()
            except SlackApiError as error:
                if not is_rate_limited(error):
                    raise
                self.metrics.platform_429s.labels("slack", method).inc()
                wait = retry_after(error)
                log.info("slack: %s ratelimited in %s; waiting %.1f s", method, team, wait)
                self.pacer.hold(team, method, channel, wait)
                if taken or attempt == RATE_LIMIT_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover
