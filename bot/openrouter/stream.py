"""Server-sent events and the assembly of streamed chunks into one completion.

Pure logic, no I/O: the client feeds lines in and reads deltas and the result out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .types import JSON, Completion, ToolCall, Usage


class SSEDecoder:
    """Turns SSE lines into event payloads (the joined `data:` lines of each event)."""

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> str | None:
        """Feed one line (without its newline); returns a payload when an event ends."""
        if not line:
            return self.flush()
        if line.startswith(":"):  # keep-alive comment, e.g. ": OPENROUTER PROCESSING"
            return None
        name, _, value = line.partition(":")
        if name == "data":
            self._data.append(value.removeprefix(" "))
        # `event:`, `id:` and `retry:` carry nothing OpenRouter uses.
        return None

    def flush(self) -> str | None:
        """The pending payload, if any (called at a blank line and at the end of input)."""
        if not self._data:
            return None
        payload = "\n".join(self._data)
        self._data = []
        return payload


@dataclass
class _ToolCallParts:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass
class ChunkResult:
    """What one chunk added: text and reasoning deltas, and an error object if it had one."""

    text: str = ""
    reasoning: str = ""
    error: JSON | None = None


class StreamAssembler:
    """Accumulates streamed chunks into a Completion."""

    def __init__(self, requested_model: str) -> None:
        self.model = requested_model
        self.generation_id: str | None = None
        self.provider: str | None = None
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self._tools: dict[int, _ToolCallParts] = {}

    @property
    def text(self) -> str:
        return "".join(self._text)

    @property
    def started(self) -> bool:
        """Whether anything the user or the tool loop could see has arrived."""
        return bool(self._text or self._reasoning or self._tools)

    def add(self, chunk: JSON) -> ChunkResult:
        result = ChunkResult()
        if isinstance(chunk.get("model"), str) and chunk["model"]:
            self.model = chunk["model"]
        if isinstance(chunk.get("id"), str) and self.generation_id is None:
            self.generation_id = chunk["id"]
        if isinstance(chunk.get("provider"), str):
            self.provider = chunk["provider"]
        # Usage usually comes on a last chunk with empty choices, but some providers put it
        # on the chunk that carries finish_reason: take it wherever it is.
        usage = Usage.from_json(chunk.get("usage"))
        if usage is not None:
            self.usage = usage
        if isinstance(chunk.get("error"), dict):
            result.error = chunk["error"]
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            return result
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            if isinstance(choice.get("error"), dict) and result.error is None:
                result.error = choice["error"]
            if isinstance(choice.get("finish_reason"), str):
                self.finish_reason = choice["finish_reason"]
            delta = choice.get("delta")
            if not isinstance(delta, dict):
                continue
            content = delta.get("content")
            if isinstance(content, str) and content:
                self._text.append(content)
                result.text += content
            reasoning = delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                self._reasoning.append(reasoning)
                result.reasoning += reasoning
            tool_calls = delta.get("tool_calls")
            if isinstance(tool_calls, list):
                for position, call in enumerate(tool_calls):
                    if isinstance(call, dict):
                        self._add_tool_delta(position, call)
        return result

    def _add_tool_delta(self, position: int, call: dict[str, Any]) -> None:
        index = call.get("index")
        key = index if isinstance(index, int) else position
        parts = self._tools.setdefault(key, _ToolCallParts())
        if isinstance(call.get("id"), str) and call["id"] and not parts.id:
            parts.id = call["id"]
        function = call.get("function")
        if not isinstance(function, dict):
            return
        name = function.get("name")
        # The first delta names the function; some providers repeat the name later.
        if isinstance(name, str) and name and not parts.name:
            parts.name = name
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            parts.arguments.append(arguments)
        elif isinstance(arguments, dict):  # a few providers send parsed arguments
            parts.arguments.append(json.dumps(arguments))

    def completion(self) -> Completion:
        calls = [
            ToolCall(id=p.id or f"call_{i}", name=p.name, raw_arguments="".join(p.arguments))
            for i, p in sorted(self._tools.items())
        ]
        return Completion(
            text=self.text,
            model=self.model,
            finish_reason=self.finish_reason,
            tool_calls=calls,
            reasoning="".join(self._reasoning),
            usage=self.usage,
            generation_id=self.generation_id,
            provider=self.provider,
        )


def completion_from_json(body: JSON, requested_model: str) -> tuple[Completion, JSON | None]:
    """A non-streamed response as a Completion, plus the error object a 200 may carry."""
    assembler = StreamAssembler(requested_model)
    error = body.get("error") if isinstance(body.get("error"), dict) else None
    choices = body.get("choices")
    as_chunk: JSON = {k: v for k, v in body.items() if k != "choices"}
    as_chunk["choices"] = [
        {**c, "delta": c.get("message")} for c in choices or [] if isinstance(c, dict)
    ]
    added = assembler.add(as_chunk)
    return assembler.completion(), error or added.error
