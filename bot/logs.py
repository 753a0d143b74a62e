"""Logging: plain lines for people or JSON lines for machines, secrets always hidden.

Every record passes through one formatter that replaces each configured secret (and
anything shaped like an OpenRouter key) with `[redacted]`, whatever the code that logged
it put in its message, its arguments, its fields or its traceback. A record may carry
structured `fields` (`log.info("reply", extra={"fields": {...}})`): JSON puts them at the
top level, plain lines append them as `key=value`.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable
from typing import Any, TextIO

from pydantic import SecretStr

from .config import Settings
from .openrouter.errors import redact

PLAIN = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def secrets_of(settings: Settings) -> list[str]:
    """Every secret value the settings hold."""
    found = []
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr) and value.get_secret_value().strip():
            found.append(value.get_secret_value().strip())
    return found


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return dict(fields) if isinstance(fields, dict) else {}


class _Redacting(logging.Formatter):
    def __init__(self, secrets: Iterable[str], fmt: str | None = None) -> None:
        super().__init__(fmt)
        # Longest first, so a secret that contains another is hidden whole.
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def hide(self, text: str) -> str:
        return redact(text, self.secrets)


class PlainFormatter(_Redacting):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__(secrets, PLAIN)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = _fields(record)
        if fields:
            shown = " ".join(f"{k}={_plain(v)}" for k, v in fields.items() if v is not None)
            head, newline, rest = line.partition("\n")  # keep a traceback after the fields
            line = f"{head} {shown}{newline}{rest}"
        return self.hide(line)


def _plain(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (" " in text or not text) else text


class JsonFormatter(_Redacting):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry |= _fields(record)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return self.hide(json.dumps(entry, default=str))


def configure(
    settings: Settings, *, level: str | None = None, stream: TextIO | None = None
) -> logging.Handler:
    """Routes every logger to one handler on `stream` (stderr), in the configured format."""
    secrets = secrets_of(settings)
    handler = logging.StreamHandler(stream or sys.stderr)
    formatter: logging.Formatter = (
        JsonFormatter(secrets) if settings.log_format == "json" else PlainFormatter(secrets)
    )
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level or settings.log_level)
    # Libraries chatter at INFO (every HTTP request); their warnings still come through.
    for noisy in ("httpx", "aiohttp.access", "discord.gateway", "discord.client", "slack_bolt"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    return handler
