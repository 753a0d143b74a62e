"""manifest.yml, held to what the code does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from adapters.slack.app import COMMANDS

MANIFEST = Path(__file__).resolve().parent.parent / "manifest.yml"


def manifest() -> dict[str, Any]:
    loaded = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def test_the_slash_commands_are_the_ones_the_bot_answers() -> None:
    commands = manifest()["features"]["slash_commands"]
    assert tuple(c["command"] for c in commands) == COMMANDS
    for command in commands:
        assert command["description"]
        assert len(command["description"]) <= 100
    assert "set ID" in commands[0]["usage_hint"]


def test_the_events_and_scopes_cover_every_listener() -> None:
    data = manifest()
    events = set(data["settings"]["event_subscriptions"]["bot_events"])
    assert {"app_mention", "message.channels", "message.groups", "message.im"} <= events
    scopes = set(data["oauth_config"]["scopes"]["bot"])
    needed = {
        "app_mentions:read",  # app_mention
        "channels:history",  # message.channels
        "groups:history",  # message.groups
        "im:history",  # message.im
        "chat:write",
        "commands",
        "files:read",
        "users:read",
    }
    assert needed <= scopes
    assert data["features"]["bot_user"]["display_name"] == "routerbot"


def test_the_quick_start_uses_socket_mode() -> None:
    settings = manifest()["settings"]
    assert settings["socket_mode_enabled"] is True
    assert settings["interactivity"]["is_enabled"] is True
