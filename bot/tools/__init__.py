"""Tools the model may call, and the toolbox a running bot offers."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass

from ..config import Settings
from ..openrouter import OpenRouterClient
from ..store import Store
from .files import FILE_TOOLS
from .registry import FunctionTool, ToolContext, ToolError, ToolRegistry, ToolResult, tool
from .sandbox import bash_tool, jail_works, todo_tool
from .web import Resolver, WebFetcher, system_resolver, web_tools
from .workspace import Workspace

log = logging.getLogger(__name__)

# What a channel offers until an admin changes it; write, edit and bash are opt-in.
DEFAULT_TOOLS = ["read", "list", "glob", "grep", "webfetch", "todo"]


@dataclass
class Toolbox:
    registry: ToolRegistry
    fetcher: WebFetcher

    async def aclose(self) -> None:
        await self.fetcher.aclose()


async def build_toolbox(
    settings: Settings,
    store: Store,
    client: OpenRouterClient,
    *,
    resolver: Resolver = system_resolver,
) -> Toolbox:
    """Every tool this machine can offer; `bash` only where bubblewrap works."""
    fetcher = WebFetcher(
        allow_hosts=settings.webfetch_allowed,
        block_hosts=settings.webfetch_blocked,
        resolver=resolver,
    )
    tools = [*FILE_TOOLS, *web_tools(fetcher, client, settings.websearch_model), todo_tool(store)]
    why_not = await jail_works()
    bwrap = shutil.which("bwrap")
    if why_not is None and bwrap is not None:
        tools.append(bash_tool(bwrap, settings.bash_timeout_s))
    else:
        log.info("the bash tool is not offered: %s", why_not)
    return Toolbox(ToolRegistry(tools), fetcher)


__all__ = [
    "DEFAULT_TOOLS",
    "FunctionTool",
    "ToolContext",
    "ToolError",
    "ToolRegistry",
    "ToolResult",
    "Toolbox",
    "Workspace",
    "build_toolbox",
    "tool",
]
