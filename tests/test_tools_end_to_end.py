"""The model asks for a tool through the fake OpenRouter; the engine runs it; the final
answer carries its result."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.config import load_settings
from bot.engine import Attachment, Conversation, Engine, ToolFinished, ToolStarted, Turn
from bot.openrouter import OpenRouterClient
from bot.store import Store
from bot.tools import build_toolbox
from bot.tools.sandbox import jail_works
from tests.fakes.openrouter import FakeOpenRouter, Reply
from tests.fakes.web import FakeSite
from tests.test_engine import Recorder

HERE = Conversation("slack", "T1", "C1", "1700000000.000200")
MODEL = "openai/gpt-4o-mini"


def tool_then_echo(name: str, arguments: dict[str, Any]) -> Callable[[dict[str, Any]], Reply]:
    """The model calls `name` once, then answers with what the tool returned."""

    def script(body: dict[str, Any]) -> Reply:
        results = [m["content"] for m in body["messages"] if m["role"] == "tool"]
        if results:
            return Reply(text="The tool said:\n" + results[0])
        return Reply(text="", tool_calls=[{"name": name, "arguments": arguments}])

    return script


@pytest.fixture
async def engine(tmp_path: Path, client: OpenRouterClient, store: Store) -> AsyncIterator[Engine]:
    settings = load_settings(data_dir=tmp_path / "data", webfetch_allow_hosts="127.0.0.1")
    toolbox = await build_toolbox(settings, store, client)
    yield Engine(client, store, settings, toolbox.registry)
    await toolbox.aclose()


async def test_grep_over_an_attached_file(fake: FakeOpenRouter, engine: Engine) -> None:
    fake.script(MODEL, tool_then_echo("grep", {"pattern": "ERROR|FATAL"}))
    log = Attachment("build.log", "text/plain", data=b"ok\nERROR disk full\nok\nFATAL gone\n")
    turn = Turn("U1", "alice", "which errors are in the log I attached?", attachments=(log,))
    sink = Recorder()
    final = await engine.reply(HERE, [turn], sink, user_id="U1")
    assert final is not None
    assert final.text == ("The tool said:\nbuild.log:2: ERROR disk full\nbuild.log:4: FATAL gone")
    (started,) = sink.of(ToolStarted)
    assert started.activity == "Searching for ERROR|FATAL"
    assert sink.of(ToolFinished)[0].ok
    first = fake.chat_requests()[0].body
    assert first["messages"][-1]["content"].endswith("(attached, in the workspace: build.log)")
    offered = {t["function"]["name"] for t in first["tools"]}
    assert offered == {"read", "list", "glob", "grep", "webfetch", "todo"}


async def test_webfetch_of_a_local_fake_site(
    fake: FakeOpenRouter, engine: Engine, site: FakeSite
) -> None:
    fake.script(MODEL, tool_then_echo("webfetch", {"url": f"{site.url}/page"}))
    sink = Recorder()
    final = await engine.reply(
        HERE, [Turn("U1", "bob", "what does the status page say?")], sink, user_id="U1"
    )
    assert final is not None
    assert "Build 42" in final.text
    assert "lint: 2 warnings" in final.text
    assert sink.of(ToolStarted)[0].activity == "Fetching 127.0.0.1"
    assert site.paths == ["/page"]


async def test_bash_in_the_jail(fake: FakeOpenRouter, engine: Engine, store: Store) -> None:
    why = await jail_works()
    if why is not None:
        pytest.skip(f"no jail on this machine: {why}")  # .ci/run installs bubblewrap
    await store.update_settings(HERE.key, {"tools": ["bash", "read"]}, by="admin")
    fake.script(
        MODEL, tool_then_echo("bash", {"command": "printf 'a\\nb\\n' > n.txt; wc -l n.txt"})
    )
    sink = Recorder()
    final = await engine.reply(HERE, [Turn("U1", "carol", "count the lines")], sink, user_id="U1")
    assert final is not None
    assert final.text == "The tool said:\n2 n.txt\n[exit status 0]"
    assert sink.of(ToolStarted)[0].activity.startswith("Running printf")
    assert (engine.workspace(HERE).root / "n.txt").read_text() == "a\nb\n"
