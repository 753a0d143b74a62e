"""The SQLite store: channel settings, their audit log, the usage ledger, seen event ids.

One file under ROUTERBOT_DATA_DIR, in WAL mode with a busy timeout. Schema changes are
ordered migrations, each applied once and recorded in `schema_migrations`. Every change
of settings is one transaction (the new values and their audit rows together), committed
with `synchronous=FULL`, so a change that was acknowledged survives even a power cut. The
busy writes of every reply (seen event ids, the usage ledger, threads answered in) use
`synchronous=NORMAL`, which in WAL mode survives a crash of the bot but not of the
machine: it saves an fsync per reply, which under load queued replies behind the disk.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import aiosqlite

WORKSPACE_DEFAULT = "*"  # the channel id of a workspace's default settings row
# Platforms retry an event for minutes (Slack: up to 5), so a day of ids is plenty.
EVENT_RETENTION_S = 24 * 3600
PRUNE_EVERY = 500  # sightings between two prunes


@dataclass(frozen=True)
class ChannelKey:
    platform: str
    workspace: str
    channel: str

    def workspace_default(self) -> ChannelKey:
        return ChannelKey(self.platform, self.workspace, WORKSPACE_DEFAULT)


# The settings a channel (or a workspace default) may set; None means "inherit".
SETTING_FIELDS = (
    "model",
    "fallbacks",
    "system_prompt",
    "tools",
    "temperature",
    "max_tokens",
    "budget_usd",
)
_JSON_FIELDS = {"fallbacks", "tools"}


@dataclass(frozen=True)
class AuditEntry:
    field: str
    old: Any
    new: Any
    changed_by: str
    changed_at: float


Migration = Callable[[aiosqlite.Connection], Awaitable[None]]


async def _run_script(db: aiosqlite.Connection, script: str) -> None:
    # Statement by statement: executescript() would commit the migration's transaction.
    for statement in script.split(";"):
        if statement.strip():
            await db.execute(statement)


async def _m1_initial(db: aiosqlite.Connection) -> None:
    await _run_script(
        db,
        """
        CREATE TABLE channel_settings (
            platform TEXT NOT NULL,
            workspace TEXT NOT NULL,
            channel TEXT NOT NULL,
            model TEXT,
            fallbacks TEXT,
            system_prompt TEXT,
            tools TEXT,
            temperature REAL,
            max_tokens INTEGER,
            budget_usd REAL,
            updated_by TEXT NOT NULL,
            updated_at REAL NOT NULL,
            PRIMARY KEY (platform, workspace, channel)
        );
        CREATE TABLE settings_audit (
            id INTEGER PRIMARY KEY,
            platform TEXT NOT NULL,
            workspace TEXT NOT NULL,
            channel TEXT NOT NULL,
            field TEXT NOT NULL,
            old_value TEXT,
            new_value TEXT,
            changed_by TEXT NOT NULL,
            changed_at REAL NOT NULL
        );
        CREATE INDEX settings_audit_channel
            ON settings_audit (platform, workspace, channel, changed_at);
        CREATE TABLE usage_ledger (
            id INTEGER PRIMARY KEY,
            platform TEXT NOT NULL,
            workspace TEXT NOT NULL,
            channel TEXT NOT NULL,
            user_id TEXT NOT NULL,
            model TEXT NOT NULL,
            prompt_tokens INTEGER NOT NULL,
            completion_tokens INTEGER NOT NULL,
            cost REAL,
            generation_id TEXT,
            created_at REAL NOT NULL
        );
        CREATE INDEX usage_ledger_channel
            ON usage_ledger (platform, workspace, channel, created_at);
        CREATE TABLE processed_events (
            event_id TEXT PRIMARY KEY,
            seen_at REAL NOT NULL
        );
        CREATE INDEX processed_events_age ON processed_events (seen_at);
        """,
    )


async def _m2_todos(db: aiosqlite.Connection) -> None:
    await _run_script(
        db,
        """
        CREATE TABLE todos (
            id INTEGER PRIMARY KEY,
            platform TEXT NOT NULL,
            channel TEXT NOT NULL,
            thread TEXT NOT NULL,
            number INTEGER NOT NULL,
            text TEXT NOT NULL,
            done INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            UNIQUE (platform, channel, thread, number)
        )
        """,
    )


async def _m3_threads(db: aiosqlite.Connection) -> None:
    await _run_script(
        db,
        """
        CREATE TABLE bot_threads (
            platform TEXT NOT NULL,
            workspace TEXT NOT NULL,
            channel TEXT NOT NULL,
            thread TEXT NOT NULL,
            answered_at REAL NOT NULL,
            PRIMARY KEY (platform, workspace, channel, thread)
        )
        """,
    )


# Append only: a released migration is never edited, a new one is added after it.
MIGRATIONS: list[tuple[str, Migration]] = [
    ("initial", _m1_initial),
    ("todos", _m2_todos),
    ("threads", _m3_threads),
]


@dataclass(frozen=True)
class Todo:
    number: int
    text: str
    done: bool


def _encode(field: str, value: Any) -> Any:
    if value is None:
        return None
    return json.dumps(value) if field in _JSON_FIELDS else value


def _decode(field: str, value: Any) -> Any:
    if value is None:
        return None
    return json.loads(value) if field in _JSON_FIELDS else value


class Store:
    """Async access to the SQLite file. Open once at start-up, close at shutdown."""

    def __init__(self, db: aiosqlite.Connection, *, clock: Callable[[], float] = time.time):
        self._db = db
        self._clock = clock
        # One connection serves every coroutine: transactions must not interleave on it.
        self._lock = asyncio.Lock()
        self._sightings = 0
        self._seen: dict[str, float] = {}  # event id -> when seen, within the retention
        self._settings: dict[ChannelKey, dict[str, Any]] = {}
        self._unwritten: list[tuple[str, float]] = []
        self._writer: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, path: Path, *, clock: Callable[[], float] = time.time) -> Self:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path, isolation_level=None)
        try:
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA busy_timeout=5000")
            await db.execute("PRAGMA synchronous=NORMAL")
            await db.execute("PRAGMA foreign_keys=ON")
            store = cls(db, clock=clock)
            await store._migrate()
            await store._load_sightings()
        except BaseException:
            await db.close()
            raise
        return store

    async def close(self) -> None:
        await self._write_sightings()
        await self._db.close()

    async def ping(self) -> bool:
        """Whether the database answers (for /readyz)."""
        try:
            async with self._db.execute("SELECT 1") as cursor:
                return await cursor.fetchone() == (1,)
        except (sqlite3.Error, ValueError):  # ValueError: the connection is closed
            return False

    @asynccontextmanager
    async def _transaction(self, *, durable: bool = False) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction at a time; `durable` commits with an fsync."""
        async with self._lock:
            if durable:
                await self._db.execute("PRAGMA synchronous=FULL")
            try:
                await self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    await self._db.execute("ROLLBACK")
                    raise
                await self._db.execute("COMMIT")
            finally:
                if durable:
                    await self._db.execute("PRAGMA synchronous=NORMAL")

    async def _statement(self, sql: str, parameters: tuple[Any, ...]) -> int:
        """One write statement, committed by itself; returns the rows it changed.

        A single statement is its own transaction (the connection autocommits), so it
        takes one trip to the database thread where BEGIN ... COMMIT takes three: under
        load every trip waits its turn on a busy event loop."""
        async with self._lock:
            cursor = await self._db.execute(sql, parameters)
            return int(cursor.rowcount)

    async def _migrate(self) -> None:
        await self._db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
        )
        async with self._db.execute("SELECT version FROM schema_migrations") as cursor:
            applied = {row[0] for row in await cursor.fetchall()}
        for version, (name, migration) in enumerate(MIGRATIONS, start=1):
            if version in applied:
                continue
            async with self._transaction() as db:
                await migration(db)
                await db.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, ?)", (version, name, self._clock())
                )

    async def migrations(self) -> list[str]:
        async with self._db.execute(
            "SELECT name FROM schema_migrations ORDER BY version"
        ) as cursor:
            return [row[0] for row in await cursor.fetchall()]

    # -- settings -------------------------------------------------------------------

    async def get_settings(self, key: ChannelKey) -> dict[str, Any]:
        """The values a channel (or workspace default) row sets; fields it inherits are absent.

        Kept in memory once read, and dropped when this store changes them: every reply
        reads its channel's settings, which would otherwise cost trips to the database."""
        cached = self._settings.get(key)
        if cached is None:
            cached = self._settings[key] = await self._read_settings(key)
        return dict(cached)

    async def _read_settings(self, key: ChannelKey) -> dict[str, Any]:
        columns = ", ".join(SETTING_FIELDS)
        rows = await self._db.execute_fetchall(
            f"SELECT {columns} FROM channel_settings "  # noqa: S608 - fixed column names
            "WHERE platform = ? AND workspace = ? AND channel = ?",
            (key.platform, key.workspace, key.channel),
        )
        row = next(iter(rows), None)
        if row is None:
            return {}
        values = {f: _decode(f, v) for f, v in zip(SETTING_FIELDS, row, strict=True)}
        return {f: v for f, v in values.items() if v is not None}

    async def update_settings(
        self, key: ChannelKey, changes: Mapping[str, Any], *, by: str
    ) -> dict[str, Any]:
        """Set (or, with None, un-set) fields in one transaction; returns the old values."""
        unknown = set(changes) - set(SETTING_FIELDS)
        if unknown:
            raise ValueError(f"not settings: {sorted(unknown)}")
        now = self._clock()
        try:
            async with self._transaction(durable=True) as db:
                old = await self._read_settings(key)
                await db.execute(
                    "INSERT INTO channel_settings (platform, workspace, channel, updated_by, "
                    "updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (key.platform, key.workspace, key.channel, by, now),
                )
                for field, value in changes.items():
                    await db.execute(
                        f"UPDATE channel_settings SET {field} = ?, updated_by = ?, "  # noqa: S608 - checked field
                        "updated_at = ? WHERE platform = ? AND workspace = ? AND channel = ?",
                        (_encode(field, value), by, now, key.platform, key.workspace, key.channel),
                    )
                    await self._audit(db, key, field, old.get(field), value, by, now)
        finally:
            # Read meanwhile on this connection, a cached copy may hold what this change
            # undid; the next read goes to the database.
            self._settings.pop(key, None)
        return old

    async def reset_settings(self, key: ChannelKey, *, by: str) -> dict[str, Any]:
        """Forget every value a channel set, in one transaction; returns the old values."""
        now = self._clock()
        try:
            async with self._transaction(durable=True) as db:
                old = await self._read_settings(key)
                await db.execute(
                    "DELETE FROM channel_settings "
                    "WHERE platform = ? AND workspace = ? AND channel = ?",
                    (key.platform, key.workspace, key.channel),
                )
                for field, value in old.items():
                    await self._audit(db, key, field, value, None, by, now)
        finally:
            self._settings.pop(key, None)
        return old

    @staticmethod
    async def _audit(
        db: aiosqlite.Connection,
        key: ChannelKey,
        field: str,
        old: Any,
        new: Any,
        by: str,
        now: float,
    ) -> None:
        await db.execute(
            "INSERT INTO settings_audit (platform, workspace, channel, field, old_value, "
            "new_value, changed_by, changed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key.platform,
                key.workspace,
                key.channel,
                field,
                json.dumps(old),
                json.dumps(new),
                by,
                now,
            ),
        )

    async def audit_log(self, key: ChannelKey) -> list[AuditEntry]:
        async with self._db.execute(
            "SELECT field, old_value, new_value, changed_by, changed_at FROM settings_audit "
            "WHERE platform = ? AND workspace = ? AND channel = ? ORDER BY id",
            (key.platform, key.workspace, key.channel),
        ) as cursor:
            rows = await cursor.fetchall()
        return [AuditEntry(r[0], json.loads(r[1]), json.loads(r[2]), r[3], r[4]) for r in rows]

    # -- usage ----------------------------------------------------------------------

    async def record_usage(
        self,
        key: ChannelKey,
        *,
        user_id: str,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        cost: float | None,
        generation_id: str | None,
    ) -> None:
        await self._statement(
            "INSERT INTO usage_ledger (platform, workspace, channel, user_id, model, "
            "prompt_tokens, completion_tokens, cost, generation_id, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key.platform,
                key.workspace,
                key.channel,
                user_id,
                model,
                prompt_tokens,
                completion_tokens,
                cost,
                generation_id,
                self._clock(),
            ),
        )

    async def spend(self, key: ChannelKey, since: float) -> tuple[float, int]:
        """The channel's cost in USD and its number of replies since a Unix time."""
        rows = await self._db.execute_fetchall(
            "SELECT COALESCE(SUM(cost), 0), COUNT(*) FROM usage_ledger "
            "WHERE platform = ? AND workspace = ? AND channel = ? AND created_at >= ?",
            (key.platform, key.workspace, key.channel, since),
        )
        row = next(iter(rows))
        return float(row[0]), int(row[1])

    # -- event de-duplication -------------------------------------------------------

    async def first_sighting(self, event_id: str) -> bool:
        """Records an event id; False when it was already recorded (a platform retry).

        The ids of the last EVENT_RETENTION_S live in memory too (loaded at open), so the
        answer costs no trip to the database: the new id is written behind, with every
        other id that arrived meanwhile, in one statement. Ids older than the retention are
        pruned every PRUNE_EVERY sightings."""
        self._sightings += 1
        if self._sightings % PRUNE_EVERY == 0:
            await self.prune_events(EVENT_RETENTION_S)
        if event_id in self._seen:
            return False
        now = self._clock()
        self._seen[event_id] = now
        self._unwritten.append((event_id, now))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_sightings())
        return True

    async def _write_sightings(self) -> None:
        while self._unwritten:
            batch, self._unwritten = self._unwritten, []
            async with self._lock:
                await self._db.executemany(
                    "INSERT OR IGNORE INTO processed_events VALUES (?, ?)", batch
                )

    async def _load_sightings(self) -> None:
        rows = await self._db.execute_fetchall(
            "SELECT event_id, seen_at FROM processed_events WHERE seen_at >= ?",
            (self._clock() - EVENT_RETENTION_S,),
        )
        self._seen = {str(event_id): float(seen_at) for event_id, seen_at in rows}

    async def prune_events(self, older_than_s: float) -> int:
        cutoff = self._clock() - older_than_s
        self._seen = {e: at for e, at in self._seen.items() if at >= cutoff}
        await self._write_sightings()
        return await self._statement("DELETE FROM processed_events WHERE seen_at < ?", (cutoff,))

    # -- threads the bot answers in ---------------------------------------------------

    async def mark_thread(self, key: ChannelKey, thread: str) -> None:
        """Remembers that the bot answered in a thread, so follow-ups there need no mention."""
        await self._statement(
            "INSERT INTO bot_threads VALUES (?, ?, ?, ?, ?) ON CONFLICT DO UPDATE "
            "SET answered_at = excluded.answered_at",
            (key.platform, key.workspace, key.channel, thread, self._clock()),
        )

    async def is_bot_thread(self, key: ChannelKey, thread: str) -> bool:
        rows = await self._db.execute_fetchall(
            "SELECT 1 FROM bot_threads WHERE platform = ? AND workspace = ? AND channel = ? "
            "AND thread = ?",
            (key.platform, key.workspace, key.channel, thread),
        )
        return bool(rows)

    # -- todo lists -----------------------------------------------------------------

    async def add_todo(self, platform: str, channel: str, thread: str, text: str) -> int:
        """Adds an item to a conversation's list; returns its number there (1, 2, ...)."""
        async with self._transaction() as db:
            async with db.execute(
                "SELECT COALESCE(MAX(number), 0) + 1 FROM todos "
                "WHERE platform = ? AND channel = ? AND thread = ?",
                (platform, channel, thread),
            ) as cursor:
                row = await cursor.fetchone()
            number = int(row[0]) if row else 1
            await db.execute(
                "INSERT INTO todos (platform, channel, thread, number, text, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (platform, channel, thread, number, text, self._clock()),
            )
        return number

    async def todos(self, platform: str, channel: str, thread: str) -> list[Todo]:
        async with self._db.execute(
            "SELECT number, text, done FROM todos WHERE platform = ? AND channel = ? "
            "AND thread = ? ORDER BY number",
            (platform, channel, thread),
        ) as cursor:
            return [Todo(r[0], r[1], bool(r[2])) for r in await cursor.fetchall()]

    async def finish_todo(self, platform: str, channel: str, thread: str, number: int) -> bool:
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE todos SET done = 1 WHERE platform = ? AND channel = ? AND thread = ? "
                "AND number = ?",
                (platform, channel, thread, number),
            )
            return cursor.rowcount == 1
