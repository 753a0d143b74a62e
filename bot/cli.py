"""The `routerbot` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable

from .config import ConfigError, Settings, load_settings
from .openrouter import ModelRefError, OpenRouterClient, OpenRouterError
from .terminal import ask, chat, credits_text, models_text

Command = Callable[[argparse.Namespace, Settings, OpenRouterClient], Awaitable[int]]


async def _models(args: argparse.Namespace, settings: Settings, client: OpenRouterClient) -> int:
    text, found = await models_text(client, " ".join(args.query))
    print(text)
    return 0 if found else 1


async def _credits(args: argparse.Namespace, settings: Settings, client: OpenRouterClient) -> int:
    print(await credits_text(client))
    return 0


async def _ask(args: argparse.Namespace, settings: Settings, client: OpenRouterClient) -> int:
    return await ask(client, settings, sys.stdin.read(), model=args.model, as_json=args.json)


async def _chat(args: argparse.Namespace, settings: Settings, client: OpenRouterClient) -> int:
    return await chat(client, settings, model=args.model)


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
    async with make_client(settings, key) as client:
        return await command(args, settings, client)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = load_settings()
        key = settings.require_api_key()
    except ConfigError as exc:
        print(f"routerbot: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(args.run, args, settings, key))
    except (OpenRouterError, ModelRefError) as exc:
        print(f"routerbot: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
