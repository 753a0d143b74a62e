"""The account's credit balance: `/credits`, or `/key` where that is all a key may read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal


def _num(raw: Any) -> float | None:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None
    return float(raw)


@dataclass(frozen=True)
class Credits:
    """What OpenRouter says about money. `balance` is None when it cannot be known."""

    source: Literal["credits", "key"]
    total_credits: float | None = None
    total_usage: float | None = None
    limit: float | None = None
    limit_remaining: float | None = None
    limit_reset: str | None = None
    usage_daily: float | None = None
    usage_monthly: float | None = None
    is_free_tier: bool = False

    @property
    def balance(self) -> float | None:
        if self.source == "credits":
            if self.total_credits is None or self.total_usage is None:
                return None
            return self.total_credits - self.total_usage
        return self.limit_remaining

    @property
    def note(self) -> str | None:
        """Why the balance is missing, and what would show it."""
        if self.balance is not None:
            return None
        if self.source == "key":
            return (
                "This key has no spending limit, so OpenRouter tells it the usage but not the "
                "account balance. Set ROUTERBOT_OPENROUTER_MANAGEMENT_KEY to show the balance."
            )
        return "OpenRouter did not say the balance."

    @classmethod
    def from_credits(cls, data: Any) -> Credits:
        data = data if isinstance(data, dict) else {}
        return cls(
            source="credits",
            total_credits=_num(data.get("total_credits")),
            total_usage=_num(data.get("total_usage")),
        )

    @classmethod
    def from_key(cls, data: Any) -> Credits:
        data = data if isinstance(data, dict) else {}
        reset = data.get("limit_reset")
        return cls(
            source="key",
            total_usage=_num(data.get("usage")),
            limit=_num(data.get("limit")),
            limit_remaining=_num(data.get("limit_remaining")),
            limit_reset=reset if isinstance(reset, str) else None,
            usage_daily=_num(data.get("usage_daily")),
            usage_monthly=_num(data.get("usage_monthly")),
            is_free_tier=data.get("is_free_tier") is True,
        )
