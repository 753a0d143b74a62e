"""Prometheus metrics (prometheus-client), one registry per process (per Engine in tests).

Replies by platform and outcome, errors by kind, upstream time to first token and total
time, tokens and cost by model, tool calls by tool and outcome, limit refusals by reason,
and the platforms' 429 answers. `/metrics` serves `render()`.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

# Seconds: from a tenth of a second (a cached, fast model) to several minutes (long answers).
TIME_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.replies = Counter(
            "routerbot_replies", "Replies, by platform and outcome.", ["platform", "outcome"],
            registry=r,
        )  # fmt: skip
        self.errors = Counter(
            "routerbot_errors", "Failed replies, by error kind.", ["kind"], registry=r
        )
        self.ttft = Histogram(
            "routerbot_upstream_first_token_seconds",
            "From the request to OpenRouter to the first token of the answer.",
            buckets=TIME_BUCKETS,
            registry=r,
        )
        self.duration = Histogram(
            "routerbot_upstream_seconds",
            "From the request to OpenRouter to the end of the answer (tool rounds included).",
            buckets=TIME_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "routerbot_tokens", "Tokens, by model and kind (prompt, completion).",
            ["model", "kind"], registry=r,
        )  # fmt: skip
        self.cost = Counter(
            "routerbot_cost_usd", "What answers cost, in USD, by model.", ["model"], registry=r
        )
        self.tool_calls = Counter(
            "routerbot_tool_calls", "Tool calls, by tool and outcome.", ["tool", "outcome"],
            registry=r,
        )  # fmt: skip
        self.refusals = Counter(
            "routerbot_refusals",
            "Requests refused by a limit, by reason (rate_limit, budget, allowlist).",
            ["reason"],
            registry=r,
        )
        self.platform_429s = Counter(
            "routerbot_platform_rate_limited",
            "429 (ratelimited) answers from Slack or Discord, by platform and method.",
            ["platform", "method"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def value(self, name: str, **labels: str) -> float:
        """A sample's current value (0 when it has none yet), for tests and health checks."""
        found = self.registry.get_sample_value(name, labels)
        return found if found is not None else 0.0
