"""What goes to OpenRouter and what comes back, as plain dataclasses."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

JSON = dict[str, Any]
Message = dict[str, Any]  # OpenAI chat shape: {"role": ..., "content": ..., ...}


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion request. `models` is the whole chain: first choice first."""

    models: list[str]
    messages: list[Message]
    tools: list[JSON] | None = None
    tool_choice: str | JSON | None = None
    parallel_tool_calls: bool | None = None
    provider: JSON | None = None
    plugins: list[JSON] | None = None
    session_id: str | None = None
    reasoning: JSON | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    # Anthropic prompt-caching breakpoints; see bot.openrouter.caching.
    prompt_caching: bool = True

    def body(self, group: list[str], *, stream: bool) -> JSON:
        """The JSON body for one request that tries the models of `group` in order."""
        body: JSON = {"model": group[0], "messages": self.messages, "stream": stream}
        if len(group) > 1:
            body["models"] = group
        optional = {
            "tools": self.tools,
            "tool_choice": self.tool_choice,
            "parallel_tool_calls": self.parallel_tool_calls,
            "provider": self.provider,
            "plugins": self.plugins,
            "session_id": self.session_id,
            "reasoning": self.reasoning,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return body


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    raw_arguments: str

    @property
    def arguments(self) -> JSON | None:
        """The parsed arguments; `""` reads as `{}`, and None means they are not a JSON object."""
        if not self.raw_arguments.strip():
            return {}
        try:
            value = json.loads(self.raw_arguments)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost: float | None = None
    cached_tokens: int = 0

    @classmethod
    def from_json(cls, raw: Any) -> Usage | None:
        if not isinstance(raw, dict):
            return None
        details = raw.get("prompt_tokens_details")
        cached = details.get("cached_tokens") if isinstance(details, dict) else None

        def count(value: Any) -> int:
            return value if isinstance(value, int) and not isinstance(value, bool) else 0

        cost = raw.get("cost")
        return cls(
            prompt_tokens=count(raw.get("prompt_tokens")),
            completion_tokens=count(raw.get("completion_tokens")),
            total_tokens=count(raw.get("total_tokens")),
            cost=float(cost)
            if isinstance(cost, int | float) and not isinstance(cost, bool)
            else None,
            cached_tokens=count(cached),
        )


@dataclass(frozen=True)
class PassedOver:
    """A model of the chain that did not answer, and why."""

    model: str
    kind: str
    reason: str


@dataclass(frozen=True)
class Completion:
    text: str
    model: str  # the model that served, as the response names it (may be a dated slug)
    finish_reason: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    reasoning: str = ""
    usage: Usage | None = None
    generation_id: str | None = None
    provider: str | None = None
    passed_over: list[PassedOver] = field(default_factory=list)


@dataclass(frozen=True)
class TextDelta:
    text: str
    type: Literal["text"] = "text"


@dataclass(frozen=True)
class ReasoningDelta:
    text: str
    type: Literal["reasoning"] = "reasoning"


@dataclass(frozen=True)
class FellBack:
    """The models of one request all failed; the chain goes on with the next ones."""

    failed: list[PassedOver]
    type: Literal["fell_back"] = "fell_back"


@dataclass(frozen=True)
class Done:
    completion: Completion
    type: Literal["done"] = "done"


StreamEvent = TextDelta | ReasoningDelta | FellBack | Done
