"""The `routerbot` command line."""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
from collections.abc import Awaitable, Callable

from . import logs
from .commands import Commands, models_table
from .config import ConfigError, Settings, load_settings
from .engine import Engine
from .formatting import document_text, table_text
from .openrouter import ModelRefError, OpenRouterClient, OpenRouterError
from .store import Store
from .terminal import TERMINAL_KEY, ask, chat
from .tools import build_toolbox

Command = Callable[[argparse.Namespace, Engine], Awaitable[int]]


async def _models(args: argparse.Namespace, engine: Engine) -> int:
    query = " ".join(args.query)
    found = await engine.client.catalogue.search(query)
    if found:
        print(table_text(models_table(found)))
        return 0
    doc = await Commands(engine).list_models(args.query)
    print(document_text(doc))
    return 1


async def _credits(args: argparse.Namespace, engine: Engine) -> int:
    print(document_text(await Commands(engine).credits(TERMINAL_KEY)))
    return 0


async def _ask(args: argparse.Namespace, engine: Engine) -> int:
    return await ask(engine, sys.stdin.read(), model=args.model, as_json=args.json)


async def _chat(args: argparse.Namespace, engine: Engine) -> int:
    return await chat(engine, model=args.model)


async def _serve(args: argparse.Namespace, engine: Engine) -> int:
    from adapters.serve import serve  # slack-bolt is loaded for `serve` only

    return await serve(engine, engine.settings)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="routerbot", description="A Slack and Discord chat bot built around OpenRouter."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    models = sub.add_parser("models", help="list the models matching QUERY")
    models.add_argument("query", nargs="*", metavar="QUERY", help="words of the id or name")
    models.set_defaults(run=_models)

    credits = sub.add_parser("credits", help="show what the OpenRouter account has left")
    credits.set_defaults(run=_credits)

    ask_parser = sub.add_parser(
        "ask", help='answer stdin (text, or {"message": "..."}) once, streamed to stdout'
    )
    ask_parser.add_argument("--model", help="model id (default: ROUTERBOT_DEFAULT_MODEL)")
    ask_parser.add_argument("--json", action="store_true", help="print NDJSON events")
    ask_parser.set_defaults(run=_ask)

    chat_parser = sub.add_parser("chat", help="a conversation in the terminal")
    chat_parser.add_argument("--model", help="model id (default: ROUTERBOT_DEFAULT_MODEL)")
    chat_parser.set_defaults(run=_chat)

    serve_parser = sub.add_parser(
        "serve", help="run the bot for Slack (and /healthz on PORT), as the environment says"
    )
    serve_parser.set_defaults(run=_serve)
    return parser


def make_client(settings: Settings, api_key: str) -> OpenRouterClient:
    management = settings.openrouter_management_key
    return OpenRouterClient.create(
        api_key=api_key,
        base_url=settings.openrouter_base_url,
        site_url=settings.openrouter_site_url,
        site_name=settings.openrouter_site_name,
        management_key=management.get_secret_value() if management else None,
        connect_timeout_s=settings.connect_timeout_s,
        idle_timeout_s=settings.stream_idle_timeout_s,
        max_retries=settings.max_retries,
        retry_after_cap_s=settings.retry_after_cap_s,
        models_ttl_s=settings.openrouter_cache_ttl_models / 1000,
        credits_ttl_s=settings.openrouter_cache_ttl_credits / 1000,
    )


async def _run(command: Command, args: argparse.Namespace, settings: Settings, key: str) -> int:
    try:
        store = await Store.open(settings.database_path)
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError(
            f"cannot open the database {settings.database_path} ({exc.__class__.__name__}): "
            "set ROUTERBOT_DATA_DIR to a folder the bot may write"
        ) from None
    try:
        async with make_client(settings, key) as client:
            toolbox = await build_toolbox(settings, store, client)
            try:
                return await command(args, Engine(client, store, settings, toolbox.registry))
            finally:
                await toolbox.aclose()
    finally:
        await store.close()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        # `serve` logs at ROUTERBOT_LOG_LEVEL; the terminal commands stay quiet unless -v.
        quiet = "INFO" if args.verbose else "WARNING"
        logs.configure(settings, level=None if args.command == "serve" else quiet)
        key = settings.require_api_key()
    except ConfigError as exc:
        print(f"routerbot: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(args.run, args, settings, key))
    except ConfigError as exc:
        print(f"routerbot: {exc}", file=sys.stderr)
        return 2
    except (OpenRouterError, ModelRefError) as exc:
        print(f"routerbot: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
