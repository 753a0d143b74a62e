"""The terminal front end: `routerbot chat` and `routerbot ask`, on the same engine,
commands and store as Slack and Discord. The local user administers the terminal channel."""

from __future__ import annotations

import asyncio
import getpass
import json
import sys
import uuid
from dataclasses import asdict
from typing import TextIO

from .commands import Caller, Commands
from .engine import (
    Cancelled,
    Conversation,
    Delta,
    Engine,
    Failed,
    Final,
    Notice,
    ReplyEvent,
    Started,
    ToolFinished,
    ToolStarted,
    Turn,
)
from .formatting import document_text
from .openrouter import resolve
from .store import ChannelKey

PLATFORM = "terminal"
WORKSPACE = "local"
CHANNEL = "terminal"
TERMINAL_KEY = ChannelKey(PLATFORM, WORKSPACE, CHANNEL)


class TextSink:
    """Streams text to `out`; status lines, notices and errors go to `err`."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out = out
        self.err = err
        self.failed = False

    async def emit(self, event: ReplyEvent) -> None:
        if isinstance(event, Delta):
            self.out.write(event.text)
            self.out.flush()
        elif isinstance(event, ToolStarted):
            print(f"[{event.activity}]", file=self.err, flush=True)
        elif isinstance(event, ToolFinished) and not event.ok:
            print(f"[{event.name} failed]", file=self.err, flush=True)
        elif isinstance(event, Notice):
            print(f"note: {event.text}", file=self.err, flush=True)
        elif isinstance(event, Final):
            self.out.write("\n")
            self.out.flush()
            print(f"[{event.summary(cost=True, tokens=True)}]", file=self.err, flush=True)
        elif isinstance(event, Failed):
            self.failed = True
            if event.partial_text:
                self.out.write("\n")
            print(event.message, file=self.err, flush=True)
        elif isinstance(event, Cancelled):
            print(f"[{event.reason}]", file=self.err, flush=True)


class JsonSink:
    """One JSON object per line: start, text, tool, notice, done, error."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.failed = False

    def _write(self, event: dict[str, object]) -> None:
        self.out.write(json.dumps(event) + "\n")
        self.out.flush()

    async def emit(self, event: ReplyEvent) -> None:
        if isinstance(event, Started):
            self._write({"type": "start", "model": event.model})
        elif isinstance(event, Delta):
            self._write({"type": "text", "text": event.text})
        elif isinstance(event, ToolStarted | ToolFinished):
            state = "started" if isinstance(event, ToolStarted) else "finished"
            record: dict[str, object] = {
                "type": "tool",
                "state": state,
                "id": event.call_id,
                "name": event.name,
                "summary": event.summary,
            }
            if isinstance(event, ToolStarted):
                record["activity"] = event.activity
            if isinstance(event, ToolFinished):
                record["ok"] = event.ok
            self._write(record)
        elif isinstance(event, Notice):
            self._write({"type": "notice", "text": event.text})
        elif isinstance(event, Final):
            self._write(
                {
                    "type": "done",
                    "text": event.text,
                    "model": event.model,
                    "passed_over": [asdict(p) for p in event.passed_over],
                    "usage": asdict(event.usage),
                    "cost": event.cost,
                    "generation_id": event.generation_id,
                }
            )
        elif isinstance(event, Failed):
            self.failed = True
            self._write(
                {
                    "type": "error",
                    "kind": event.kind,
                    "message": event.message,
                    "partial_text": event.partial_text,
                }
            )
        elif isinstance(event, Cancelled):
            self._write({"type": "cancelled", "reason": event.reason})


def question_from(raw: str) -> str:
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


def local_user() -> tuple[str, str]:
    """The id and name of the person at the terminal."""
    name = getpass.getuser()
    return f"local:{name}", name


async def ask(engine: Engine, raw: str, *, model: str | None, as_json: bool) -> int:
    question = question_from(raw)
    if not question:
        print(
            'routerbot: nothing to ask: pipe a question, or {"message": "..."}, to stdin',
            file=sys.stderr,
        )
        return 2
    sink: JsonSink | TextSink = (
        JsonSink(sys.stdout) if as_json else TextSink(sys.stdout, sys.stderr)
    )
    models = [(await resolve(model, engine.client.catalogue)).canonical] if model else None
    user_id, name = local_user()
    turn = Turn(user_id, name, question)
    conversation = Conversation(PLATFORM, WORKSPACE, CHANNEL, f"ask-{uuid.uuid4().hex[:8]}")
    await engine.reply(conversation, [turn], sink, user_id=user_id, models=models)
    return 1 if sink.failed else 0


HELP = """Type a message to talk to the model. /model and /credits work as in Slack and
Discord (/model help lists them); /new starts a new conversation; /quit leaves (or Ctrl-D)."""


async def chat(engine: Engine, *, model: str | None) -> int:
    commands = Commands(engine)
    user_id, name = local_user()
    caller = Caller(user_id, name, is_admin=True)
    models = [(await resolve(model, engine.client.catalogue)).canonical] if model else None
    turns: list[Turn] = []
    conversation = Conversation(PLATFORM, WORKSPACE, CHANNEL, uuid.uuid4().hex[:8])
    shown = (await commands.show(TERMINAL_KEY)).fields[0][1] if not models else models[0]
    print(f"routerbot chat · {shown}\n{HELP}")
    while True:
        try:
            line = (await asyncio.to_thread(input, "you> ")).strip()
        except EOFError:
            print()
            return 0
        if not line:
            continue
        command, _, rest = line.partition(" ")
        if command in ("/quit", "/exit"):
            return 0
        if command == "/help":
            print(HELP)
        elif command == "/new":
            turns.clear()
            conversation = Conversation(PLATFORM, WORKSPACE, CHANNEL, uuid.uuid4().hex[:8])
            print("Started a new conversation.")
        elif command in ("/model", "/credits"):
            if command == "/model" and rest.split()[:1] in (["set"], ["auto"]):
                models = None  # a channel change replaces the --model of this session
            print(document_text(await commands.run(command, rest, TERMINAL_KEY, caller)))
        else:
            turns.append(Turn(user_id, name, line))
            sink = TextSink(sys.stdout, sys.stdout)
            final = await engine.reply(conversation, turns, sink, user_id=user_id, models=models)
            if final is None:
                turns.pop()
            else:
                turns.append(Turn("routerbot", "routerbot", final.text, from_bot=True))
