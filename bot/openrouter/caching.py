"""Anthropic prompt caching: `cache_control` breakpoints on the stable part of a request.

Anthropic models cache a prompt prefix only where a content part carries
`cache_control: {"type": "ephemeral"}`, with at most 4 such breakpoints per request.
The system prompt never changes within a channel, and everything before the newest user
turn is what the next request of the same thread repeats, so those are the breakpoints.
During a tool loop, the newest tool result is one too: the next round resends it all.
"""

from __future__ import annotations

import copy

from .types import Message

MAX_BREAKPOINTS = 4
EPHEMERAL = {"type": "ephemeral"}


def wants_cache_control(api_id: str) -> bool:
    return api_id.startswith("anthropic/")


def _breakpoints(message: Message) -> int:
    content = message.get("content")
    if not isinstance(content, list):
        return 0
    return sum(1 for part in content if isinstance(part, dict) and "cache_control" in part)


def _mark(message: Message) -> bool:
    """Put a breakpoint on the message's last text part; False if it has no text."""
    content = message.get("content")
    if isinstance(content, str):
        if not content:
            return False
        message["content"] = [{"type": "text", "text": content, "cache_control": EPHEMERAL}]
        return True
    if isinstance(content, list):
        for part in reversed(content):
            if isinstance(part, dict) and part.get("type") == "text" and part.get("text"):
                if "cache_control" in part:
                    return False
                part["cache_control"] = dict(EPHEMERAL)
                return True
    return False


def add_cache_breakpoints(messages: list[Message]) -> list[Message]:
    """A copy of `messages` with breakpoints added, never more than 4 in all."""
    out: list[Message] = copy.deepcopy(messages)
    budget = MAX_BREAKPOINTS - sum(_breakpoints(m) for m in out)
    last_user = max((i for i, m in enumerate(out) if m.get("role") == "user"), default=None)
    candidates: list[int] = [i for i, m in enumerate(out) if m.get("role") == "system"][:1]
    if last_user is not None and last_user > 0:
        candidates.append(last_user - 1)
    if out and out[-1].get("role") == "tool":
        candidates.append(len(out) - 1)
    for index in dict.fromkeys(candidates):
        if budget <= 0:
            break
        if _mark(out[index]):
            budget -= 1
    return out


def prepare_messages(messages: list[Message], models: list[str]) -> list[Message]:
    """Messages as sent to a request trying `models`: with breakpoints for Anthropic."""
    if any(wants_cache_control(m) for m in models):
        return add_cache_breakpoints(messages)
    return messages
