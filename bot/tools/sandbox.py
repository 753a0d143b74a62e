"""`bash`: a command in a bubblewrap jail, and `todo`.

The jail: no network, the system read-only (only /usr, /etc and the library folders are
there at all: not the bot's data, its `.env` or anyone's home), the workspace as the one
writable place plus a private /tmp, an empty environment, its own session and user, PID,
IPC and UTS namespaces, and limits on wall time, CPU, memory, processes, file size and
output.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Literal

from ..store import Store
from .registry import FunctionTool, ToolContext, ToolError, short

log = logging.getLogger(__name__)

OUTPUT_MAX = 64 * 1024
MEMORY_BYTES = 1024 * 1024 * 1024
PROCESSES = 64
FILE_BYTES = 50 * 1024 * 1024
SYSTEM_DIRS = ("/usr", "/etc", "/lib", "/lib64", "/lib32", "/bin", "/sbin")


def _system_binds() -> list[str]:
    args: list[str] = []
    for folder in SYSTEM_DIRS:
        path = Path(folder)
        if path.is_symlink():  # merged /usr: /bin -> usr/bin
            args += ["--symlink", os.readlink(path), folder]
        elif path.is_dir():
            args += ["--ro-bind", folder, folder]
    return args


def jail_command(bwrap: str, workspace: Path, command: str) -> list[str]:
    return [
        bwrap,
        "--unshare-all",  # network, PID, IPC, UTS, cgroup and user namespaces
        "--die-with-parent",
        "--new-session",
        "--uid", "1000",
        "--gid", "1000",
        "--clearenv",
        "--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin",
        "--setenv", "HOME", "/workspace",
        "--setenv", "LANG", "C.UTF-8",
        *_system_binds(),
        "--proc", "/proc",
        "--dev", "/dev",
        "--tmpfs", "/tmp",  # noqa: S108 - the jail's own empty /tmp
        "--bind", str(workspace), "/workspace",
        "--chdir", "/workspace",
        "--",
        "/bin/sh", "-c", command,
    ]  # fmt: skip


def _processes_of_this_user() -> int:
    uid = os.getuid()
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    count += 1
            except OSError:
                continue
    return count


def limited(command: list[str], cpu_s: int) -> list[str]:
    """The command under `prlimit` (util-linux), so no Python runs between fork and exec.

    RLIMIT_NPROC counts every process of the user on the machine, so the jail gets the
    ones there already plus its own allowance: a fork bomb stops at PROCESSES more."""
    prlimit = shutil.which("prlimit") or "prlimit"
    nproc = _processes_of_this_user() + PROCESSES
    return [
        prlimit,
        f"--cpu={cpu_s}",
        f"--as={MEMORY_BYTES}",
        f"--nproc={nproc}",
        f"--fsize={FILE_BYTES}",
        "--core=0",
        "--",
        *command,
    ]


async def jail_works() -> str | None:
    """None when bubblewrap can start a jail here, else why not (one line)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed"
    if shutil.which("prlimit") is None:
        return "prlimit (util-linux) is not installed"
    with tempfile.TemporaryDirectory() as scratch:
        probe = limited(jail_command(bwrap, Path(scratch), "true"), 5)
        try:
            process = await asyncio.create_subprocess_exec(
                *probe, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
            )
            _, err = await asyncio.wait_for(process.communicate(), timeout=10)
        except (OSError, TimeoutError) as exc:
            return f"bubblewrap could not start ({type(exc).__name__})"
    if process.returncode != 0:
        line = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
        return f"bubblewrap cannot create a jail here: {line[0]}"
    return None


async def _read_capped(stream: asyncio.StreamReader, cap: int) -> tuple[bytes, bool]:
    data = bytearray()
    cut = False
    while chunk := await stream.read(1 << 14):
        room = cap - len(data)
        if room > 0:
            data += chunk[:room]
        if len(chunk) > room:
            cut = True  # keep draining so the command is not blocked on a full pipe
    return bytes(data), cut


def bash_tool(bwrap: str, timeout_s: float) -> FunctionTool:
    async def bash(ctx: ToolContext, command: str) -> str:
        """Run a shell command in a jail whose working folder is the conversation's
        workspace. No network; only the workspace and /tmp are writable.

        Args:
            command: the command for /bin/sh, e.g. "wc -l *.log".
        """
        ctx.workspace.root.mkdir(parents=True, exist_ok=True)
        jailed = jail_command(bwrap, ctx.workspace.root, command)
        process = await asyncio.create_subprocess_exec(
            *limited(jailed, max(1, int(timeout_s))),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            env={},
        )
        assert process.stdout is not None
        timed_out = False
        try:
            output, cut = await asyncio.wait_for(
                _read_capped(process.stdout, OUTPUT_MAX), timeout=timeout_s
            )
            code = await asyncio.wait_for(process.wait(), timeout=5)
        except TimeoutError:
            timed_out = True
            output, cut = b"", False
        finally:
            if process.returncode is None:
                os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        if timed_out:
            raise ToolError(f"the command ran longer than {timeout_s:g} s and was stopped")
        text = output.decode("utf-8", "replace")
        notes = [f"[output cut at {OUTPUT_MAX // 1024} KB]"] if cut else []
        return "\n".join([text.rstrip("\n"), *notes, f"[exit status {code}]"]).lstrip("\n")

    return FunctionTool(
        bash, activity=lambda a: f"Running {short(a['command'])}", max_output=OUTPUT_MAX + 200
    )


def todo_tool(store: Store) -> FunctionTool:
    async def todo(
        ctx: ToolContext,
        action: Literal["add", "list", "done"],
        text: str | None = None,
        number: int | None = None,
    ) -> str:
        """Keep this conversation's todo list.

        Args:
            action: "add" (needs text), "list", or "done" (needs number).
            text: the item to add.
            number: the item to mark done, as "list" shows it.
        """
        where = (ctx.platform, ctx.channel, ctx.thread)
        if action == "add":
            if not text or not text.strip():
                raise ToolError("add needs the text of the item")
            added = await store.add_todo(*where, text.strip()[:500])
            return f"added #{added}: {text.strip()[:500]}"
        if action == "done":
            if number is None:
                raise ToolError("done needs the number of the item")
            if not await store.finish_todo(*where, number):
                raise ToolError(f"there is no item #{number}")
            return f"marked #{number} done"
        items = await store.todos(*where)
        if not items:
            return "the todo list is empty"
        return "\n".join(f"#{i.number} [{'x' if i.done else ' '}] {i.text}" for i in items)

    return FunctionTool(todo, activity=lambda a: f"Updating the todo list ({a['action']})")
