"""A channel's effective settings: the channel's own, then the workspace default, then the
environment."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .config import Settings
from .store import SETTING_FIELDS, ChannelKey, Store
from .tools import DEFAULT_TOOLS

Source = Literal["channel", "workspace", "default"]


@dataclass(frozen=True)
class ChannelSettings:
    model: str
    fallbacks: list[str]
    system_prompt: str
    tools: list[str]
    temperature: float | None
    max_tokens: int | None
    budget_usd: float | None
    sources: dict[str, Source] = field(default_factory=dict)

    @property
    def chain(self) -> list[str]:
        return [self.model, *self.fallbacks]


def defaults(settings: Settings) -> dict[str, Any]:
    return {
        "model": settings.default_model,
        "fallbacks": settings.fallbacks,
        "system_prompt": settings.system_prompt,
        "tools": list(DEFAULT_TOOLS),
        "temperature": None,
        "max_tokens": None,
        "budget_usd": settings.channel_monthly_budget or None,
    }


async def resolve_settings(store: Store, key: ChannelKey, settings: Settings) -> ChannelSettings:
    channel = await store.get_settings(key)
    workspace = await store.get_settings(key.workspace_default())
    env = defaults(settings)
    values: dict[str, Any] = {}
    sources: dict[str, Source] = {}
    for name in SETTING_FIELDS:
        if name in channel:
            values[name], sources[name] = channel[name], "channel"
        elif name in workspace:
            values[name], sources[name] = workspace[name], "workspace"
        else:
            values[name], sources[name] = env[name], "default"
    return ChannelSettings(**values, sources=sources)
