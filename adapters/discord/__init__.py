"""The Discord adapter (discord.py): mentions, reply chains and threads, streamed edits,
`/model` and `/credits` as app commands."""

from .app import DiscordBot

__all__ = ["DiscordBot"]
