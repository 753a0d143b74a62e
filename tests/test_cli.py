"""The `routerbot` console script, run as a real process against the fake."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fakes.openrouter import TEST_KEY, FakeOpenRouter, Reply

ROUTERBOT = str(Path(sys.executable).parent / "routerbot")


@dataclass
class Run:
    code: int
    out: str
    err: str


async def routerbot(
    *args: str, fake: FakeOpenRouter | None = None, key: str | None = TEST_KEY, stdin: str = ""
) -> Run:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENROUTER_", "ROUTERBOT_"))}
    if key is not None:
        env["OPENROUTER_API_KEY"] = key
    if fake is not None:
        env["OPENROUTER_BASE_URL"] = fake.url
    process = await asyncio.create_subprocess_exec(
        ROUTERBOT,
        *args,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin.encode()), timeout=30)
    assert process.returncode is not None
    run = Run(process.returncode, out.decode(), err.decode())
    assert "Traceback" not in run.err, run.err
    assert TEST_KEY not in run.out + run.err
    return run


async def test_models_prints_the_table(fake: FakeOpenRouter) -> None:
    run = await routerbot("models", "claude", fake=fake)
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    assert lines[0].split() == ["model", "context", "$/M", "in", "$/M", "out", "tools", "images"]
    assert lines[1].split() == [
        "openrouter/anthropic/claude-haiku-4.5",
        "200,000",
        "1.00",
        "5.00",
        "yes",
        "yes",
    ]
    assert lines[2].split() == [
        "openrouter/anthropic/claude-sonnet-4",
        "200,000",
        "3.00",
        "15.00",
        "yes",
        "yes",
    ]
    assert len(lines) == 3


async def test_models_without_a_match(fake: FakeOpenRouter) -> None:
    run = await routerbot("models", "glm-4.8", fake=fake)
    assert run.code == 1
    assert "No model matches 'glm-4.8'.\nDid you mean openrouter/z-ai/glm-4.7?" in run.out


@pytest.mark.parametrize(
    "command", [["models"], ["models", "claude"], ["credits"], ["ask"], ["chat"]]
)
async def test_no_key_is_one_line_and_non_zero(command: list[str]) -> None:
    run = await routerbot(*command, key=None, stdin="hi\n")
    assert run.code == 2
    assert run.out == ""
    assert run.err.count("\n") == 1
    assert "OPENROUTER_API_KEY is not set" in run.err


async def test_malformed_key_is_one_line() -> None:
    run = await routerbot("credits", key="not-a-key")
    assert run.code == 2
    assert run.err.count("\n") == 1
    assert "OPENROUTER_API_KEY does not look like an OpenRouter key" in run.err
    assert "not-a-key" not in run.err


async def test_rejected_key_is_one_plain_line(fake: FakeOpenRouter) -> None:
    run = await routerbot("credits", fake=fake, key="sk-or-v1-" + "7" * 64)
    assert run.code == 1
    assert run.err.count("\n") == 1
    assert "OpenRouter rejected the bot's API key" in run.err


async def test_credits(fake: FakeOpenRouter) -> None:
    run = await routerbot("credits", fake=fake)
    assert run.code == 0, run.err
    fields = dict(
        line.strip().split("  ", 1) for line in run.out.splitlines() if line.startswith("  ")
    )
    assert fields["Balance"].strip() == "$74.50 left of the key's $100.00 limit, resets monthly"
    assert fields["Account today"].strip() == "$1.20"
    assert fields["Account this month"].strip() == "$25.50"
    assert fields["This channel this month"].strip() == "$0.00 (0 replies)"
    assert "Figures from OpenRouter, just now." in run.out


async def test_ask_streams_an_answer(fake: FakeOpenRouter) -> None:
    fake.script("anthropic/claude-sonnet-4", Reply(text="Hi there, team."))
    run = await routerbot(
        "ask", "--model", "openrouter/anthropic/claude-sonnet-4", fake=fake, stdin="hi\n"
    )
    assert run.code == 0, run.err
    assert run.out == "Hi there, team.\n"
    assert "anthropic/claude-sonnet-4" in run.err  # the footer names the model that served
    sent = fake.chat_requests()[0].body
    assert sent["stream"] is True
    assert sent["model"] == "anthropic/claude-sonnet-4"
    assert sent["messages"][-1]["role"] == "user"
    assert sent["messages"][-1]["content"].endswith(": hi")  # the asker's name, then the text


async def test_ask_takes_json_and_prints_ndjson(fake: FakeOpenRouter) -> None:
    fake.script("openai/gpt-4o-mini", Reply(text="one two"))
    run = await routerbot("ask", "--json", fake=fake, stdin='{"message": "count"}')
    assert run.code == 0, run.err
    events = [json.loads(line) for line in run.out.splitlines()]
    assert [e["type"] for e in events] == ["start", "text", "text", "done"]
    assert events[0]["model"] == "openrouter/openai/gpt-4o-mini"
    done = events[-1]
    assert done["text"] == "one two"
    assert done["model"] == "openai/gpt-4o-mini"
    assert done["usage"]["completion_tokens"] == 2
    assert done["cost"] > 0
    assert fake.chat_requests()[0].body["messages"][-1]["content"].endswith(": count")


async def test_ask_json_reports_errors_as_events(fake: FakeOpenRouter) -> None:
    fake.script("openai/gpt-4o-mini", Reply(fail_status=402))
    run = await routerbot("ask", "--json", fake=fake, stdin="hi")
    assert run.code == 1
    event = json.loads(run.out.splitlines()[-1])
    assert event["type"] == "error"
    assert event["kind"] == "insufficient_credits"


async def test_ask_with_an_unknown_model(fake: FakeOpenRouter) -> None:
    run = await routerbot("ask", "--model", "z-ai/glm-4.8", fake=fake, stdin="hi")
    assert run.code == 1
    assert "Did you mean openrouter/z-ai/glm-4.7?" in run.err
    assert fake.chat_requests() == []


async def test_ask_with_nothing_to_ask(fake: FakeOpenRouter) -> None:
    run = await routerbot("ask", fake=fake, stdin="  \n")
    assert run.code == 2
    assert "nothing to ask" in run.err


async def test_chat_session(fake: FakeOpenRouter) -> None:
    fake.script("openai/gpt-4o-mini", Reply(text="First answer."))
    fake.script("z-ai/glm-4.7", Reply(text="Second answer."))
    script = "hello\n/model set z-ai/glm-4.7\nand again\n/model set nonsense\n/quit\n"
    run = await routerbot("chat", fake=fake, stdin=script)
    assert run.code == 0, run.err
    assert "First answer." in run.out
    assert "Second answer." in run.out
    assert "Set model to openrouter/z-ai/glm-4.7" in run.out
    assert "`nonsense` is not a model OpenRouter knows" in run.out
    second = fake.chat_requests()[1].body
    assert second["model"] == "z-ai/glm-4.7"
    contents = [m["content"] for m in second["messages"][1:]]  # after the system prompt
    assert contents[1] == "First answer."
    assert contents[0].endswith(": hello")
    assert contents[2].endswith(": and again")
    # Both turns carry the same author: the local user's name, not a word of the input.
    assert contents[0].split(":")[0] == contents[2].split(":")[0] != "and"
