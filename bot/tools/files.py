"""File tools over the conversation's workspace: read, list, glob, grep, write, edit.

Blocking file work runs in a thread, so the event loop keeps serving other replies.
"""

from __future__ import annotations

import asyncio
import fnmatch
import stat

import regex

from .registry import ToolContext, ToolError, short, tool
from .workspace import split_path

READ_MAX_LINES = 2000
READ_MAX_BYTES = 256 * 1024
LIST_MAX = 500
GLOB_MAX = 500
GREP_MAX_MATCHES = 200
GREP_TIMEOUT_S = 2.0
GREP_MAX_FILE_BYTES = 5 * 1024 * 1024
LINE_MAX_CHARS = 2000


def _text(data: bytes, path: str) -> str:
    if b"\x00" in data[:8192]:
        raise ToolError(f"{path!r} is a binary file; only text files can be read")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start >= len(data) - 3:  # a character cut at the read limit
            return data[: exc.start].decode("utf-8")
        raise ToolError(f"{path!r} is not UTF-8 text; only text files can be read") from None


def _clip(line: str) -> str:
    return line if len(line) <= LINE_MAX_CHARS else line[:LINE_MAX_CHARS] + " [line cut]"


@tool(lambda a: f"Reading {short(a['path'])}", max_output=READ_MAX_BYTES + 200)
async def tool_read(
    ctx: ToolContext, path: str, offset: int = 1, limit: int = READ_MAX_LINES
) -> str:
    """Read a text file from the conversation's workspace, with line numbers.

    Args:
        path: file path relative to the workspace, e.g. "build.log".
        offset: the first line to show (1 is the first line of the file).
        limit: how many lines to show, at most 2000.
    """
    if offset < 1 or limit < 1:
        raise ToolError("offset and limit start at 1")
    limit = min(limit, READ_MAX_LINES)

    def work() -> str:
        data, size = ctx.workspace.read_bytes(path, READ_MAX_BYTES * 64)
        text = _text(data, path)
        lines = text.splitlines()
        chosen = lines[offset - 1 : offset - 1 + limit]
        shown: list[str] = []
        used = 0
        for number, line in enumerate(chosen, start=offset):
            entry = f"{number:6}\t{_clip(line)}"
            if used + len(entry) > READ_MAX_BYTES:
                break
            shown.append(entry)
            used += len(entry) + 1
        last = offset + len(shown) - 1
        if not shown:
            return f"{path}: no lines from line {offset} (the file has {len(lines)} lines)"
        notes = []
        if last < len(lines) or len(data) < size:
            notes.append(f"[more lines follow: read again with offset={last + 1}]")
        return "\n".join(shown + notes)

    return await asyncio.to_thread(work)


@tool(lambda a: f"Listing {short(a.get('path') or 'the workspace')}")
async def tool_list(ctx: ToolContext, path: str = ".") -> str:
    """List the files and folders in a folder of the conversation's workspace.

    Args:
        path: folder relative to the workspace; "." is the workspace itself.
    """

    def work() -> str:
        entries = ctx.workspace.entries(split_path(path))
        if not entries:
            return f"{path}: empty"
        lines = []
        for name, info in entries[:LIST_MAX]:
            if stat.S_ISDIR(info.st_mode):
                lines.append(f"{name}/")
            elif stat.S_ISREG(info.st_mode):
                lines.append(f"{name}  ({info.st_size:,} bytes)")
            else:
                lines.append(f"{name}  (not a regular file)")
        if len(entries) > LIST_MAX:
            lines.append(f"[{len(entries) - LIST_MAX} more entries not shown]")
        return "\n".join(lines)

    return await asyncio.to_thread(work)


def _matches(relative: str, pattern: str) -> bool:
    if "/" not in pattern:
        return fnmatch.fnmatchcase(relative.rsplit("/", 1)[-1], pattern)
    # `**/` may stand for no folder at all, as in most glob dialects.
    return fnmatch.fnmatchcase(relative, pattern) or fnmatch.fnmatchcase(
        relative, pattern.replace("**/", "")
    )


@tool(lambda a: f"Looking for {short(a['pattern'])}")
async def tool_glob(ctx: ToolContext, pattern: str) -> str:
    """Find files in the conversation's workspace whose paths match a glob pattern.

    Args:
        pattern: e.g. "*.log", "logs/**/*.txt"; a pattern without "/" matches file names.
    """
    split_path(pattern.replace("*", "x").replace("?", "x"))  # same rules as paths

    def work() -> str:
        found = [
            relative
            for relative, info in ctx.workspace.walk()
            if stat.S_ISREG(info.st_mode) and _matches(relative, pattern)
        ]
        if not found:
            return f"no files match {pattern!r}"
        shown = sorted(found)[:GLOB_MAX]
        if len(found) > GLOB_MAX:
            shown.append(f"[{len(found) - GLOB_MAX} more not shown]")
        return "\n".join(shown)

    return await asyncio.to_thread(work)


