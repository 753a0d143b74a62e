"""The terminal front end: `routerbot models`, `credits`, `ask` and `chat`."""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import asdict
from typing import TextIO

from .config import Settings
from .openrouter import (
    ChatRequest,
    Completion,
    Credits,
    Done,
    FellBack,
    ModelInfo,
    ModelRefError,
    OpenRouterClient,
    OpenRouterError,
    TextDelta,
    display_model,
    resolve,
)
from .openrouter.types import Message


def usd(amount: float) -> str:
    """Dollars with cents; small non-zero amounts keep enough digits to be seen."""
    if amount != 0 and abs(amount) < 0.01:
        return f"${amount:.6f}".rstrip("0")
    return f"${amount:,.2f}"


def per_million(price: float | None) -> str:
    if price is None:
        return "varies"
    if price == 0:
        return "free"
    return f"{price * 1_000_000:.2f}"


def models_table(models: list[ModelInfo]) -> str:
    header = ("model", "context", "$/M in", "$/M out", "tools", "images")
    rows = [
        (
            m.canonical,
            f"{m.context_length:,}" if m.context_length else "?",
            per_million(m.prompt_price),
            per_million(m.completion_price),
            "yes" if m.supports_tools else "no",
            "yes" if m.supports_images else "no",
        )
        for m in models
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    # The id and the yes/no columns align left, the numbers right.
    align = [str.ljust, str.rjust, str.rjust, str.rjust, str.ljust, str.ljust]
    lines = [
        "  ".join(pad(cell, width) for pad, cell, width in zip(align, row, widths, strict=True))
        for row in [header, *rows]
    ]
    lines = [line.rstrip() for line in lines]
    return "\n".join(lines)


async def models_text(client: OpenRouterClient, query: str) -> tuple[str, bool]:
    """The table of models matching `query`, and whether any did."""
    found = await client.catalogue.search(query)
    if found:
        return models_table(found), True
    hint = await client.catalogue.suggest(query)
    text = f"No model matches {query!r}."
    if hint:
        text += " Did you mean " + " or ".join(hint) + "?"
    return text, False


def credits_lines(credits: Credits) -> list[str]:
    lines = []
    if credits.balance is not None:
        if credits.source == "credits" and credits.total_credits is not None:
            lines.append(f"Balance: {usd(credits.balance)} of {usd(credits.total_credits)} bought")
        else:
            reset = f", resets {credits.limit_reset}" if credits.limit_reset else ""
            limit = usd(credits.limit) if credits.limit is not None else "?"
            lines.append(f"Balance: {usd(credits.balance)} left of this key's {limit} limit{reset}")
    if credits.total_usage is not None:
        used = f"Used: {usd(credits.total_usage)}"
        if credits.usage_daily is not None and credits.usage_monthly is not None:
            used += f" (today {usd(credits.usage_daily)}, this month {usd(credits.usage_monthly)})"
        lines.append(used)
    if credits.is_free_tier:
        lines.append("This key is on the free tier.")
    if credits.note:
        lines.append(credits.note)
    return lines


async def credits_text(client: OpenRouterClient) -> str:
    return "\n".join(credits_lines(await client.credits()))


def _question(raw: str) -> str:
    """The question from stdin: plain text, or a JSON object with a `message`."""
    text = raw.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            return text
        message = data.get("message") if isinstance(data, dict) else None
        if isinstance(message, str):
            return message.strip()
    return text


async def _chain(client: OpenRouterClient, settings: Settings, model: str | None) -> list[str]:
    refs = [model or settings.default_model, *([] if model else settings.fallbacks)]
    return [(await resolve(ref, client.catalogue)).api_id for ref in refs]


def _footer(completion: Completion) -> str:
    parts = [display_model(completion.model)]
    if completion.passed_over:
        parts.append("passed over " + ", ".join(p.model for p in completion.passed_over))
    if completion.usage is not None:
        parts.append(f"{completion.usage.total_tokens} tokens")
        if completion.usage.cost is not None:
            parts.append(usd(completion.usage.cost))
    return " · ".join(parts)


async def _answer(
    client: OpenRouterClient, request: ChatRequest, out: TextIO, *, as_json: bool
) -> Completion:
    """Streams one answer to `out`; text as it comes, or one JSON object per event."""

    def emit(event: dict[str, object]) -> None:
        out.write(json.dumps(event) + "\n")
        out.flush()

    async for event in client.stream(request):
        if isinstance(event, TextDelta):
            if as_json:
                emit({"type": "text", "text": event.text})
            else:
                out.write(event.text)
                out.flush()
        elif isinstance(event, FellBack) and as_json:
            emit({"type": "fell_back", "failed": [asdict(p) for p in event.failed]})
        elif isinstance(event, Done):
            completion = event.completion
            if as_json:
                emit({"type": "final", **asdict(completion)})
            else:
                out.write("\n")
            return completion
    raise AssertionError("the stream ended without Done")  # pragma: no cover


async def ask(
    client: OpenRouterClient, settings: Settings, raw: str, *, model: str | None, as_json: bool
) -> int:
    question = _question(raw)
    if not question:
        print(
            'routerbot: nothing to ask: pipe a question, or {"message": "..."}, to stdin',
            file=sys.stderr,
        )
        return 2
    request = ChatRequest(
        models=await _chain(client, settings, model),
        messages=[{"role": "user", "content": question}],
    )
    try:
        completion = await _answer(client, request, sys.stdout, as_json=as_json)
    except OpenRouterError as exc:
        if as_json:
            print(json.dumps({"type": "error", "kind": exc.kind.value, "message": str(exc)}))
            return 1
        raise
    if not as_json:
        print(_footer(completion), file=sys.stderr)
    return 0


HELP = """Commands: /model [ID] shows or sets the model, /models [QUERY] lists models,
/credits shows the balance, /new starts over, /quit leaves (or Ctrl-D)."""


async def chat(client: OpenRouterClient, settings: Settings, *, model: str | None) -> int:
    chain = await _chain(client, settings, model)
    history: list[Message] = []
    print(f"routerbot chat with {display_model(chain[0])}. {HELP}")
    while True:
        try:
            line = (await asyncio.to_thread(input, "you> ")).strip()
        except EOFError:
            print()
            return 0
        if not line:
            continue
        command, _, rest = line.partition(" ")
        try:
            if command in ("/quit", "/exit"):
                return 0
            if command == "/help":
                print(HELP)
            elif command == "/new":
                history.clear()
                print("Started a new conversation.")
            elif command == "/model":
                if rest.strip():
                    chain = [(await resolve(rest, client.catalogue)).api_id]
                print("Model: " + " then ".join(display_model(m) for m in chain))
            elif command == "/models":
                print((await models_text(client, rest))[0])
            elif command == "/credits":
                print(await credits_text(client))
            else:
                history.append({"role": "user", "content": line})
                request = ChatRequest(models=chain, messages=history)
                completion = await _answer(client, request, sys.stdout, as_json=False)
                history.append({"role": "assistant", "content": completion.text})
                print(f"[{_footer(completion)}]")
        except (OpenRouterError, ModelRefError) as exc:
            if history and history[-1]["role"] == "user":
                history.pop()
            print(f"\n{exc}")
