"""The Discord front end: a discord.py client on the shared engine, commands and store.

A mention, or a reply to one of the bot's messages, is answered as a reply. In a thread
the thread's recent history is the context; elsewhere the reply chain is followed (at most
MAX_CHAIN messages, cached). DMs are answered. `/model ...` and `/credits` are app
commands, synced at start-up.
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import re
from collections import Counter, OrderedDict
from typing import Any

import aiohttp
import discord
import yarl
from discord import app_commands
from discord.gateway import DiscordWebSocket

from bot.channels import resolve_settings
from bot.commands import Caller, Commands
from bot.config import ConfigError, Settings
from bot.engine import Attachment, Conversation, Engine, Turn
from bot.formatting import Document, table_text
from bot.store import ChannelKey

from .reply import SILENT, SPACING_S, DiscordReply, RateLimitWatch, discord_pacer

log = logging.getLogger(__name__)

PLATFORM = "discord"
DEFAULT_API = "https://discord.com/api/v10"
MAX_CHAIN = 20  # messages of a reply chain read as context
THREAD_HISTORY = 50  # messages of a thread read as context
CACHE_SIZE = 1_000  # messages kept for reply chains
FILE_CACHE_BYTES = 50_000_000  # attachments kept, so a chain's files are read once
CHOICES = 25  # Discord shows at most 25 autocomplete choices
DEFER_AFTER_S = 2.0  # Discord wants an answer within 3 s
EMBED_FIELD_LIMIT = 1_024
EMBED_DESCRIPTION_LIMIT = 4_096


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def document_embed(doc: Document) -> discord.Embed:
    embed = discord.Embed(
        title=_clip(doc.title, 256),
        colour=discord.Colour.green() if doc.ok else discord.Colour.red(),
    )
    for name, value in doc.fields[:25]:
        embed.add_field(name=_clip(name, 256), value=_clip(value, EMBED_FIELD_LIMIT), inline=True)
    parts = []
    if doc.table is not None:
        parts.append("```\n" + table_text(doc.table) + "\n```")
    parts += doc.notes
    description = "\n".join(parts)
    if len(description) > EMBED_DESCRIPTION_LIMIT:
        description = _clip(description, EMBED_DESCRIPTION_LIMIT - 4) + "\n```"
    embed.description = description or None
    return embed


class _Client(discord.Client):
    def __init__(self, bot: DiscordBot, intents: discord.Intents) -> None:
        super().__init__(
            intents=intents, allowed_mentions=SILENT, guild_ready_timeout=bot.guild_ready_timeout_s
        )
        self.bot = bot
        self.tree = app_commands.CommandTree(self)

    async def setup_hook(self) -> None:
        await self.bot.setup(self)

    async def on_ready(self) -> None:
        self.bot.ready.set()

    async def on_message(self, message: discord.Message) -> None:
        await self.bot.on_message(message)


class DiscordBot:
    def __init__(
        self, engine: Engine, settings: Settings, *, guild_ready_timeout_s: float = 2.0
    ) -> None:
        """`guild_ready_timeout_s`: how long discord.py waits for more servers to arrive
        before it calls itself ready (its default; tests shorten it)."""
        token = settings.discord_bot_token
        if token is None or not token.get_secret_value().strip():
            raise ConfigError(
                "DISCORD_BOT_TOKEN is not set: copy the bot's token from the Discord "
                "developer portal (Bot -> Reset Token)"
            )
        self.engine = engine
        self.settings = settings
        self.guild_ready_timeout_s = guild_ready_timeout_s
        self.commands = Commands(engine)
        self._token = token.get_secret_value().strip()
        self.pacer = discord_pacer()
        self.spacing_s = SPACING_S  # between two progress edits of one reply
        # Counts discord.py's 429s and slows the channel's edits (see RateLimitWatch).
        self._watch = RateLimitWatch(self.pacer, engine.metrics)
        logging.getLogger("discord.http").addHandler(self._watch)
        self.accepting = True  # False once shutdown begins: new messages are left alone
        self.ready = asyncio.Event()
        self.message_content = True
        self.outcomes: Counter[str] = Counter()
        self._messages: OrderedDict[int, discord.Message] = OrderedDict()
        self._files: OrderedDict[int, bytes] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None
        self.client = self._make_client()

    def __repr__(self) -> str:
        return f"DiscordBot(api={self.settings.discord_api_base_url!r})"

    def _make_client(self) -> _Client:
        intents = discord.Intents.none()
        intents.guilds = True
        intents.guild_messages = True
        intents.dm_messages = True
        intents.message_content = self.message_content
        return _Client(self, intents)

    # -- connection -----------------------------------------------------------------

    async def start(self) -> None:
        """Logs in and connects; returns once the gateway said READY."""
        discord.http.Route.BASE = self.settings.discord_api_base_url.rstrip("/")
        self._runner = asyncio.create_task(self._run())
        ready = asyncio.create_task(self.ready.wait())
        done, _ = await asyncio.wait({self._runner, ready}, return_when=asyncio.FIRST_COMPLETED)
        if ready not in done:
            ready.cancel()
            try:
                self._runner.result()  # raises what stopped the client
            except (aiohttp.ClientError, discord.DiscordException, OSError) as error:
                raise ConfigError(
                    f"could not reach Discord at {self.settings.discord_api_base_url} "
                    f"({error.__class__.__name__}): check DISCORD_API_BASE_URL and the network"
                ) from None
            raise ConfigError("Discord closed the connection before the bot was ready")

    async def _run(self) -> None:
        try:
            await self.client.start(self._token)
        except discord.PrivilegedIntentsRequired:
            log.warning(
                "discord: the Message Content intent is not enabled for this bot, so it "
                "answers mentions and DMs from the message alone, without reply chains or "
                "thread history. Turn it on under Bot -> Privileged Gateway Intents."
            )
            await self.client.close()
            self.message_content = False
            self.client = self._make_client()
            await self.client.start(self._token)
        except discord.LoginFailure:
            raise ConfigError(
                "DISCORD_BOT_TOKEN was refused by Discord: copy it again from the developer "
                "portal (Bot -> Reset Token)"
            ) from None

    async def setup(self, client: _Client) -> None:
        """After login, before the gateway: find the gateway, register the commands."""
        if self.settings.discord_api_base_url.rstrip("/") != DEFAULT_API:
            # A plain Client dials its built-in gateway unless told otherwise.
            _, url, _ = await client.http.get_bot_gateway()
            DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(url)
        self._register(client.tree)
        guild = self.settings.discord_guild.strip()
        if guild:
            target = discord.Object(id=int(guild))
            client.tree.copy_global_to(guild=target)
            await client.tree.sync(guild=target)
        else:
            await client.tree.sync()

    def is_ready(self) -> bool:
        return self.client.is_ready() and not self.client.is_closed()

    async def stop_events(self) -> None:
        """Takes no new messages (shutdown); the connection stays for replies running."""
        self.accepting = False

    async def aclose(self, wait_s: float = 30.0) -> None:
        """Stops taking messages, gives running replies `wait_s` to finish, disconnects."""
        self.accepting = False
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=wait_s)
        logging.getLogger("discord.http").removeHandler(self._watch)
        await self.client.close()
        if self._runner is not None:
            await asyncio.gather(self._runner, return_exceptions=True)

    @property
    def replying(self) -> int:
        return len(self._tasks)

    async def idle(self) -> None:
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    # -- messages -------------------------------------------------------------------

    async def on_message(self, message: discord.Message) -> None:
        self.outcomes[await self._route(message)] += 1

    async def _route(self, message: discord.Message) -> str:
        me = self.client.user
        if me is None or message.author.bot or message.author.id == me.id:
            return "ignored"  # every bot, this one included
        if not self.accepting:
            return "ignored"  # shutting down
        self._remember(message)
        mentioned = me.id in message.raw_mentions or any(u.id == me.id for u in message.mentions)
        addressed = message.guild is None or mentioned or await self._replies_to_me(message)
        if not addressed:
            return "ignored"
        if not await self.engine.store.first_sighting(f"{PLATFORM}:{message.id}"):
            return "duplicate"
        task = asyncio.create_task(self._reply(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return "answered"

    async def _replies_to_me(self, message: discord.Message) -> bool:
        parent = await self._parent(message)
        me = self.client.user
        return parent is not None and me is not None and parent.author.id == me.id

    def _remember(self, message: discord.Message) -> None:
        self._messages[message.id] = message
        while len(self._messages) > CACHE_SIZE:
            self._messages.popitem(last=False)

    async def _parent(self, message: discord.Message) -> discord.Message | None:
        reference = message.reference
        if reference is None or reference.message_id is None:
            return None
        if isinstance(reference.resolved, discord.Message):
            self._remember(reference.resolved)
            return reference.resolved
        known = self._messages.get(reference.message_id)
        if known is not None:
            return known
        try:
            parent = await message.channel.fetch_message(reference.message_id)
        except discord.HTTPException:
            return None  # deleted, or not ours to read
        self._remember(parent)
        return parent

    def _key(self, channel: Any, guild: discord.Guild | None) -> ChannelKey:
        """Settings are per channel; a thread follows its parent's."""
        channel_id = channel.parent_id if isinstance(channel, discord.Thread) else channel.id
        return ChannelKey(PLATFORM, str(guild.id) if guild else "dm", str(channel_id))

    async def _history(self, message: discord.Message) -> tuple[list[discord.Message], str]:
        """The messages to answer from, oldest first, and the conversation's thread id."""
        channel = message.channel
        if not self.message_content:
            # Without the intent other messages arrive empty: the mention is all there is.
            return [message], str(message.id)
        if isinstance(channel, discord.Thread):
            earlier = [m async for m in channel.history(limit=THREAD_HISTORY, before=message)]
            return [*reversed(earlier), message], str(channel.id)
        chain = [message]
        while len(chain) < MAX_CHAIN:
            parent = await self._parent(chain[-1])
            if parent is None:
                break
            chain.append(parent)
        return list(reversed(chain)), str(chain[-1].id)

    async def _reply(self, message: discord.Message) -> None:
        key = self._key(message.channel, message.guild)
        sink = DiscordReply(
            message, self.pacer, show_cost=self.settings.show_cost, spacing_s=self.spacing_s
        )
        try:
            history, thread = await self._history(message)
            conversation = Conversation(PLATFORM, key.workspace, key.channel, thread)
            turns = [await self._turn(m) for m in history]
            await self.engine.reply(conversation, turns, sink, user_id=str(message.author.id))
        except Exception:
            # A bug of ours, or Discord failing us: say so rather than vanish.
            log.exception("discord: reply in %s failed", message.channel.id)
            try:
                await message.reply(
                    "⚠️ Something went wrong inside the bot, and this reply was lost. Try "
                    "again; if it keeps happening, tell whoever runs the bot.",
                    mention_author=False,
                    allowed_mentions=SILENT,
                )
            except discord.HTTPException:
                log.exception("discord: could not report a failed reply")

    async def _turn(self, message: discord.Message) -> Turn:
        me = self.client.user
        if me is not None and message.author.id == me.id:
            return Turn(str(me.id), "routerbot", _without_trailer(message.content), from_bot=True)
        attachments = []
        notes = []
        cap = int(self.settings.max_attachment_mb * 1_000_000)
        for file in message.attachments:
            if file.size > cap:
                notes.append(
                    f"({file.filename} is {file.size / 1e6:.1f} MB, over the "
                    f"{cap / 1e6:g} MB the bot reads)"
                )
                continue
            data = await self._download(file)
            if data is None:
                notes.append(f"(could not download {file.filename})")
                continue
            mime = (file.content_type or "").split(";")[0] or (
                mimetypes.guess_type(file.filename)[0] or "application/octet-stream"
            )
            attachments.append(Attachment(file.filename, mime, data))
        text = " ".join([self._clean(message), *notes]).strip()
        return Turn(str(message.author.id), message.author.display_name, text, tuple(attachments))

    async def _download(self, file: discord.Attachment) -> bytes | None:
        known = self._files.get(file.id)
        if known is not None:
            return known
        try:
            data = await file.read()
        except discord.HTTPException:
            return None
        self._files[file.id] = data
        while sum(len(kept) for kept in self._files.values()) > FILE_CACHE_BYTES:
            self._files.popitem(last=False)
        return data

    def _clean(self, message: discord.Message) -> str:
        """The text as a person reads it: the bot's mention gone, others by name."""
        me = self.client.user
        text = message.content
        if me is not None:
            text = re.sub(rf"<@!?{me.id}>\s*", "", text)
        names = {u.id: u.display_name for u in message.mentions}

        def named(match: re.Match[str]) -> str:
            user_id = int(match.group(1))
            return "@" + names[user_id] if user_id in names else match.group(0)

        return re.sub(r"<@!?(\d+)>", named, text).strip()

    # -- app commands ---------------------------------------------------------------

    def _register(self, tree: app_commands.CommandTree[Any]) -> None:
        model = app_commands.Group(name="model", description="This channel's model and settings")
        run = self._command

        @model.command(name="show", description="This channel's model and settings")
        async def show(interaction: discord.Interaction) -> None:
            await run(interaction, "model", "show")

        @model.command(name="list", description="Models matching a query")
        @app_commands.describe(query="words of the id or name", page="page of the results")
        async def list_(interaction: discord.Interaction, query: str = "", page: int = 1) -> None:
            await run(interaction, "model", f"list {query} page {page}".strip())

        @model.command(name="set", description="Use a model in this channel")
        @app_commands.describe(model="openrouter/<vendor>/<model>[:variant]")
        async def set_(interaction: discord.Interaction, model: str) -> None:
            await run(interaction, "model", f"set {model}")

        @set_.autocomplete("model")
        async def complete(
            interaction: discord.Interaction, current: str
        ) -> list[app_commands.Choice[str]]:
            return await self._complete(interaction, current)

        @model.command(name="auto", description="Let OpenRouter pick (openrouter/auto)")
        async def auto(interaction: discord.Interaction) -> None:
            await run(interaction, "model", "auto")

        @model.command(name="fallbacks", description="Models to try when the first fails")
        @app_commands.describe(models="model ids separated by spaces, or clear")
        async def fallbacks(interaction: discord.Interaction, models: str) -> None:
            await run(interaction, "model", f"fallbacks {models}")

        @model.command(name="prompt", description="The system prompt")
        @app_commands.describe(text="the prompt, or clear")
        async def prompt(interaction: discord.Interaction, text: str) -> None:
            await run(interaction, "model", f"prompt {text}")

        @model.command(name="tools", description="The tools the model may use")
        @app_commands.describe(names="tool names separated by spaces, or off")
        async def tools(interaction: discord.Interaction, names: str) -> None:
            await run(interaction, "model", f"tools {names}")

        @model.command(name="budget", description="This channel's monthly spending cap")
        @app_commands.describe(usd="dollars a month, or clear")
        async def budget(interaction: discord.Interaction, usd: str) -> None:
            await run(interaction, "model", f"budget {usd}")

        @model.command(name="reset", description="Back to the server's or the bot's defaults")
        async def reset(interaction: discord.Interaction) -> None:
            await run(interaction, "model", "reset")

        @app_commands.command(name="credits", description="What the OpenRouter account has left")
        async def credits(interaction: discord.Interaction) -> None:
            await run(interaction, "credits", "")

        tree.add_command(model)
        tree.add_command(credits)

    def _caller(self, interaction: discord.Interaction) -> Caller:
        user = interaction.user
        permissions = interaction.permissions
        admin = permissions.manage_channels or permissions.manage_guild
        return Caller(str(user.id), user.display_name, is_admin=admin)

    async def _command(self, interaction: discord.Interaction, command: str, text: str) -> None:
        key = self._key(interaction.channel, interaction.guild)
        work = asyncio.ensure_future(
            self.commands.run(command, text, key, self._caller(interaction))
        )
        done, _ = await asyncio.wait({work}, timeout=DEFER_AFTER_S)
        try:
            if not done:
                await interaction.response.defer(ephemeral=True, thinking=True)
            doc = await work
        except Exception:
            # The command's own errors come back as documents; this is a bug of ours, and
            # the caller still gets an answer.
            log.exception("discord: /%s %s failed", command, text)
            doc = Document(
                "Something went wrong",
                notes=["The bot could not run this command. Try again in a moment."],
                ok=False,
            )
        announcement = None
        if doc.announcement and not doc.ephemeral:
            _, _, rest = doc.announcement.partition(" ")
            announcement = f"<@{interaction.user.id}> {rest}"
        embed = document_embed(doc)
        try:
            if interaction.response.is_done():
                await interaction.followup.send(embed=embed, ephemeral=True)
                if announcement and interaction.channel is not None:
                    channel: Any = interaction.channel
                    await channel.send(announcement, embed=embed, allowed_mentions=SILENT)
            elif announcement:
                await interaction.response.send_message(
                    announcement, embed=embed, allowed_mentions=SILENT
                )
            else:
                await interaction.response.send_message(embed=embed, ephemeral=True)
        except discord.HTTPException as error:
            log.warning("discord: could not answer /%s (%s)", command, error.status)

    async def _complete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        """Model ids matching what was typed, the channel's current model first."""
        key = self._key(interaction.channel, interaction.guild)
        try:
            found = [m.canonical for m in await self.engine.client.catalogue.search(current)]
            current_model = (await resolve_settings(self.engine.store, key, self.settings)).model
        except Exception:
            # Autocomplete has no way to show an error; an empty list says "nothing found".
            log.warning("discord: model autocomplete failed", exc_info=True)
            return []
        if current_model in found:
            found.remove(current_model)
            found.insert(0, current_model)
        elif not current:
            found.insert(0, current_model)
        return [app_commands.Choice(name=_clip(m, 100), value=m) for m in found[:CHOICES]]


def _without_trailer(content: str) -> str:
    """The bot's own message without its footer and activity lines."""
    lines = content.split("\n")
    while lines and lines[-1].startswith("-# "):
        lines.pop()
    return "\n".join(lines).strip()