@tool(lambda a: f"Searching for {short(a['pattern'])}")
async def tool_grep(
    ctx: ToolContext,
    pattern: str,
    path: str = ".",
    include: str | None = None,
    ignore_case: bool = False,
) -> str:
    """Search text files in the conversation's workspace for a regular expression.

    Args:
        pattern: a regular expression, e.g. "ERROR|FATAL".
        path: a file or folder relative to the workspace; "." searches everything.
        include: only files whose names match this glob, e.g. "*.log".
        ignore_case: match upper and lower case alike.
    """
    try:
        compiled = regex.compile(pattern, regex.IGNORECASE if ignore_case else 0)
    except regex.error as exc:
        raise ToolError(f"the pattern is not a valid regular expression ({exc})") from None
    parts = split_path(path)

    def files() -> list[str]:
        if ctx.workspace.exists(path) and parts:
            return [path]
        prefix = "/".join(parts)
        ctx.workspace.entries(parts)  # refuses a path that is no folder of the workspace
        return sorted(
            relative
            for relative, info in ctx.workspace.walk()
            if stat.S_ISREG(info.st_mode)
            and (not prefix or relative.startswith(prefix + "/"))
            and (include is None or _matches(relative, include))
        )

    def work() -> str:
        hits: list[str] = []
        total = 0
        chosen = files()
        for relative in chosen:
            try:
                data, _ = ctx.workspace.read_bytes(relative, GREP_MAX_FILE_BYTES)
            except ToolError:
                if chosen == [path]:
                    raise
                continue  # a hard link, or a file that changed during the walk
            if b"\x00" in data[:8192]:
                continue
            text = data.decode("utf-8", "replace")
            for number, line in enumerate(text.splitlines(), start=1):
                try:
                    found = compiled.search(line, timeout=GREP_TIMEOUT_S)
                except TimeoutError:
                    raise ToolError(
                        "the pattern took too long to match (it backtracks too much); simplify it"
                    ) from None
                if found:
                    total += 1
                    if len(hits) < GREP_MAX_MATCHES:
                        hits.append(f"{relative}:{number}: {_clip(line)}")
        if not hits:
            return f"no matches for {pattern!r}"
        if total > len(hits):
            hits.append(f"[{total - len(hits)} more matches not shown; narrow the search]")
        return "\n".join(hits)

    return await asyncio.to_thread(work)


@tool(lambda a: f"Writing {short(a['path'])}")
async def tool_write(ctx: ToolContext, path: str, content: str) -> str:
    """Create or replace a text file in the conversation's workspace.

    Args:
        path: file path relative to the workspace.
        content: the whole new content of the file.
    """
    data = content.encode("utf-8")
    await asyncio.to_thread(ctx.workspace.write_bytes, path, data)
    return f"wrote {len(data):,} bytes to {path}"


@tool(lambda a: f"Editing {short(a['path'])}")
async def tool_edit(
    ctx: ToolContext, path: str, old: str, new: str, replace_all: bool = False
) -> str:
    """Replace exact text in a file of the conversation's workspace.

    Args:
        path: file path relative to the workspace.
        old: the exact text to replace; it must occur once unless replace_all is set.
        new: the text to put in its place.
        replace_all: replace every occurrence.
    """
    if not old:
        raise ToolError("old must not be empty")

    def work() -> str:
        data, size = ctx.workspace.read_bytes(path, READ_MAX_BYTES * 64)
        if len(data) < size:
            raise ToolError(f"{path!r} is too large to edit")
        text = _text(data, path)
        count = text.count(old)
        if count == 0:
            raise ToolError(f"the text to replace was not found in {path!r}")
        if count > 1 and not replace_all:
            raise ToolError(
                f"the text occurs {count} times in {path!r}: give more of it, or set replace_all"
            )
        ctx.workspace.write_bytes(path, text.replace(old, new).encode("utf-8"))
        return f"replaced {count if replace_all else 1} occurrence(s) in {path}"

    return await asyncio.to_thread(work)


FILE_TOOLS = [tool_read, tool_list, tool_glob, tool_grep, tool_write, tool_edit]
