"""`/model` and `/credits`, platform-neutral: text in, a Document out."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from .channels import ChannelSettings, resolve_settings
from .engine import Engine
from .formatting import Document, Table, ago, per_million, usd
from .limits import day_start, month_bounds
from .openrouter import ModelInfo, ModelRefError, OpenRouterError, resolve
from .store import ChannelKey

PAGE_SIZE = 10
PROMPT_PREVIEW = 120

USAGE = """Usage:
/model: this channel's model and settings
/model list [QUERY] [page N]: models matching QUERY
/model set ID: use model ID (openrouter/<vendor>/<model>[:variant])
/model auto: let OpenRouter pick (openrouter/auto)
/model fallbacks ID [ID ...] | clear: models to try when the first fails
/model prompt TEXT | clear: the system prompt
/model tools NAME [NAME ...] | off: the tools the model may use
/model budget USD | clear: this channel's monthly spending cap
/model reset: back to the workspace's or the bot's defaults
/credits: what the OpenRouter account has left"""


@dataclass(frozen=True)
class Caller:
    user_id: str
    name: str
    # Whether the platform says the caller administers this channel or workspace.
    is_admin: bool = False


def _usage(problem: str | None = None) -> Document:
    notes = [problem] if problem else []
    return Document("routerbot commands", notes=[*notes, USAGE], ok=problem is None)


def _failure(message: str) -> Document:
    return Document("Not changed", notes=[message], ok=False)


class Commands:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.client = engine.client
        self.store = engine.store
        self.settings = engine.settings

    async def run(self, command: str, text: str, key: ChannelKey, caller: Caller) -> Document:
        """Any command; OpenRouter failures come back as a document too."""
        try:
            if command.lstrip("/") == "credits":
                return await self.credits(key)
            if command.lstrip("/") == "model":
                return await self.model(text, key, caller)
            return _usage(f"Unknown command {command!r}.")
        except OpenRouterError as error:
            return Document("OpenRouter could not answer", notes=[error.user_message], ok=False)

    # -- /model ---------------------------------------------------------------------

    async def model(self, text: str, key: ChannelKey, caller: Caller) -> Document:
        words = text.split()
        verb = words[0].lower() if words else ""
        args = words[1:]
        rest = text.strip()[len(verb) :].strip()
        if verb in ("", "show"):
            return await self.show(key)
        if verb == "list":
            return await self.list_models(args)
        if verb in ("help", "usage"):
            return _usage()
        if verb not in ("set", "auto", "fallbacks", "prompt", "tools", "budget", "reset"):
            return _usage(f"`{verb}` is not a /model command.")
        if not self._may_change(caller):
            return Document(
                "Not changed",
                notes=[
                    "Only this channel's or workspace's admins, and the users listed in "
                    "ROUTERBOT_ADMINS, can change the settings. Ask one of them; anyone "
                    "can view them with /model."
                ],
                ok=False,
            )
        if verb == "reset":
            return await self._reset(key, caller)
        changes, described, problem = await self._parse_change(verb, args, rest)
        if problem is not None:
            return problem
        return await self._apply(key, caller, changes, described)

    def _may_change(self, caller: Caller) -> bool:
        return caller.is_admin or caller.user_id in self.settings.admin_ids

    async def _parse_change(
        self, verb: str, args: list[str], rest: str
    ) -> tuple[dict[str, Any], str, Document | None]:
        """The settings a change command sets, how to say it, or the document refusing it."""
        nothing: dict[str, Any] = {}
        if verb in ("set", "auto"):
            if verb == "set" and len(args) != 1:
                return nothing, "", _usage("Give one model id: /model set ID.")
            try:
                ref = await resolve(
                    "openrouter/auto" if verb == "auto" else args[0], self.client.catalogue
                )
            except ModelRefError as error:
                return nothing, "", _failure(str(error))
            return {"model": ref.canonical}, f"model to {ref.canonical}", None
        if verb == "fallbacks":
            if not args:
                return nothing, "", _usage("Give fallback ids, or `clear`.")
            if args == ["clear"]:
                return {"fallbacks": []}, "fallbacks to none", None
            chain = []
            for word in args:
                try:
                    chain.append((await resolve(word, self.client.catalogue)).canonical)
                except ModelRefError as error:
                    return nothing, "", _failure(str(error))
            return {"fallbacks": chain}, "fallbacks to " + ", ".join(chain), None
        if verb == "prompt":
            if not rest:
                return nothing, "", _usage("Give the prompt text, or `clear`.")
            if rest == "clear":
                return {"system_prompt": ""}, "system prompt to none", None
            return {"system_prompt": rest}, "system prompt", None
        if verb == "tools":
            known = self.engine.tools.names()
            if args == ["off"]:
                return {"tools": []}, "tools to off", None
            unknown = [a for a in args if a not in known]
            if not args or unknown:
                offered = ", ".join(known) or "none yet"
                shown = f"Unknown tool(s): {', '.join(unknown)}. " if unknown else ""
                return nothing, "", _failure(f"{shown}Tools: {offered}; or `off`.")
            return {"tools": args}, "tools to " + ", ".join(args), None
        # budget
        if args == ["clear"]:
            return {"budget_usd": None}, "monthly budget to the default", None
        amount = _money(args[0]) if len(args) == 1 else None
        if amount is None:
            return nothing, "", _usage("Give the budget in USD, e.g. /model budget 25, or `clear`.")
        return {"budget_usd": amount}, f"monthly budget to {usd(amount)}", None

    async def _apply(
        self, key: ChannelKey, caller: Caller, changes: dict[str, Any], described: str
    ) -> Document:
        await self.store.update_settings(key, changes, by=caller.user_id)
        doc = await self.show(key)
        doc.title = "Set " + described
        doc.ephemeral = False
        doc.announcement = f"@{caller.name} set this channel's {described}."
        if "model" in changes:
            note = await self._tools_note(await resolve_settings(self.store, key, self.settings))
            if note:
                doc.notes.append(note)
        return doc

    async def _reset(self, key: ChannelKey, caller: Caller) -> Document:
        old = await self.store.reset_settings(key, by=caller.user_id)
        doc = await self.show(key)
        doc.title = "Reset to defaults" if old else "Already on the defaults"
        doc.ephemeral = not old
        if old:
            doc.announcement = f"@{caller.name} reset this channel's settings to the defaults."
        return doc

    async def _tools_note(self, channel: ChannelSettings) -> str | None:
        if not channel.tools:
            return None
        info = await self.client.catalogue.get(channel.model.removeprefix("openrouter/"))
        if info is not None and not info.supports_tools:
            return f"{channel.model} cannot use tools, so tools are off while it answers."
        return None

    async def show(self, key: ChannelKey) -> Document:
        channel = await resolve_settings(self.store, key, self.settings)

        def source(name: str) -> str:
            return {"channel": "", "workspace": " (workspace)", "default": " (default)"}[
                channel.sources[name]
            ]

        prompt = channel.system_prompt
        if len(prompt) > PROMPT_PREVIEW:
            prompt = prompt[: PROMPT_PREVIEW - 3] + "..."
        fields = [
            ("Model", channel.model + source("model")),
            ("Fallbacks", (", ".join(channel.fallbacks) or "none") + source("fallbacks")),
            ("System prompt", (prompt or "none") + source("system_prompt")),
            ("Tools", (", ".join(channel.tools) or "off") + source("tools")),
        ]
        if channel.temperature is not None:
            fields.append(("Temperature", f"{channel.temperature}{source('temperature')}"))
        if channel.max_tokens is not None:
            fields.append(("Max tokens", f"{channel.max_tokens}{source('max_tokens')}"))
        budget = usd(channel.budget_usd) + " a month" if channel.budget_usd else "none"
        fields.append(("Budget", budget + source("budget_usd")))
        doc = Document("This channel's model", fields=fields)
        note = await self._tools_note(channel)
        if note:
            doc.notes.append(note)
        return doc

    async def list_models(self, args: list[str]) -> Document:
        page = 1
        if len(args) >= 2 and args[-2].lower() == "page" and args[-1].isdigit():
            page = max(1, int(args[-1]))
            args = args[:-2]
        query = " ".join(args)
        found = await self.client.catalogue.search(query)
        if not found:
            hint = await self.client.catalogue.suggest(query)
            notes = [f"No model matches {query!r}."]
            if hint:
                notes.append("Did you mean " + " or ".join(hint) + "?")
            return Document("Models", notes=notes, ok=False)
        pages = (len(found) + PAGE_SIZE - 1) // PAGE_SIZE
        page = min(page, pages)
        shown = found[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
        table = models_table(shown)
        title = f"Models matching {query!r}" if query else "Models"
        notes = []
        if pages > 1:
            more = f" /model list {query} page {page + 1}".replace("  ", " ")
            notes.append(f"Page {page} of {pages}" + (f"; next:{more}" if page < pages else "."))
        notes.append("Choose one with /model set ID.")
        return Document(f"{title} ({len(found)})", table=table, notes=notes)

    # -- /credits -------------------------------------------------------------------

    async def credits(self, key: ChannelKey) -> Document:
        credits = await self.client.credits()
        fields: list[tuple[str, str]] = []
        notes: list[str] = []
        balance = credits.balance
        if balance is not None:
            if credits.source == "key" and credits.limit is not None:
                reset = f", resets {credits.limit_reset}" if credits.limit_reset else ""
                fields.append(
                    (
                        "Balance",
                        f"{usd(balance)} left of the key's {usd(credits.limit)} limit{reset}",
                    )
                )
            else:
                fields.append(("Balance", usd(balance)))
        if credits.usage_daily is not None:
            fields.append(("Account today", usd(credits.usage_daily)))
        if credits.usage_monthly is not None:
            fields.append(("Account this month", usd(credits.usage_monthly)))
        if credits.source == "credits" and credits.total_usage is not None:
            fields.append(("Account all time", usd(credits.total_usage)))
        now = time.time()
        today, _ = await self.store.spend(key, day_start(now))
        month, replies = await self.store.spend(key, month_bounds(now)[0])
        fields.append(("This channel today", usd(today)))
        fields.append(("This channel this month", f"{usd(month)} ({replies} replies)"))
        if balance is not None and balance < self.settings.low_balance_usd:
            notes.append(
                f"Warning: the balance is below {usd(self.settings.low_balance_usd)}. An admin "
                "can add credits at https://openrouter.ai/settings/credits."
            )
        if credits.note:
            notes.append(credits.note)
        age = self.client.credits_age()
        notes.append(f"Figures from OpenRouter, {ago(age or 0)}.")
        return Document("OpenRouter credits", fields=fields, notes=notes)


def models_table(models: list[ModelInfo]) -> Table:
    return Table(
        ["model", "context", "$/M in", "$/M out", "tools", "images"],
        [
            [
                m.canonical,
                f"{m.context_length:,}" if m.context_length else "?",
                per_million(m.prompt_price),
                per_million(m.completion_price),
                "yes" if m.supports_tools else "no",
                "yes" if m.supports_images else "no",
            ]
            for m in models
        ],
        right=[False, True, True, True, False, False],
    )


def _money(text: str) -> float | None:
    match = re.fullmatch(r"\$?(\d+(?:\.\d{1,2})?)", text.strip())
    if match is None:
        return None
    value = float(match.group(1))
    return value if value > 0 else None
