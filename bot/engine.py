"""The conversation engine: turns in, a streamed reply out, to a sink.

Platform-neutral: Slack, Discord and the terminal hand it a conversation and its turns
and render the events it emits.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .channels import ChannelSettings, resolve_settings
from .config import Settings
from .formatting import usd
from .limits import ChannelGates, LimitRefusal, RateLimiter, month_bounds
from .metrics import Metrics
from .openrouter import (
    ChatRequest,
    Completion,
    Done,
    ModelInfo,
    OpenRouterClient,
    OpenRouterError,
    PassedOver,
    TextDelta,
    Usage,
    display_model,
)
from .openrouter.errors import ContextTooLongError, ErrorKind
from .openrouter.refs import ModelRefError, to_api_id
from .openrouter.types import Message
from .store import ChannelKey, Store
from .tools import ToolContext, ToolError, ToolRegistry, ToolResult, Workspace
from .tools.registry import summarize_arguments
from .tools.workspace import safe_component

log = logging.getLogger(__name__)
reply_log = logging.getLogger("routerbot.reply")  # one line per reply

IMAGE_TOKENS = 800  # a rough price of one image in the context window
MESSAGE_OVERHEAD_TOKENS = 4


# -- neutral types ----------------------------------------------------------------------


@dataclass(frozen=True)
class Conversation:
    platform: str
    workspace: str
    channel: str
    thread: str

    @property
    def key(self) -> ChannelKey:
        return ChannelKey(self.platform, self.workspace, self.channel)


@dataclass(frozen=True)
class Attachment:
    name: str
    mime_type: str
    data: bytes | None = None
    url: str | None = None
    # The name under which an adapter already saved the file in the conversation's workspace.
    saved_as: str | None = None

    @property
    def is_image(self) -> bool:
        return self.mime_type.startswith("image/")

    def image_url(self) -> str | None:
        if self.data is not None:
            return f"data:{self.mime_type};base64,{base64.b64encode(self.data).decode()}"
        return self.url


@dataclass(frozen=True)
class Turn:
    author_id: str
    author_name: str
    text: str
    attachments: tuple[Attachment, ...] = ()
    from_bot: bool = False


# -- events -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Started:
    model: str


@dataclass(frozen=True)
class Delta:
    text: str


@dataclass(frozen=True)
class ToolStarted:
    call_id: str
    name: str
    summary: str
    activity: str  # a short line for people: "Reading build.log"


@dataclass(frozen=True)
class ToolFinished:
    call_id: str
    name: str
    summary: str
    ok: bool


@dataclass(frozen=True)
class Notice:
    text: str


@dataclass(frozen=True)
class Final:
    text: str
    model: str
    passed_over: list[PassedOver]
    usage: Usage
    cost: float | None
    generation_id: str | None
    notices: list[str] = field(default_factory=list)

    def summary(self, *, cost: bool, tokens: bool = False) -> str:
        """The footer line of an answer: "openrouter/x/y · passed over ... · $0.0012"."""
        parts = [display_model(self.model)]
        if self.passed_over:
            passed = ", ".join(display_model(p.model) for p in self.passed_over)
            parts.append(f"passed over {passed}")
        if tokens:
            parts.append(f"{self.usage.total_tokens:,} tokens")
        if cost and self.cost is not None:
            parts.append(usd(self.cost))
        return " · ".join(parts)


@dataclass(frozen=True)
class Failed:
    message: str
    kind: str
    partial_text: str = ""


@dataclass(frozen=True)
class Cancelled:
    reason: str


ReplyEvent = Started | Delta | ToolStarted | ToolFinished | Notice | Final | Failed | Cancelled


class Sink(Protocol):
    async def emit(self, event: ReplyEvent) -> None: ...


SUPERSEDED = "a newer message superseded this reply"


@dataclass
class _Watch:
    """One reply as it goes, for the metrics and its log line; forwards every event."""

    sink: Sink
    started: float = field(default_factory=time.monotonic)
    requested: float | None = None  # the first request to OpenRouter
    first_token: float | None = None
    ended: float | None = None
    model_asked: str = ""
    outcome: str = "lost"
    kind: str = ""
    final: Final | None = None

    async def emit(self, event: ReplyEvent) -> None:
        if isinstance(event, Started):
            self.model_asked = event.model
        elif isinstance(event, Delta) and self.first_token is None:
            self.first_token = time.monotonic()
        elif isinstance(event, Final):
            self.outcome, self.final, self.ended = "ok", event, time.monotonic()
        elif isinstance(event, Failed):
            self.outcome = "refused" if event.kind == "limit" else "error"
            self.kind = event.kind
        elif isinstance(event, Cancelled):
            self.outcome = "cancelled"
        await self.sink.emit(event)


# -- context fitting --------------------------------------------------------------------


def estimate_tokens(message: Message) -> int:
    """About four characters a token; no tokenizer that downloads files at run time."""
    content = message.get("content")
    tokens = MESSAGE_OVERHEAD_TOKENS
    if isinstance(content, str):
        tokens += len(content) // 4
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and part.get("type") == "image_url":
                tokens += IMAGE_TOKENS
            elif isinstance(part, dict):
                tokens += len(str(part.get("text", ""))) // 4
    if message.get("tool_calls"):
        tokens += len(json.dumps(message["tool_calls"])) // 4
    return tokens


class TurnTooLong(Exception):
    def __init__(self, needed: int, available: int) -> None:
        super().__init__(f"{needed} > {available}")
        self.needed = needed
        self.available = available


def fit_context(
    system: list[Message], history: list[Message], budget: int
) -> tuple[list[Message], int]:
    """The newest history that fits `budget` tokens with the system prompt; returns the
    messages and how many old ones were dropped. The newest message always stays."""
    fixed = sum(estimate_tokens(m) for m in system)
    newest = estimate_tokens(history[-1])
    if fixed + newest > budget:
        raise TurnTooLong(fixed + newest, budget)
    used = fixed + newest
    kept = 1
    for message in reversed(history[:-1]):
        cost = estimate_tokens(message)
        if used + cost > budget:
            break
        used += cost
        kept += 1
    return system + history[-kept:], len(history) - kept


def output_reserve(context_length: int, max_tokens: int | None) -> int:
    return max_tokens if max_tokens else min(4096, context_length // 4)


# -- the engine -------------------------------------------------------------------------


@dataclass
class _Totals:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None

    def add(self, usage: Usage | None) -> None:
        if usage is None:
            return
        self.prompt_tokens += usage.prompt_tokens
        self.completion_tokens += usage.completion_tokens
        if usage.cost is not None:
            self.cost = (self.cost or 0.0) + usage.cost

    def usage(self) -> Usage:
        total = self.prompt_tokens + self.completion_tokens
        return Usage(self.prompt_tokens, self.completion_tokens, total, self.cost)


class Engine:
    """One per process; shared by every front end."""

    def __init__(
        self,
        client: OpenRouterClient,
        store: Store,
        settings: Settings,
        tools: ToolRegistry | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.settings = settings
        self.tools = tools or ToolRegistry()
        self.metrics = metrics or Metrics()
        self.rate = RateLimiter(settings.user_rate_limit)
        self.gates = ChannelGates(settings.channel_concurrency)
        self._active: dict[Conversation, asyncio.Task[object]] = {}
        self._cancel_reasons: dict[Conversation, str] = {}

    @property
    def replying(self) -> int:
        return sum(1 for task in self._active.values() if not task.done())

    def cancel(self, conversation: Conversation, reason: str = SUPERSEDED) -> bool:
        """Cancels the reply running in a thread, if any (its sink gets Cancelled(reason))."""
        task = self._active.get(conversation)
        if task is None or task.done():
            return False
        self._cancel_reasons[conversation] = reason
        task.cancel()
        return True

    def cancel_all(self, reason: str) -> int:
        """Cancels every running reply (shutdown); returns how many there were."""
        return sum(self.cancel(conversation, reason) for conversation in list(self._active))

    async def reply(
        self,
        conversation: Conversation,
        turns: Sequence[Turn],
        sink: Sink,
        *,
        user_id: str,
        models: list[str] | None = None,
    ) -> Final | None:
        """Answers the newest turn. A newer reply in the same thread supersedes this one.

        `models` overrides the channel's chain (canonical or API ids). Returns the final
        reply, or None when it failed (the sink was told why) or was cancelled. Run each
        reply in a task of its own: superseding it cancels that task.
        """
        task = asyncio.current_task()
        assert task is not None
        if self.cancel(conversation):
            log.info("a newer message superseded the reply in %s", conversation)
        self._active[conversation] = task
        watch = _Watch(sink)
        sink = watch
        try:
            return await self._reply(conversation, turns, sink, user_id, models, watch)
        except LimitRefusal as refusal:
            self.metrics.refusals.labels(refusal.reason).inc()
            await sink.emit(Failed(str(refusal), "limit"))
        except OpenRouterError as error:
            await sink.emit(Failed(error.user_message, error.kind.value, error.partial_text))
        except ModelRefError as error:
            await sink.emit(Failed(str(error), ErrorKind.UNKNOWN_MODEL.value))
        except TurnTooLong as error:
            await sink.emit(
                Failed(
                    f"This message is too long for the model (about {error.needed:,} tokens "
                    f"where it takes {error.available:,}). Shorten it, or pick a model with "
                    "a larger context window with /model.",
                    ErrorKind.CONTEXT_TOO_LONG.value,
                )
            )
        except asyncio.CancelledError:
            reason = self._cancel_reasons.pop(conversation, SUPERSEDED)
            await asyncio.shield(sink.emit(Cancelled(reason)))
            raise
        except Exception:
            # The last line of defence: a bug of ours is logged, and the user still hears back.
            log.exception("reply in %s failed", conversation)
            await sink.emit(
                Failed(
                    "Something went wrong inside the bot, and this reply was lost. Try again; "
                    "if it keeps happening, tell whoever runs the bot.",
                    "internal",
                )
            )
        finally:
            if self._active.get(conversation) is task:
                del self._active[conversation]
            self._observe(conversation, turns, user_id, watch)
        return None

    def _observe(
        self, conversation: Conversation, turns: Sequence[Turn], user_id: str, watch: _Watch
    ) -> None:
        """The reply's metrics, and its one log line."""
        m = self.metrics
        m.replies.labels(conversation.platform, watch.outcome).inc()
        if watch.outcome == "error":
            m.errors.labels(watch.kind).inc()
        if watch.requested is not None and watch.first_token is not None:
            m.ttft.observe(watch.first_token - watch.requested)
        final = watch.final
        fields: dict[str, object] = {
            "platform": conversation.platform,
            "workspace": conversation.workspace,
            "channel": conversation.channel,
            "thread": conversation.thread,
            "user": user_id,
            "model_asked": watch.model_asked,
            "outcome": watch.outcome,
            "latency_s": round(time.monotonic() - watch.started, 3),
        }
        if watch.kind:
            fields["error"] = watch.kind
        if watch.requested is not None and watch.first_token is not None:
            fields["ttft_s"] = round(watch.first_token - watch.requested, 3)
        if final is not None:
            served = display_model(final.model)
            if watch.requested is not None and watch.ended is not None:
                m.duration.observe(watch.ended - watch.requested)
            m.tokens.labels(served, "prompt").inc(final.usage.prompt_tokens)
            m.tokens.labels(served, "completion").inc(final.usage.completion_tokens)
            if final.cost is not None:
                m.cost.labels(served).inc(final.cost)
            fields |= {
                "model_served": served,
                "prompt_tokens": final.usage.prompt_tokens,
                "completion_tokens": final.usage.completion_tokens,
                "cost_usd": final.cost,
            }
        if self.settings.log_content:
            fields["question"] = turns[-1].text if turns else ""
            if final is not None:
                fields["answer"] = final.text
        reply_log.info("reply", extra={"fields": fields})

    async def check_limits(self, key: ChannelKey, user_id: str, channel: ChannelSettings) -> None:
        allowed = self.settings.allowed_channels
        if allowed and key.channel not in allowed:
            raise LimitRefusal(
                "routerbot is not enabled in this channel. An admin can add it to "
                "ROUTERBOT_CHANNEL_ALLOWLIST.",
                "allowlist",
            )
        wait = self.rate.acquire(user_id)
        if wait is not None:
            raise LimitRefusal(
                f"You have sent {self.rate.limit} requests in the last minute, the most "
                f"allowed. Try again in {max(1, round(wait))} s.",
                "rate_limit",
            )
        if channel.budget_usd:
            start, end = month_bounds(time.time())
            spent, _ = await self.store.spend(key, start)
            if spent >= channel.budget_usd:
                days = max(1, round((end - time.time()) / 86400))
                raise LimitRefusal(
                    f"This channel has spent {usd(spent)} of its {usd(channel.budget_usd)} "
                    f"monthly budget. It resets at the start of next month (in {days} "
                    "days); an admin can raise it with /model budget <usd>.",
                    "budget",
                )

    async def _reply(
        self,
        conversation: Conversation,
        turns: Sequence[Turn],
        sink: Sink,
        user_id: str,
        models: list[str] | None,
        watch: _Watch,
    ) -> Final:
        key = conversation.key
        channel = await resolve_settings(self.store, key, self.settings)
        await self.check_limits(key, user_id, channel)
        chain = [to_api_id(m) for m in (models or channel.chain)]
        await sink.emit(Started(display_model(chain[0])))
        async with self.gates.slot(key):
            return await self._answer(conversation, turns, sink, user_id, channel, chain, watch)

    async def _model_infos(self, chain: list[str]) -> list[ModelInfo]:
        try:
            infos = [await self.client.catalogue.get(m) for m in chain]
        except OpenRouterError:
            log.warning("model catalogue unavailable; answering without context limits")
            return []
        return [i for i in infos if i is not None]

    async def _answer(
        self,
        conversation: Conversation,
        turns: Sequence[Turn],
        sink: Sink,
        user_id: str,
        channel: ChannelSettings,
        chain: list[str],
        watch: _Watch,
    ) -> Final:
        infos = await self._model_infos(chain)
        notices: list[str] = []
        saved = await self._save_files(conversation, turns, notices)
        takes_images = bool(infos) and all(i.supports_images for i in infos)
        history, left_out = build_history(turns, images=takes_images, saved=saved)
        if left_out:
            notices.append(
                f"Left out {left_out} image(s): {display_model(chain[0])} does not take images."
            )
        enabled = [t for t in channel.tools if t in self.tools.names()]
        if enabled and infos and not all(i.supports_tools for i in infos):
            notices.append(f"Tools are off: {display_model(chain[0])} cannot use tools.")
            enabled = []
        system: list[Message] = (
            [{"role": "system", "content": channel.system_prompt}] if channel.system_prompt else []
        )
        context_length = min((i.context_length for i in infos if i.context_length), default=0)
        budget = (
            int((context_length - output_reserve(context_length, channel.max_tokens)) * 0.9)
            if context_length
            else 0
        )
        messages = system + history
        if budget:
            messages, dropped = fit_context(system, history, budget)
            if dropped:
                notices.append(f"Left out the {dropped} oldest message(s) to fit the model.")
        for text in notices:
            await sink.emit(Notice(text))

        context = ToolContext(
            conversation.platform,
            conversation.workspace,
            conversation.channel,
            conversation.thread,
            user_id,
            self.workspace(conversation),
        )
        totals = _Totals()
        texts: list[str] = []
        retried_context = False
        rounds = 0
        while True:
            request = ChatRequest(
                models=chain,
                messages=messages,
                tools=self.tools.schemas(enabled) or None,
                temperature=channel.temperature,
                max_tokens=channel.max_tokens,
                session_id=f"{conversation.platform}:{conversation.channel}:{conversation.thread}",
            )
            if watch.requested is None:
                watch.requested = time.monotonic()
            try:
                completion = await self._stream_round(request, sink, gap=bool(texts))
            except ContextTooLongError:
                if retried_context or len(messages) <= len(system) + 1:
                    raise
                # The estimate was off: keep half as much history and try once more.
                retried_context = True
                kept = messages[len(system) :]
                messages = system + kept[len(kept) // 2 :]
                await sink.emit(Notice("Left out more old messages to fit the model."))
                continue
            totals.add(completion.usage)
            if completion.text:
                texts.append(completion.text)
            if not completion.tool_calls:
                break
            if rounds >= self.settings.max_tool_rounds:
                stop = (
                    f"Stopped after {rounds} rounds of tool calls "
                    "(ROUTERBOT_MAX_TOOL_ROUNDS). Ask again to go on."
                )
                notices.append(stop)
                await sink.emit(Notice(stop))
                break
            rounds += 1
            results = await self._run_tools(completion, context, enabled, sink)
            messages = [*messages, *tool_round_messages(completion, results)]
        ending = _FINISH_NOTES.get(completion.finish_reason or "")
        if not texts and not completion.tool_calls:
            ending = ending or "The model sent an empty answer. Try again, or pick another model."
        if ending:
            notices.append(ending)
            await sink.emit(Notice(ending))
        final = Final(
            text="\n\n".join(texts),
            model=completion.model,
            passed_over=completion.passed_over,
            usage=totals.usage(),
            cost=totals.cost,
            generation_id=completion.generation_id,
            notices=notices,
        )
        try:
            await sink.emit(final)  # people first: the ledger row can follow
        finally:
            await self.store.record_usage(
                conversation.key,
                user_id=user_id,
                model=completion.model,
                prompt_tokens=totals.prompt_tokens,
                completion_tokens=totals.completion_tokens,
                cost=totals.cost,
                generation_id=completion.generation_id,
            )
        return final

    def workspace(self, conversation: Conversation) -> Workspace:
        """The folder the conversation's file tools work in."""
        return Workspace.for_conversation(
            self.settings.data_dir,
            conversation.platform,
            conversation.channel,
            conversation.thread,
            quota_bytes=self.settings.workspace_quota_mb * 1_000_000,
            max_files=self.settings.workspace_max_files,
        )

    async def save_attachment(self, conversation: Conversation, attachment: Attachment) -> str:
        """Saves a file someone attached into the conversation's workspace; returns its name
        there. Adapters call this (reply() does it too for attachments that carry data)."""
        if attachment.data is None:
            raise ToolError(f"{attachment.name} has no content to save")
        name = safe_component(attachment.name)
        await asyncio.to_thread(self.workspace(conversation).write_bytes, name, attachment.data)
        return name

    async def _save_files(
        self, conversation: Conversation, turns: Sequence[Turn], notices: list[str]
    ) -> dict[Attachment, str]:
        saved: dict[Attachment, str] = {}
        for turn in turns:
            for attachment in turn.attachments:
                if attachment.is_image or attachment.data is None or attachment in saved:
                    continue
                try:
                    saved[attachment] = await self.save_attachment(conversation, attachment)
                except ToolError as error:
                    notices.append(f"Could not keep {attachment.name}: {error}.")
        return saved

    async def _stream_round(self, request: ChatRequest, sink: Sink, *, gap: bool) -> Completion:
        """One model call, its text streamed to the sink; `gap` separates it from the text
        of an earlier round the way the final text joins them."""
        async for event in self.client.stream(request):
            if isinstance(event, TextDelta):
                if gap:
                    await sink.emit(Delta("\n\n"))
                    gap = False
                await sink.emit(Delta(event.text))
            elif isinstance(event, Done):
                return event.completion
        raise AssertionError("stream ended without Done")  # pragma: no cover

    async def _run_tools(
        self, completion: Completion, context: ToolContext, enabled: list[str], sink: Sink
    ) -> list[ToolResult]:
        async def run_one(index: int) -> ToolResult:
            call = completion.tool_calls[index]
            summary = summarize_arguments(call.arguments)
            activity = self.tools.activity(call)
            await sink.emit(ToolStarted(call.id, call.name, summary, activity))
            result = await self.tools.call(call, context, enabled)
            self.metrics.tool_calls.labels(call.name, "ok" if result.ok else "error").inc()
            await sink.emit(ToolFinished(call.id, call.name, summary, result.ok))
            return result

        # One round's calls run concurrently; results keep the order of the calls.
        return list(await asyncio.gather(*(run_one(i) for i in range(len(completion.tool_calls)))))


_FINISH_NOTES = {
    "length": "The answer was cut off at the model's length limit. Ask it to go on.",
    "content_filter": "The provider's content filter stopped the answer.",
}


def tool_round_messages(completion: Completion, results: list[ToolResult]) -> list[Message]:
    """The assistant's tool calls and their results, as the next request repeats them."""
    calls = [
        {
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": call.raw_arguments or "{}"},
        }
        for call in completion.tool_calls
    ]
    return [
        {"role": "assistant", "content": completion.text or None, "tool_calls": calls},
        *({"role": "tool", "tool_call_id": r.call_id, "content": r.text} for r in results),
    ]


def build_history(
    turns: Sequence[Turn], *, images: bool, saved: dict[Attachment, str] | None = None
) -> tuple[list[Message], int]:
    """Turns as chat messages, and how many images had to be left out. Files saved in the
    workspace are named, so the model can read them with its tools."""
    messages: list[Message] = []
    left_out = 0
    for turn in turns:
        if turn.from_bot:
            messages.append({"role": "assistant", "content": turn.text})
            continue
        text = f"{turn.author_name}: {turn.text}"
        known = saved or {}
        files = [name for a in turn.attachments if (name := known.get(a) or a.saved_as)]
        if files:
            text += "\n(attached, in the workspace: " + ", ".join(files) + ")"
        pictures = [a for a in turn.attachments if a.is_image and a.image_url()]
        if pictures and images:
            parts: list[dict[str, object]] = [{"type": "text", "text": text}]
            parts += [{"type": "image_url", "image_url": {"url": a.image_url()}} for a in pictures]
            messages.append({"role": "user", "content": parts})
        else:
            left_out += len(pictures)
            messages.append({"role": "user", "content": text})
    return messages, left_out
