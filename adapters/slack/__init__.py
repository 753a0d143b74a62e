"""The Slack adapter (slack-bolt): events over HTTP or Socket Mode, streamed replies,
`/model` and `/credits`."""

from .app import SlackBot

__all__ = ["SlackBot"]
