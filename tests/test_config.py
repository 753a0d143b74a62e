"""Settings: defaults, environment names, .env, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import (
    END,
    START,
    ConfigError,
    Settings,
    env_example,
    env_name,
    load_settings,
    settings_table,
)

README = Path(__file__).resolve().parent.parent / "README.md"
KEY = "sk-or-v1-" + "ab" * 32


def test_defaults_match_the_design() -> None:
    settings = load_settings()
    assert settings.openrouter_api_key is None
    assert settings.openrouter_base_url == "https://openrouter.ai/api/v1"
    assert settings.openrouter_site_name == "routerbot"
    assert settings.openrouter_cache_ttl_models == 3_600_000
    assert settings.openrouter_cache_ttl_credits == 300_000
    assert settings.slack_api_base_url == "https://slack.com/api/"
    assert settings.discord_api_base_url == "https://discord.com/api/v10"
    assert settings.data_dir == Path("data")
    assert settings.port == 3000
    assert settings.default_model == "openrouter/openai/gpt-4o-mini"


def test_names_other_tools_use_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENROUTER_BASE_URL", "http://127.0.0.1:9/api/v1")
    monkeypatch.setenv("PORT", "8080")
    monkeypatch.setenv("ROUTERBOT_DEFAULT_FALLBACKS", "openrouter/openai/gpt-4o, z-ai/glm-4.7")
    monkeypatch.setenv("ROUTERBOT_DATA_DIR", "/srv/routerbot")
    settings = load_settings()
    assert settings.openrouter_base_url == "http://127.0.0.1:9/api/v1"
    assert settings.port == 8080
    assert settings.fallbacks == ["openrouter/openai/gpt-4o", "z-ai/glm-4.7"]
    assert settings.data_dir == Path("/srv/routerbot")
    assert env_name("openrouter_api_key") == "OPENROUTER_API_KEY"
    assert env_name("max_retries") == "ROUTERBOT_MAX_RETRIES"


def test_dotenv_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"OPENROUTER_API_KEY={KEY}\nROUTERBOT_MAX_RETRIES=5\n")
    settings = load_settings()
    assert settings.require_api_key() == KEY
    assert settings.max_retries == 5


def test_missing_key_is_one_line() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings().require_api_key()
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("OPENROUTER_API_KEY is not set")
    assert "https://openrouter.ai/settings/keys" in message


@pytest.mark.parametrize("bad", ["sk-or-x", "hello world", "sk-or-v1-abc def", "sk-ant-123456789"])
def test_malformed_key_is_one_line_without_the_key(
    monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", bad)
    with pytest.raises(ConfigError) as caught:
        load_settings().require_api_key()
    message = str(caught.value)
    assert "\n" not in message
    assert "OPENROUTER_API_KEY" in message
    assert bad not in message


def test_invalid_values_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "eighty")
    monkeypatch.setenv("OPENROUTER_BASE_URL", "openrouter.ai")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "\n" not in message
    assert "PORT:" in message
    assert "OPENROUTER_BASE_URL:" in message
    assert "eighty" not in message  # values are not echoed: some of them are secrets


def test_secrets_stay_out_of_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", KEY)
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-secret-token")
    monkeypatch.setenv("DISCORD_BOT_TOKEN", "discord-secret-token")
    settings = load_settings()
    shown = repr(settings) + str(settings) + str(settings.model_dump())
    for secret in (KEY, "xoxb-secret-token", "discord-secret-token"):
        assert secret not in shown


def test_every_setting_is_described() -> None:
    for name, field in Settings.model_fields.items():
        assert field.description, name


def test_readme_table_is_in_step_with_the_settings() -> None:
    text = README.read_text()
    start = text.index(START) + len(START)
    end = text.index(END)
    assert text[start:end] == settings_table(), (
        "README settings table is out of date: run `.venv/bin/python -m bot.config README.md`"
    )


def test_env_example_lists_every_variable() -> None:
    example = README.parent / ".env.example"
    assert example.read_text(encoding="utf-8") == env_example(), (
        ".env.example is out of date: run `.venv/bin/python -m bot.config --env-example`"
    )
    for name in Settings.model_fields:
        assert f"{env_name(name)}=" in example.read_text(encoding="utf-8")


def test_a_blank_token_is_no_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "")
    monkeypatch.setenv("DISCORD_BOT_TOKEN", "  ")
    settings = load_settings()
    assert settings.slack_bot_token is None
    assert settings.discord_bot_token is None
