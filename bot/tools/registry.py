"""Tools are typed async functions; the registry turns them into what a model sees.

A tool's JSON schema comes from its signature and docstring, and arguments are validated
against it (pydantic) before it runs. A failing tool never breaks the loop: an unknown
name, bad arguments and any exception all become an error result for that call, which
goes back to the model like any other result.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from ..openrouter.types import JSON, ToolCall

if TYPE_CHECKING:
    from .workspace import Workspace

log = logging.getLogger(__name__)

MAX_RESULT_CHARS = 32_000


class ToolError(Exception):
    """A refusal or failure to report to the model as it is: `str()` is the whole message."""


@dataclass(frozen=True)
class ToolContext:
    """Who asked, and where: tools confine themselves to this conversation."""

    platform: str
    workspace_id: str
    channel: str
    thread: str
    user_id: str
    workspace: Workspace


@dataclass(frozen=True)
class ToolResult:
    call_id: str
    name: str
    ok: bool
    text: str


ToolFunction = Callable[..., Awaitable[str]]


def _docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """The description (text before `Args:`) and each argument's line under `Args:`."""
    text = inspect.cleandoc(doc or "")
    head, _, args = text.partition("Args:")
    described: dict[str, str] = {}
    current = None
    for line in args.splitlines():
        match = re.match(r"\s*(\w+)\s*(?:\([^)]*\))?:\s*(.*)", line)
        if match:
            current = match.group(1)
            described[current] = match.group(2).strip()
        elif current and line.strip():
            described[current] += " " + line.strip()
    return " ".join(head.split()), described


def _clean_schema(schema: Any) -> Any:
    """pydantic's schema without the `title` noise models do not need."""
    if isinstance(schema, dict):
        return {k: _clean_schema(v) for k, v in schema.items() if k != "title"}
    if isinstance(schema, list):
        return [_clean_schema(v) for v in schema]
    return schema


class FunctionTool:
    """A tool made of `async def name(ctx: ToolContext, arg: type = default, ...) -> str`."""

    def __init__(
        self,
        function: ToolFunction,
        *,
        activity: Callable[[dict[str, Any]], str] | None = None,
        max_output: int = MAX_RESULT_CHARS,
    ) -> None:
        self._function = function
        self._activity = activity
        self.max_output = max_output
        self.name = function.__name__.removeprefix("tool_")
        self.description, argument_docs = _docstring(function.__doc__)
        hints = get_type_hints(function)
        parameters = list(inspect.signature(function).parameters.values())[1:]  # not ctx
        fields: dict[str, Any] = {}
        for parameter in parameters:
            default = ... if parameter.default is inspect.Parameter.empty else parameter.default
            fields[parameter.name] = (
                hints[parameter.name],
                Field(default, description=argument_docs.get(parameter.name)),
            )
        self._arguments: type[BaseModel] = create_model(
            f"{self.name}_arguments",
            __config__=ConfigDict(extra="forbid", strict=False),
            **fields,
        )
        self.parameters: JSON = _clean_schema(self._arguments.model_json_schema())

    def activity(self, arguments: dict[str, Any] | None) -> str:
        """A short human line for status displays, e.g. "Reading build.log"."""
        if self._activity is not None and arguments is not None:
            try:
                return self._activity(arguments)
            except (KeyError, TypeError, ValueError):
                pass
        return f"Using {self.name}"

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> str:
        parsed = self._arguments.model_validate(arguments)
        values = {name: getattr(parsed, name) for name in type(parsed).model_fields}
        return await self._function(context, **values)


def tool(
    activity: Callable[[dict[str, Any]], str] | None = None,
    *,
    max_output: int = MAX_RESULT_CHARS,
) -> Callable[[ToolFunction], FunctionTool]:
    """Decorator: `@tool(lambda a: f"Reading {a['path']}")` over an async function."""

    def wrap(function: ToolFunction) -> FunctionTool:
        return FunctionTool(function, activity=activity, max_output=max_output)

    return wrap


def short(value: Any, limit: int = 40) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def summarize_arguments(arguments: dict[str, Any] | None, limit: int = 80) -> str:
    """`key=value, ...` short enough for a status line."""
    if not arguments:
        return ""
    text = ", ".join(f"{key}={short(value)}" for key, value in arguments.items())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _validation_message(error: ValidationError) -> str:
    problems = []
    for item in error.errors()[:5]:
        where = ".".join(str(p) for p in item["loc"]) or "arguments"
        problems.append(f"{where}: {item['msg']}")
    return "invalid arguments (" + "; ".join(problems) + ")"


class ToolRegistry:
    def __init__(self, tools: Iterable[FunctionTool] = ()) -> None:
        self._tools: dict[str, FunctionTool] = {}
        for item in tools:
            self.register(item)

    def register(self, item: FunctionTool) -> None:
        self._tools[item.name] = item

    def names(self) -> list[str]:
        return sorted(self._tools)

    def activity(self, call: ToolCall) -> str:
        found = self._tools.get(call.name)
        return found.activity(call.arguments) if found else f"Using {short(call.name, 30)}"

    def schemas(self, enabled: Iterable[str]) -> list[JSON]:
        """Function schemas for the enabled tools that exist, in the request's shape."""
        return [
            {
                "type": "function",
                "function": {
                    "name": found.name,
                    "description": found.description,
                    "parameters": found.parameters,
                },
            }
            for name in enabled
            if (found := self._tools.get(name)) is not None
        ]

    async def call(
        self, call: ToolCall, context: ToolContext, enabled: Iterable[str]
    ) -> ToolResult:
        def fail(message: str) -> ToolResult:
            return ToolResult(call.id, call.name, False, f"Error: {message}")

        allowed = [name for name in enabled if name in self._tools]
        found = self._tools.get(call.name)
        if found is None or call.name not in allowed:
            offered = ", ".join(allowed) or "none"
            return fail(f"there is no tool named {short(call.name, 60)!r}; available: {offered}")
        arguments = call.arguments
        if arguments is None:
            return fail("the arguments were not a JSON object")
        try:
            text = await found.run(arguments, context)
        except ValidationError as exc:
            return fail(_validation_message(exc))
        except ToolError as exc:
            return fail(str(exc))
        except Exception as exc:
            log.warning("tool %s failed: %s", call.name, type(exc).__name__)
            # The exception's text may name host paths: the model gets its type only.
            return fail(f"{call.name} failed unexpectedly ({type(exc).__name__})")
        if len(text) > found.max_output:
            cut = len(text) - found.max_output
            text = text[: found.max_output] + f"\n[truncated: {cut:,} more characters not shown]"
        return ToolResult(call.id, call.name, True, text)
