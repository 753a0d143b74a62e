"""Settings, read once from the environment (and a `.env` file) by pydantic-settings.

Names that other tools already use (`OPENROUTER_*`, `SLACK_*`, `DISCORD_*`, `PORT`) are
kept as they are; everything specific to routerbot carries the `ROUTERBOT_` prefix.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

KEYS_URL = "https://openrouter.ai/settings/keys"
PROJECT_URL = "https://github.com/routerbot/routerbot"

# OpenRouter keys look like `sk-or-v1-<hex>`; anything else is a paste accident.
_KEY_SHAPE = re.compile(r"sk-or-[A-Za-z0-9_-]{8,}")


class ConfigError(Exception):
    """An operator's mistake in the configuration; `str()` is the one line to show."""


def _alias(name: str) -> Any:
    """Field kwargs that bind a setting to an environment variable used outside routerbot."""
    return {"validation_alias": AliasChoices(name), "json_schema_extra": {"env": name}}


class Settings(BaseSettings):
    """Every setting routerbot reads. The README's settings table is generated from this."""

    model_config = SettingsConfigDict(
        env_prefix="ROUTERBOT_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    openrouter_api_key: SecretStr | None = Field(
        None,
        description=f"OpenRouter API key (`sk-or-...`); create one at {KEYS_URL}.",
        **_alias("OPENROUTER_API_KEY"),
    )
    openrouter_base_url: str = Field(
        "https://openrouter.ai/api/v1",
        description="OpenRouter API root.",
        **_alias("OPENROUTER_BASE_URL"),
    )
    openrouter_site_url: str = Field(
        PROJECT_URL,
        description="Sent as `HTTP-Referer` for OpenRouter's app attribution.",
        **_alias("OPENROUTER_SITE_URL"),
    )
    openrouter_site_name: str = Field(
        "routerbot",
        description="Sent as `X-Title` for OpenRouter's app attribution.",
        **_alias("OPENROUTER_SITE_NAME"),
    )
    openrouter_cache_ttl_models: int = Field(
        3_600_000,
        ge=0,
        description="How long the model catalogue is cached, in milliseconds.",
        **_alias("OPENROUTER_CACHE_TTL_MODELS"),
    )
    openrouter_cache_ttl_credits: int = Field(
        300_000,
        ge=0,
        description="How long the credit balance is cached, in milliseconds.",
        **_alias("OPENROUTER_CACHE_TTL_CREDITS"),
    )
    openrouter_management_key: SecretStr | None = Field(
        None,
        description=(
            "Optional OpenRouter management key. `/credits` needs it to show the account "
            "balance when the API key has no spending limit of its own."
        ),
    )
    connect_timeout_s: float = Field(
        10.0, gt=0, description="Seconds to wait for a connection to OpenRouter."
    )
    stream_idle_timeout_s: float = Field(
        90.0,
        gt=0,
        description=(
            "Seconds OpenRouter may stay silent between two chunks of an answer. "
            "Not a cap on the whole answer: long answers finish."
        ),
    )
    max_retries: int = Field(
        2,
        ge=0,
        le=10,
        description="Retries of one request after a timeout, rate limit or provider outage.",
    )
    retry_after_cap_s: float = Field(
        20.0,
        ge=0,
        description=(
            "The longest `Retry-After` honoured before giving up on a model and going "
            "on with the fallback chain."
        ),
    )
    default_model: str = Field(
        "openrouter/openai/gpt-4o-mini",
        description="Model for channels that have not chosen one.",
    )
    default_fallbacks: str = Field(
        "",
        description="Comma-separated fallback models for channels that have not chosen any.",
    )
    system_prompt: str = Field(
        "You are routerbot, a helpful assistant in a team chat. Answer concisely in Markdown.",
        description="System prompt for channels that have not set their own.",
    )
    max_tool_rounds: int = Field(
        8, ge=1, le=50, description="Tool-call rounds in one reply before the bot stops."
    )
    admins: str = Field(
        "",
        description=(
            "Comma-separated user ids that may change any channel's settings, besides "
            "the platform's own channel and workspace admins."
        ),
    )
    low_balance_usd: float = Field(
        1.0, ge=0, description="`/credits` warns when the balance is below this, in USD."
    )
    user_rate_limit: int = Field(
        30, ge=0, description="Requests one user may make per minute (0: no limit)."
    )
    channel_concurrency: int = Field(
        4,
        ge=1,
        description="Replies one channel runs at once; more wait their turn.",
    )
    channel_allowlist: str = Field(
        "",
        description="Comma-separated channel ids the bot answers in (empty: every channel).",
    )
    channel_monthly_budget: float = Field(
        0.0,
        ge=0,
        description=(
            "Monthly spend per channel in USD before the bot refuses (0: no budget); "
            "`/model budget` overrides it per channel."
        ),
    )
    workspace_quota_mb: int = Field(
        50, ge=1, description="Disk space one conversation's workspace may use, in MB."
    )
    workspace_max_files: int = Field(
        1000, ge=1, description="Files one conversation's workspace may hold."
    )
    webfetch_allow_hosts: str = Field(
        "",
        description=(
            "Comma-separated hosts or IP addresses `webfetch` may reach even though they "
            "are private or local (e.g. an intranet wiki)."
        ),
    )
    webfetch_block_hosts: str = Field(
        "",
        description="Comma-separated hosts (and their subdomains) `webfetch` never reaches.",
    )
    websearch_model: str = Field(
        "openrouter/openai/gpt-4o-mini",
        description="Model that runs OpenRouter's `web` plugin for the `websearch` tool.",
    )
    bash_timeout_s: float = Field(
        20.0, gt=0, le=600, description="Wall-clock limit of one `bash` tool command."
    )
    slack_bot_token: SecretStr | None = Field(
        None, description="Slack bot token (`xoxb-...`).", **_alias("SLACK_BOT_TOKEN")
    )
    slack_signing_secret: SecretStr | None = Field(
        None,
        description="Slack signing secret: serve the Events API over HTTP.",
        **_alias("SLACK_SIGNING_SECRET"),
    )
    slack_app_token: SecretStr | None = Field(
        None,
        description="Slack app-level token (`xapp-...`): use Socket Mode instead of HTTP.",
        **_alias("SLACK_APP_TOKEN"),
    )
    slack_api_base_url: str = Field(
        "https://slack.com/api/",
        description="Slack Web API root (GovSlack, proxies, tests).",
        **_alias("SLACK_API_BASE_URL"),
    )
    slack_follow_threads: bool = Field(
        True,
        description=(
            "Answer follow-ups in a Slack thread the bot has answered in without a new mention."
        ),
    )
    show_cost: bool = Field(
        False, description="End each answer's footer with what it cost, in USD."
    )
    max_attachment_mb: float = Field(
        10.0,
        gt=0,
        description="Largest file the bot downloads from a thread into the workspace, in MB.",
    )
    discord_bot_token: SecretStr | None = Field(
        None, description="Discord bot token.", **_alias("DISCORD_BOT_TOKEN")
    )
    discord_api_base_url: str = Field(
        "https://discord.com/api/v10",
        description=(
            "Discord REST root; when set, the gateway URL is the one `GET /gateway/bot` "
            "there returns."
        ),
        **_alias("DISCORD_API_BASE_URL"),
    )
    discord_guild: str = Field(
        "",
        description=(
            "Discord server id to register the app commands in, where changes show at once "
            "(empty: globally, which can take up to an hour)."
        ),
    )
    log_format: Literal["plain", "json"] = Field(
        "plain", description="`plain` lines for people, or `json`, one object per line."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Least severe log level `routerbot serve` writes."
    )
    log_content: bool = Field(
        False,
        description="Put the question and the answer in each reply's log line (off: ids only).",
    )
    shutdown_grace_s: float = Field(
        20.0,
        ge=0,
        description=(
            "On SIGTERM, how long replies in flight may take to finish before they are "
            "stopped (their threads are told)."
        ),
    )
    data_dir: Path = Field(
        Path("./data"), description="Where the SQLite file and tool workspaces live."
    )
    port: int = Field(
        3000,
        ge=1,
        le=65535,
        description="HTTP listener (Slack events, `/healthz`).",
        **_alias("PORT"),
    )

    @field_validator(
        "openrouter_api_key",
        "openrouter_management_key",
        "slack_bot_token",
        "slack_signing_secret",
        "slack_app_token",
        "discord_bot_token",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        """`SLACK_BOT_TOKEN=` in a .env means not set, not an empty token."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("openrouter_base_url", "slack_api_base_url", "discord_api_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"https?://[^\s/]+", value):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @property
    def fallbacks(self) -> list[str]:
        return _csv(self.default_fallbacks)

    @property
    def admin_ids(self) -> frozenset[str]:
        return frozenset(_csv(self.admins))

    @property
    def allowed_channels(self) -> frozenset[str]:
        return frozenset(_csv(self.channel_allowlist))

    @property
    def webfetch_allowed(self) -> frozenset[str]:
        return frozenset(_csv(self.webfetch_allow_hosts))

    @property
    def webfetch_blocked(self) -> frozenset[str]:
        return frozenset(_csv(self.webfetch_block_hosts))

    @property
    def database_path(self) -> Path:
        return self.data_dir / "routerbot.sqlite3"

    def require_api_key(self) -> str:
        """The OpenRouter key, or a ConfigError whose text is the one line to print."""
        key = self.openrouter_api_key
        if key is None or not key.get_secret_value().strip():
            raise ConfigError(
                f"OPENROUTER_API_KEY is not set: create a key at {KEYS_URL} and put it "
                "in the environment or in .env"
            )
        value = key.get_secret_value().strip()
        if not _KEY_SHAPE.fullmatch(value):
            raise ConfigError(
                "OPENROUTER_API_KEY does not look like an OpenRouter key (sk-or-...): "
                f"copy it again from {KEYS_URL}"
            )
        return value


def _csv(raw: str) -> list[str]:
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_name(field_name: str) -> str:
    """The environment variable that sets a field."""
    extra = Settings.model_fields[field_name].json_schema_extra
    if isinstance(extra, dict) and isinstance(extra.get("env"), str):
        return str(extra["env"])
    return "ROUTERBOT_" + field_name.upper()


def load_settings(**overrides: Any) -> Settings:
    """Read the settings, turning validation errors into one ConfigError line each."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else ""
            name = env_name(field) if field in Settings.model_fields else field
            # error["input"] may be a secret: only the variable and the rule are shown.
            problems.append(f"{name}: {error['msg']}")
        raise ConfigError("invalid setting " + "; ".join(problems)) from None


def settings_table() -> str:
    """The README's table of settings, as Markdown."""
    rows = ["| variable | meaning | default |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        if default is None or default == "":
            shown = "none"
        elif isinstance(default, Path):
            shown = f"`{default.as_posix() if default.is_absolute() else './' + str(default)}`"
        else:
            shown = f"`{default}`"
        rows.append(f"| `{env_name(name)}` | {field.description} | {shown} |")
    return "\n".join(rows) + "\n"


def env_example() -> str:
    """`.env.example`: every variable, commented out at its default, with its meaning."""
    lines = [
        "# routerbot's settings. Copy to .env and uncomment what you set; the README's",
        "# Settings table says the same. Regenerate: python -m bot.config --env-example",
        "",
    ]
    for name, field in Settings.model_fields.items():
        default = field.default
        if default is None:
            shown = ""
        elif isinstance(default, bool):
            shown = "true" if default else "false"
        elif isinstance(default, Path):
            shown = default.as_posix() if default.is_absolute() else f"./{default}"
        else:
            shown = str(default)
        lines.append(f"# {field.description}")
        lines.append(f"# {env_name(name)}={shown}" if shown else f"{env_name(name)}=")
        lines.append("")
    return "\n".join(lines)


START, END = "<!-- settings:start -->\n", "<!-- settings:end -->"


def refresh_readme(path: Path) -> None:
    """Rewrites the settings table between the README's markers."""
    text = path.read_text(encoding="utf-8")
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    path.write_text(head + START + settings_table() + END + tail, encoding="utf-8")


if __name__ == "__main__":
    # `python -m bot.config README.md` refreshes the table; `--env-example` writes
    # .env.example; no argument prints the table.
    import sys

    if sys.argv[1:] == ["--env-example"]:
        Path(".env.example").write_text(env_example(), encoding="utf-8")
    elif len(sys.argv) > 1:
        refresh_readme(Path(sys.argv[1]))
    else:
        print(settings_table(), end="")
