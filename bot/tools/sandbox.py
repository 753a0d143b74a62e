"""`bash`: a command in a bubblewrap jail, and `todo`.

The jail: no network, the system read-only (only /usr, /etc and the library folders are
there at all: not the bot's data, its `.env` or anyone's home), the workspace as the one
writable place plus a private /tmp, an empty environment, its own session and user, PID,
IPC and UTS namespaces, and limits on wall time, CPU, memory, processes, file size and
output.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import stat
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
JAIL_UID = JAIL_GID = 65534  # nobody, for a bot that runs as root
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
    """bwrap's arguments. A bot running as root gets no user namespace (its uid would
    still be root's outside, which RLIMIT_NPROC ignores): the jail drops to `nobody`
    with setpriv instead, with no capabilities left."""
    as_root = os.getuid() == 0
    isolation = (
        [
            "--unshare-net",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--cap-add",
            "CAP_SETUID",
            "--cap-add",
            "CAP_SETGID",
        ]
        if as_root
        else ["--unshare-all", "--uid", "1000", "--gid", "1000"]
    )
    drop = (
        [
            "/usr/bin/setpriv",
            f"--reuid={JAIL_UID}",
            f"--regid={JAIL_GID}",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--no-new-privs",
            "--",
        ]
        if as_root
        else []
    )
    return [
        bwrap,
        *isolation,
        "--die-with-parent",
        "--new-session",
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
        *drop,
        "/bin/sh", "-c", command,
    ]  # fmt: skip


def _processes_of(uid: int) -> int:
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    count += 1
            except OSError:
                continue
    return count


def _hand_over(root: Path) -> None:
    """Gives the workspace to the jail's unprivileged user (when the bot runs as root)."""
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = os.path.join(folder, name)
            info = os.lstat(path)
            if stat.S_ISREG(info.st_mode) and info.st_nlink > 1:
                continue  # a hard link may be a file outside: never hand that over
            os.chown(path, JAIL_UID, JAIL_GID, follow_symlinks=False)
    os.chown(root, JAIL_UID, JAIL_GID)


def limited(command: list[str], cpu_s: int, file_bytes: int = FILE_BYTES) -> list[str]:
    """The command under `prlimit` (util-linux), so no Python runs between fork and exec.

    RLIMIT_NPROC counts every process of the jail's user on the machine, so the jail gets
    the ones there already plus its own allowance: a fork bomb stops at PROCESSES more."""
    prlimit = shutil.which("prlimit") or "prlimit"
    uid = JAIL_UID if os.getuid() == 0 else os.getuid()
    nproc = _processes_of(uid) + PROCESSES
    return [
        prlimit,
        f"--cpu={cpu_s}",
        f"--as={MEMORY_BYTES}",
        f"--nproc={nproc}",
        f"--fsize={max(1, file_bytes)}",
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
    if os.getuid() == 0 and shutil.which("setpriv") is None:
        return "setpriv (util-linux) is not installed"
    with tempfile.TemporaryDirectory() as scratch:
        if os.getuid() == 0:
            os.chown(scratch, JAIL_UID, JAIL_GID)
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
        if os.getuid() == 0:
            await asyncio.to_thread(_hand_over, ctx.workspace.root)
        jailed = jail_command(bwrap, ctx.workspace.root, command)
        # No file may grow past what is left of the workspace quota. (Several files
        # together still can: the note after the run says so.)
        used = await asyncio.to_thread(ctx.workspace.usage)
        room = min(FILE_BYTES, ctx.workspace.quota_bytes - used.bytes)
        # limited() reads /proc to count processes: off the event loop.
        argv = await asyncio.to_thread(limited, jailed, max(1, int(timeout_s)), room)
        process = await asyncio.create_subprocess_exec(
            *argv,
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
            # Read the pipe to its end (the jail's processes are gone, so it comes), which
            # lets asyncio close the subprocess transport.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.stdout.read(), timeout=5)
        if timed_out:
            raise ToolError(f"the command ran longer than {timeout_s:g} s and was stopped")
        text = output.decode("utf-8", "replace")
        notes = [f"[output cut at {OUTPUT_MAX // 1024} KB]"] if cut else []
        after = await asyncio.to_thread(ctx.workspace.usage)
        if after.bytes > ctx.workspace.quota_bytes:
            notes.append(
                f"[the workspace now holds {after.bytes:,} bytes, over its quota of "
                f"{ctx.workspace.quota_bytes:,}: delete files before writing more]"
            )
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
