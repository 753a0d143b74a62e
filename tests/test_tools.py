"""The tools doing their ordinary work, through the registry as the engine calls them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.openrouter import OpenRouterClient
from bot.openrouter.types import ToolCall
from bot.store import Store
from bot.tools import ToolContext, ToolRegistry, Workspace
from bot.tools.files import FILE_TOOLS
from bot.tools.registry import FunctionTool, ToolResult
from bot.tools.sandbox import todo_tool
from bot.tools.web import WebFetcher, html_to_text, web_tools
from tests.fakes.openrouter import FakeOpenRouter
from tests.fakes.web import FakeSite


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    root = tmp_path / "data" / "workspaces" / "slack" / "C1" / "T1"
    return Workspace(root, quota_bytes=1_000_000, max_files=10)


@pytest.fixture
def ctx(workspace: Workspace) -> ToolContext:
    return ToolContext("slack", "W1", "C1", "T1", "U1", workspace)


@pytest.fixture
async def registry(store: Store, client: OpenRouterClient) -> AsyncIterator[ToolRegistry]:
    fetcher = WebFetcher(allow_hosts=frozenset({"127.0.0.1"}))
    tools = [*FILE_TOOLS, *web_tools(fetcher, client, "openai/gpt-4o-mini"), todo_tool(store)]
    yield ToolRegistry(tools)
    await fetcher.aclose()


async def call(registry: ToolRegistry, ctx: ToolContext, name: str, **args: Any) -> ToolResult:
    return await registry.call(ToolCall("call_1", name, json.dumps(args)), ctx, registry.names())


def put(workspace: Workspace, path: str, text: str) -> None:
    target = workspace.root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def test_schema_comes_from_signature_and_docstring() -> None:
    read = next(t for t in FILE_TOOLS if t.name == "read")
    assert read.description.startswith("Read a text file from the conversation's workspace")
    assert read.parameters["required"] == ["path"]
    props = read.parameters["properties"]
    assert props["path"] == {
        "type": "string",
        "description": 'file path relative to the workspace, e.g. "build.log".',
    }
    assert props["offset"]["type"] == "integer"
    assert props["offset"]["default"] == 1
    assert read.parameters["additionalProperties"] is False


async def test_bad_arguments_are_an_error_result(registry: ToolRegistry, ctx: ToolContext) -> None:
    result = await call(registry, ctx, "read", path=["not", "a", "string"])
    assert not result.ok
    assert result.text.startswith("Error: invalid arguments (path:")
    result = await call(registry, ctx, "read", path="a.txt", colour="red")
    assert "colour: Extra inputs are not permitted" in result.text
    broken = await registry.call(ToolCall("c", "read", "{oops"), ctx, registry.names())
    assert broken.text == "Error: the arguments were not a JSON object"


async def test_read_with_line_numbers_offset_and_limit(
    registry: ToolRegistry, ctx: ToolContext, workspace: Workspace
) -> None:
    put(workspace, "build.log", "\n".join(f"line {i}" for i in range(1, 3001)))
    result = await call(registry, ctx, "read", path="build.log")
    lines = result.text.splitlines()
    assert lines[0] == "     1\tline 1"
    assert lines[1999] == "  2000\tline 2000"
    assert lines[-1] == "[more lines follow: read again with offset=2001]"
    result = await call(registry, ctx, "read", path="build.log", offset=2999, limit=5)
    assert result.text.splitlines() == ["  2999\tline 2999", "  3000\tline 3000"]


async def test_list_glob_grep(
    registry: ToolRegistry, ctx: ToolContext, workspace: Workspace
) -> None:
    put(workspace, "app.log", "ok\nERROR disk full\nok\nFATAL gone\n")
    put(workspace, "logs/old/web.log", "error: timeout\n")
    put(workspace, "notes.md", "ERROR in notes\n")
    listing = (await call(registry, ctx, "list")).text
    assert listing.splitlines() == ["app.log  (33 bytes)", "logs/", "notes.md  (15 bytes)"]
    assert (await call(registry, ctx, "glob", pattern="*.log")).text == "app.log\nlogs/old/web.log"
    assert (await call(registry, ctx, "glob", pattern="logs/**/*.log")).text == "logs/old/web.log"
    found = await call(registry, ctx, "grep", pattern="ERROR|FATAL", include="*.log")
    assert found.text == "app.log:2: ERROR disk full\napp.log:4: FATAL gone"
    found = await call(registry, ctx, "grep", pattern="error", ignore_case=True, path="logs")
    assert found.text == "logs/old/web.log:1: error: timeout"
    found = await call(registry, ctx, "grep", pattern="ERROR", path="notes.md")
    assert found.text == "notes.md:1: ERROR in notes"


async def test_write_and_edit(
    registry: ToolRegistry, ctx: ToolContext, workspace: Workspace
) -> None:
    assert (await call(registry, ctx, "write", path="out/plan.md", content="a b a")).ok
    assert (workspace.root / "out/plan.md").read_text() == "a b a"
    twice = await call(registry, ctx, "edit", path="out/plan.md", old="a", new="c")
    assert twice.text.startswith("Error: the text occurs 2 times")
    done = await call(registry, ctx, "edit", path="out/plan.md", old="a", new="c", replace_all=True)
    assert done.text == "replaced 2 occurrence(s) in out/plan.md"
    assert (workspace.root / "out/plan.md").read_text() == "c b c"
    missing = await call(registry, ctx, "edit", path="out/plan.md", old="zzz", new="y")
    assert missing.text == "Error: the text to replace was not found in 'out/plan.md'"


async def test_todo_list(registry: ToolRegistry, ctx: ToolContext) -> None:
    assert (await call(registry, ctx, "todo", action="list")).text == "the todo list is empty"
    assert (
        await call(registry, ctx, "todo", action="add", text="ship it")
    ).text == "added #1: ship it"
    await call(registry, ctx, "todo", action="add", text="write notes")
    assert (await call(registry, ctx, "todo", action="done", number=1)).text == "marked #1 done"
    listing = await call(registry, ctx, "todo", action="list")
    assert listing.text == "#1 [x] ship it\n#2 [ ] write notes"
    assert (await call(registry, ctx, "todo", action="done", number=9)).text == (
        "Error: there is no item #9"
    )
    wrong = await call(registry, ctx, "todo", action="delete")
    assert wrong.text.startswith("Error: invalid arguments (action:")


async def test_webfetch_turns_html_into_text(
    registry: ToolRegistry, ctx: ToolContext, site: FakeSite
) -> None:
    result = await call(registry, ctx, "webfetch", url=f"{site.url}/page")
    assert result.ok, result.text
    assert "Build status\nBuild 42\nAll green except:\n- lint: 2 warnings\n- docs: broken link" in (
        result.text
    )
    assert "alert" not in result.text
    assert "color" not in result.text


async def test_websearch_uses_the_web_plugin(
    registry: ToolRegistry, ctx: ToolContext, fake: FakeOpenRouter
) -> None:
    result = await call(registry, ctx, "websearch", query="routerbot release notes")
    assert result.ok
    body = fake.chat_requests()[-1].body
    assert body["plugins"] == [{"id": "web"}]
    assert "routerbot release notes" in body["messages"][0]["content"]


async def test_activity_lines(client: OpenRouterClient) -> None:
    read = next(t for t in FILE_TOOLS if t.name == "read")
    assert read.activity({"path": "build.log"}) == "Reading build.log"
    assert read.activity(None) == "Using read"
    fetcher = WebFetcher()
    fetch = web_tools(fetcher, client, "x/y")[0]
    assert fetch.activity({"url": "https://example.com/a/b"}) == "Fetching example.com"
    await fetcher.aclose()


def test_html_to_text_keeps_structure() -> None:
    assert html_to_text("<p>a</p><p>b <i>c</i></p><script>x</script>") == "a\nb c"


async def test_registry_caps_output(ctx: ToolContext) -> None:
    async def loud(ctx: ToolContext) -> str:
        """Says a lot."""
        return "x" * 40_000

    registry = ToolRegistry([FunctionTool(loud)])
    result = await call(registry, ctx, "loud")
    assert result.text.endswith("[truncated: 8,000 more characters not shown]")
    assert len(result.text) < 32_100
