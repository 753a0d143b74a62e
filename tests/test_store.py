"""The SQLite store: migrations, settings with their audit, the ledger, crash safety."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bot.channels import resolve_settings
from bot.config import load_settings
from bot.store import EVENT_RETENTION_S, PRUNE_EVERY, ChannelKey, Store

KEY = ChannelKey("discord", "G1", "C1")


async def test_migrations_are_recorded_once(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    store = await Store.open(path)
    await store.close()
    store = await Store.open(path)
    try:
        assert await store.migrations() == ["initial", "todos", "threads"]
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_bot_threads_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    store = await Store.open(path)
    await store.mark_thread(KEY, "1700.1")
    await store.mark_thread(KEY, "1700.1")  # answering twice in a thread is one row
    await store.close()
    store = await Store.open(path)
    try:
        assert await store.is_bot_thread(KEY, "1700.1")
        assert not await store.is_bot_thread(KEY, "1700.2")
        assert not await store.is_bot_thread(ChannelKey("slack", "G1", "C1"), "1700.1")
    finally:
        await store.close()


async def test_settings_resolve_channel_then_workspace_then_default(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "bot.sqlite3")
    settings = load_settings(default_fallbacks="openrouter/z-ai/glm-4.7")
    try:
        await store.update_settings(
            KEY.workspace_default(), {"system_prompt": "Team rules."}, by="owner"
        )
        await store.update_settings(KEY, {"model": "openrouter/openai/gpt-4o"}, by="alice")
        resolved = await resolve_settings(store, KEY, settings)
        assert resolved.model == "openrouter/openai/gpt-4o"
        assert resolved.system_prompt == "Team rules."
        assert resolved.fallbacks == ["openrouter/z-ai/glm-4.7"]
        assert resolved.sources["model"] == "channel"
        assert resolved.sources["system_prompt"] == "workspace"
        assert resolved.sources["fallbacks"] == "default"
        other = await resolve_settings(store, ChannelKey("discord", "G1", "C2"), settings)
        assert other.model == "openrouter/openai/gpt-4o-mini"
        assert other.system_prompt == "Team rules."
    finally:
        await store.close()


async def test_changes_are_audited(tmp_path: Path) -> None:
    now = [1000.0]
    store = await Store.open(tmp_path / "bot.sqlite3", clock=lambda: now[0])
    try:
        await store.update_settings(KEY, {"model": "openrouter/openai/gpt-4o"}, by="alice")
        now[0] = 2000.0
        await store.update_settings(
            KEY,
            {"model": "openrouter/z-ai/glm-4.7", "fallbacks": ["openrouter/openai/gpt-4o"]},
            by="bob",
        )
        old = await store.reset_settings(KEY, by="carol")
        assert old == {
            "model": "openrouter/z-ai/glm-4.7",
            "fallbacks": ["openrouter/openai/gpt-4o"],
        }
        log = [(e.field, e.old, e.new, e.changed_by) for e in await store.audit_log(KEY)]
        assert log == [
            ("model", None, "openrouter/openai/gpt-4o", "alice"),
            ("model", "openrouter/openai/gpt-4o", "openrouter/z-ai/glm-4.7", "bob"),
            ("fallbacks", None, ["openrouter/openai/gpt-4o"], "bob"),
            ("model", "openrouter/z-ai/glm-4.7", None, "carol"),
            ("fallbacks", ["openrouter/openai/gpt-4o"], None, "carol"),
        ]
        assert await store.get_settings(KEY) == {}
    finally:
        await store.close()


async def test_a_failed_change_leaves_nothing_half_written(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "bot.sqlite3")
    try:
        with pytest.raises(ValueError, match="not settings"):
            await store.update_settings(KEY, {"model": "x", "colour": "red"}, by="alice")
        await store.update_settings(KEY, {"model": "openrouter/openai/gpt-4o"}, by="alice")
        with pytest.raises(sqlite3.Error):
            # max_tokens must be an integer that SQLite can bind: a dict is refused mid-way.
            await store.update_settings(
                KEY, {"model": "openrouter/z-ai/glm-4.7", "max_tokens": {"bad": 1}}, by="bob"
            )
        assert await store.get_settings(KEY) == {"model": "openrouter/openai/gpt-4o"}
        assert len(await store.audit_log(KEY)) == 1
    finally:
        await store.close()


async def test_twenty_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    # Two connections to one file, as two processes would have: WAL plus the busy timeout
    # serialise them, and the lock in each Store serialises its own coroutines.
    first, second = await Store.open(path), await Store.open(path)
    try:

        async def write(i: int) -> None:
            store = first if i % 2 else second
            channel = ChannelKey("slack", "T1", f"C{i}")
            await store.update_settings(channel, {"model": f"openrouter/v/m{i}"}, by=f"U{i}")
            await store.update_settings(KEY, {"max_tokens": 100 + i}, by=f"U{i}")

        await asyncio.gather(*(write(i) for i in range(20)))
        for i in range(20):
            got = await first.get_settings(ChannelKey("slack", "T1", f"C{i}"))
            assert got == {"model": f"openrouter/v/m{i}"}
        assert len(await first.audit_log(KEY)) == 20
        assert (await second.get_settings(KEY))["max_tokens"] in range(100, 120)
    finally:
        await first.close()
        await second.close()


async def test_an_acknowledged_change_survives_a_killed_process(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    writer = textwrap.dedent(
        f"""
        import asyncio, os, sys
        from pathlib import Path
        from bot.store import EVENT_RETENTION_S, PRUNE_EVERY, ChannelKey, Store

        async def main():
            store = await Store.open(Path({str(path)!r}))
            await store.update_settings(ChannelKey("discord", "G1", "C1"),
                                        {{"model": "openrouter/z-ai/glm-4.7"}}, by="alice")
            print("acknowledged", flush=True)
            sys.stdin.read()  # hold the connection open until killed

        asyncio.run(main())
        """
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", writer, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
    assert line == b"acknowledged\n"
    process.kill()  # no clean close, no checkpoint
    await process.wait()
    store = await Store.open(path)
    try:
        assert await store.get_settings(KEY) == {"model": "openrouter/z-ai/glm-4.7"}
    finally:
        await store.close()


async def test_ledger_and_event_ids(tmp_path: Path) -> None:
    now = [10_000.0]
    store = await Store.open(tmp_path / "bot.sqlite3", clock=lambda: now[0])
    try:
        for cost in (0.25, 0.5, None):
            await store.record_usage(
                KEY,
                user_id="U1",
                model="openai/gpt-4o",
                prompt_tokens=10,
                completion_tokens=5,
                cost=cost,
                generation_id="gen-1",
            )
        assert await store.spend(KEY, 0) == (0.75, 3)
        assert await store.spend(KEY, now[0] + 1) == (0.0, 0)
        assert await store.first_sighting("Ev1") is True
        assert await store.first_sighting("Ev1") is False
        now[0] += 7200
        assert await store.first_sighting("Ev2") is True
        assert await store.prune_events(older_than_s=3600) == 1
        assert await store.first_sighting("Ev1") is True  # forgotten after pruning
    finally:
        await store.close()


async def test_old_event_ids_are_pruned_as_new_ones_arrive(tmp_path: Path) -> None:
    now = [0.0]
    store = await Store.open(tmp_path / "bot.sqlite3", clock=lambda: now[0])
    try:
        await store.first_sighting("ancient")
        now[0] = EVENT_RETENTION_S + 1
        for i in range(PRUNE_EVERY):
            await store.first_sighting(f"new-{i}")
        assert await store.first_sighting("ancient") is True  # pruned, so new again
        assert await store.first_sighting("new-0") is False
    finally:
        await store.close()
