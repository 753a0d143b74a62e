from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings, env_name
from bot.openrouter import OpenRouterClient
from bot.store import Store
from tests.fakes.openrouter import TEST_KEY, FakeOpenRouter
from tests.fakes.web import FakeSite


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """No test sees the developer's own settings or .env file."""
    for name in Settings.model_fields:
        monkeypatch.delenv(env_name(name), raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenRouter]:
    async with FakeOpenRouter() as server:
        yield server


def make_client(fake: FakeOpenRouter, **kwargs: Any) -> OpenRouterClient:
    options: dict[str, Any] = {
        "api_key": TEST_KEY,
        "base_url": fake.url,
        "site_url": "https://example.test/routerbot",
        "site_name": "routerbot-tests",
        # Real backoff, made short so retries take milliseconds.
        "backoff_base_s": 0.01,
        "backoff_cap_s": 0.05,
        "idle_timeout_s": 5.0,
    }
    options.update(kwargs)
    return OpenRouterClient.create(**options)


@pytest.fixture
async def client(fake: FakeOpenRouter) -> AsyncIterator[OpenRouterClient]:
    """A client on the fake that does not retry: one scripted failure is one failure."""
    async with make_client(fake, max_retries=0) as c:
        yield c


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "bot.sqlite3")
    yield opened
    await opened.close()


@pytest.fixture
async def site() -> AsyncIterator[FakeSite]:
    """A small web site on 127.0.0.1 (tests/fakes/web.py)."""
    server = FakeSite()
    await server.start()
    yield server
    await server.stop()
