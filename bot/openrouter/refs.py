"""Model references: `openrouter/<vendor>/<model>[:variant]`, parsed and checked.

People type ids in several shapes; inside the bot a model is its OpenRouter API id
(`anthropic/claude-sonnet-4`) and it is shown back in the canonical form
(`openrouter/anthropic/claude-sonnet-4`). Routers keep OpenRouter's own names
(`openrouter/auto`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .catalogue import Catalogue, ModelInfo
from .errors import display_model

ROUTERS = frozenset({"openrouter/auto", "openrouter/free"})
# Variants OpenRouter applies to any model; `:free` is a model of its own in the catalogue.
ROUTING_VARIANTS = frozenset({"nitro", "floor", "online", "thinking", "extended", "exacto"})
EXAMPLE = "openrouter/anthropic/claude-sonnet-4"
FORM = "openrouter/<vendor>/<model>[:variant]"

_API_ID = re.compile(r"~?[a-z0-9][a-z0-9._-]*/[a-z0-9][a-z0-9._-]*(:[a-z0-9-]+)?")


class ModelRefError(ValueError):
    """A model reference that is malformed or names no known model. `str()` is for users."""

    def __init__(self, text: str, suggestions: list[str] | None = None) -> None:
        self.text = text
        self.suggestions = suggestions or []
        shown = text if len(text) <= 80 else text[:77] + "..."
        message = (
            f"`{shown}` is not a model OpenRouter knows. Model ids look like {FORM}, "
            f"for example {EXAMPLE}."
        )
        if self.suggestions:
            message += " Did you mean " + " or ".join(self.suggestions) + "?"
        super().__init__(message)


@dataclass(frozen=True)
class ModelRef:
    api_id: str
    info: ModelInfo | None = None  # None for routers and routing variants

    @property
    def canonical(self) -> str:
        return display_model(self.api_id)

    def __str__(self) -> str:
        return self.canonical


def to_api_id(text: str) -> str:
    """The OpenRouter API id a reference spells, checked for shape only."""
    cleaned = text.strip().strip("`'\"").strip().lower()
    if cleaned in ROUTERS:
        return cleaned
    candidate = cleaned.removeprefix("openrouter/")
    if not _API_ID.fullmatch(candidate):
        raise ModelRefError(text)
    return candidate


async def resolve(text: str, catalogue: Catalogue) -> ModelRef:
    """The model a reference names, checked against the catalogue.

    Raises ModelRefError (with the nearest known ids) for anything OpenRouter would not
    serve, and the catalogue's OpenRouterError when it cannot be read at all.
    """
    try:
        api_id = to_api_id(text)
    except ModelRefError:
        raise ModelRefError(text, await catalogue.suggest(text)) from None
    if api_id in ROUTERS:
        return ModelRef(api_id)
    info = await catalogue.get(api_id)
    if info is not None:
        return ModelRef(api_id, info)
    base, _, variant = api_id.partition(":")
    if variant in ROUTING_VARIANTS:
        base_info = await catalogue.get(base)
        if base_info is not None:
            return ModelRef(api_id, base_info)
    raise ModelRefError(text, await catalogue.suggest(api_id))
