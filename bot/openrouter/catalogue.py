"""The model catalogue (`GET /models`): cached, searchable, with "did you mean"."""

from __future__ import annotations

import difflib
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .cache import CachedValue
from .errors import display_model
from .types import JSON


def _price(raw: Any) -> float | None:
    """USD per token; None where the price varies (routers publish -1)."""
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return value if value >= 0 else None


def _int(raw: Any) -> int | None:
    return raw if isinstance(raw, int) and not isinstance(raw, bool) and raw > 0 else None


def _obj(raw: Any) -> dict[str, Any]:
    return raw if isinstance(raw, dict) else {}


@dataclass(frozen=True)
class ModelInfo:
    id: str  # OpenRouter's id, e.g. "anthropic/claude-sonnet-4"
    name: str
    context_length: int | None
    prompt_price: float | None  # USD per token
    completion_price: float | None
    supports_tools: bool
    supports_images: bool
    max_completion_tokens: int | None = None

    @property
    def canonical(self) -> str:
        return display_model(self.id)

    @classmethod
    def from_json(cls, raw: Any) -> ModelInfo | None:
        """One catalogue entry; None for an entry too broken to use."""
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str) or not raw["id"]:
            return None
        pricing = _obj(raw.get("pricing"))
        modalities = _obj(raw.get("architecture")).get("input_modalities")
        params = raw.get("supported_parameters")
        top = _obj(raw.get("top_provider"))
        return cls(
            id=raw["id"],
            name=str(raw.get("name") or raw["id"]),
            context_length=_int(raw.get("context_length")),
            prompt_price=_price(pricing.get("prompt")),
            completion_price=_price(pricing.get("completion")),
            supports_tools=isinstance(params, list) and "tools" in params,
            supports_images=isinstance(modalities, list) and "image" in modalities,
            max_completion_tokens=_int(top.get("max_completion_tokens")),
        )


@dataclass(frozen=True)
class _Index:
    models: list[ModelInfo]
    by_id: dict[str, ModelInfo]


class Catalogue:
    """OpenRouter's models, fetched at most once per TTL however many callers ask."""

    def __init__(
        self,
        fetch: Callable[[], Awaitable[list[JSON]]],
        ttl_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._cache: CachedValue[_Index] = CachedValue(self._load, ttl_s, clock=clock)

    async def _load(self) -> _Index:
        entries = [ModelInfo.from_json(raw) for raw in await self._fetch()]
        models = sorted((m for m in entries if m is not None), key=lambda m: m.id)
        return _Index(models, {m.id: m for m in models})

    async def models(self) -> list[ModelInfo]:
        return (await self._cache.get()).models

    async def get(self, api_id: str) -> ModelInfo | None:
        return (await self._cache.get()).by_id.get(api_id)

    async def search(self, query: str = "") -> list[ModelInfo]:
        """Models whose id or name holds every word of the query, ids that start with it first."""
        words = query.lower().removeprefix("openrouter/").split()
        hits = [
            m for m in await self.models() if all(w in f"{m.id} {m.name}".lower() for w in words)
        ]
        first = words[0] if words else ""
        return sorted(hits, key=lambda m: (not m.id.split("/")[-1].startswith(first), m.id))

    async def suggest(self, text: str, limit: int = 3) -> list[str]:
        return suggest(text, (m.id for m in await self.models()), limit)


def suggest(text: str, ids: Iterable[str], limit: int = 3) -> list[str]:
    """The canonical ids nearest to `text`, best first: "did you mean ...?"."""
    query = text.strip().lower().removeprefix("openrouter/")
    query_tail = query.split("/")[-1]
    scored: list[tuple[float, str]] = []
    for api_id in ids:
        tail = api_id.split("/")[-1]
        score = max(
            difflib.SequenceMatcher(None, query, api_id).ratio(),
            difflib.SequenceMatcher(None, query_tail, tail).ratio(),
        )
        if query_tail and query_tail in api_id:
            score += 0.3
        if score >= 0.6:
            scored.append((score, api_id))
    scored.sort(key=lambda pair: (-pair[0], pair[1]))
    return [display_model(api_id) for _, api_id in scored[:limit]]
