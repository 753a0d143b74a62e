"""The tool interface: a name, a JSON schema, and an async run.

A failing tool never breaks the loop: an unknown name, arguments that are not a JSON
object or miss a required field, and any exception all become an error result for that
call, which goes back to the model like any other result.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from ..openrouter.types import JSON, ToolCall

log = logging.getLogger(__name__)

MAX_RESULT_CHARS = 32_000


@dataclass(frozen=True)
class ToolContext:
    """Who asked, and where: tools confine themselves to this conversation."""

    platform: str
    workspace: str
    channel: str
    thread: str
    user_id: str


class Tool(Protocol):
    name: str
    description: str
    parameters: JSON  # JSON schema of the arguments object

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> str: ...


@dataclass(frozen=True)
class ToolResult:
    call_id: str
    name: str
    ok: bool
    text: str


def summarize_arguments(arguments: dict[str, Any] | None, limit: int = 80) -> str:
    """`key=value, ...` short enough for a status line."""
    if not arguments:
        return ""
    parts = []
    for key, value in arguments.items():
        shown = value if isinstance(value, str) else repr(value)
        if len(shown) > 40:
            shown = shown[:37] + "..."
        parts.append(f"{key}={shown}")
    text = ", ".join(parts)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ToolRegistry:
    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            self.register(tool)

    def register(self, tool: Tool) -> None:
        self._tools[tool.name] = tool

    def names(self) -> list[str]:
        return sorted(self._tools)

    def schemas(self, enabled: Iterable[str]) -> list[JSON]:
        """Function schemas for the enabled tools that exist, in the request's shape."""
        return [
            {
                "type": "function",
                "function": {
                    "name": tool.name,
                    "description": tool.description,
                    "parameters": tool.parameters,
                },
            }
            for name in enabled
            if (tool := self._tools.get(name)) is not None
        ]

    async def call(
        self, call: ToolCall, context: ToolContext, enabled: Iterable[str]
    ) -> ToolResult:
        def fail(message: str) -> ToolResult:
            return ToolResult(call.id, call.name, False, f"Error: {message}")

        tool = self._tools.get(call.name)
        if tool is None or call.name not in set(enabled):
            available = ", ".join(n for n in enabled if n in self._tools) or "none"
            return fail(f"there is no tool named {call.name!r}; available: {available}")
        arguments = call.arguments
        if arguments is None:
            return fail("the arguments were not a JSON object")
        required = tool.parameters.get("required", [])
        missing = [name for name in required if name not in arguments]
        if missing:
            return fail(f"missing required argument(s): {', '.join(missing)}")
        try:
            text = await tool.run(arguments, context)
        except Exception as exc:
            log.info("tool %s failed: %s", call.name, type(exc).__name__)
            return fail(f"{call.name} failed ({type(exc).__name__}: {str(exc)[:200]})")
        if len(text) > MAX_RESULT_CHARS:
            cut = len(text) - MAX_RESULT_CHARS
            text = text[:MAX_RESULT_CHARS] + f"\n[truncated: {cut} more characters]"
        return ToolResult(call.id, call.name, True, text)
