"""A conversation's workspace: the one folder its file tools may touch.

Every path a model gives is relative to the workspace. It is opened one component at a
time with `openat(..., O_NOFOLLOW)` from the workspace's own directory descriptor, so no
spelling (`..`, absolute, `~`, symlinks, `/proc/self/root`) and no race (a symlink
swapped in between a check and the open) leads out. Only regular files with a single
link and directories are used: devices, fifos, sockets, symlinks and hard links are
refused. A quota caps the bytes and the files a workspace holds.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .registry import ToolError

_SAFE_ID = re.compile(r"[^A-Za-z0-9._-]")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def safe_component(raw: str) -> str:
    """A platform id as one harmless folder name."""
    cleaned = _SAFE_ID.sub("_", raw)[:100]
    return cleaned if cleaned not in ("", ".", "..") else "_"


def split_path(path: str) -> list[str]:
    """The components of a workspace path, or a ToolError saying why it is refused."""
    if "\x00" in path:
        raise ToolError("paths cannot contain NUL characters")
    if path.startswith("/"):
        raise ToolError(
            f"{path!r} is an absolute path: paths are relative to the conversation's "
            "workspace (e.g. 'build.log' or 'logs/app.txt')"
        )
    if path.startswith("~"):
        raise ToolError(f"{path!r}: '~' paths are not allowed; use a path inside the workspace")
    if "\\" in path:
        raise ToolError(f"{path!r}: use '/' between folders")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ToolError(f"{path!r}: '..' is not allowed; paths stay inside the workspace")
    if any(len(p) > 255 for p in parts):
        raise ToolError("a path component is longer than 255 characters")
    return parts


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISFIFO, "a fifo"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a device"),
        (stat.S_ISBLK, "a device"),
        (stat.S_ISDIR, "a folder"),
    ):
        if test(mode):
            return name
    return "a file"


@dataclass
class Usage:
    files: int
    bytes: int


class Workspace:
    def __init__(self, root: Path, *, quota_bytes: int, max_files: int) -> None:
        self.root = root
        self.quota_bytes = quota_bytes
        self.max_files = max_files

    @classmethod
    def for_conversation(
        cls, data_dir: Path, platform: str, channel: str, thread: str, **limits: int
    ) -> Workspace:
        root = data_dir / "workspaces"
        for part in (platform, channel, thread):
            root = root / safe_component(part)
        return cls(root, **limits)

    # -- walking ------------------------------------------------------------------

    @contextlib.contextmanager
    def _root_fd(self) -> Iterator[int]:
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root, _DIR_FLAGS)
        try:
            yield fd
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def directory(self, parts: list[str], *, create: bool = False) -> Iterator[int]:
        """A descriptor of the folder `parts` names, opened without following links."""
        with self._root_fd() as root:
            fd = os.dup(root)
            try:
                for index, part in enumerate(parts):
                    if create:
                        with contextlib.suppress(FileExistsError):
                            os.mkdir(part, 0o755, dir_fd=fd)
                    try:
                        child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                    except OSError as exc:
                        raise self._refusal(exc, parts[: index + 1], fd, part) from None
                    os.close(fd)
                    fd = child
                yield fd
            finally:
                os.close(fd)

    def _refusal(self, exc: OSError, parts: list[str], parent: int, name: str) -> ToolError:
        shown = "/".join(parts) or "."
        if exc.errno == errno.ENOENT:
            return ToolError(f"{shown!r} does not exist in the workspace")
        try:
            mode = os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode
        except OSError:
            mode = 0
        if mode and not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
            return ToolError(f"{shown!r} is {_kind(mode)}, which the file tools do not use")
        if exc.errno == errno.ENOTDIR:
            return ToolError(f"{shown!r} is a file where a folder was expected")
        return ToolError(f"{shown!r} cannot be opened ({errno.errorcode.get(exc.errno or 0, '?')})")

    @contextlib.contextmanager
    def open_file(self, path: str, flags: int = os.O_RDONLY, mode: int = 0o644) -> Iterator[int]:
        """A descriptor of a regular, singly linked file inside the workspace."""
        parts = split_path(path)
        if not parts:
            raise ToolError("give a file name, not the workspace itself")
        creating = bool(flags & os.O_CREAT)
        with self.directory(parts[:-1], create=creating) as parent:
            # O_NONBLOCK: opening a fifo must not hang; it is refused right after.
            all_flags = flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
            try:
                fd = os.open(parts[-1], all_flags, mode, dir_fd=parent)
            except OSError as exc:
                if exc.errno == errno.EISDIR:
                    raise ToolError(f"{path!r} is a folder, not a file") from None
                raise self._refusal(exc, parts, parent, parts[-1]) from None
            try:
                info = os.fstat(fd)
                if not stat.S_ISREG(info.st_mode):
                    raise ToolError(
                        f"{path!r} is {_kind(info.st_mode)}; only regular files can be used"
                    )
                if info.st_nlink > 1:
                    raise ToolError(f"{path!r} is a hard link; the file tools do not use those")
                os.set_blocking(fd, True)
                yield fd
            finally:
                os.close(fd)

    def entries(self, parts: list[str]) -> list[tuple[str, os.stat_result]]:
        """The folder's entries with their (unfollowed) status, sorted by name."""
        with self.directory(parts) as fd:
            names = sorted(os.listdir(fd))
            return [(name, os.stat(name, dir_fd=fd, follow_symlinks=False)) for name in names]

    def walk(self, limit: int = 100_000) -> Iterator[tuple[str, os.stat_result]]:
        """Every entry below the root as (relative path, status), never following links."""
        pending: list[list[str]] = [[]]
        seen = 0
        while pending:
            parts = pending.pop()
            try:
                listing = self.entries(parts)
            except ToolError:
                continue  # changed while walking
            for name, info in listing:
                seen += 1
                if seen > limit:
                    return
                relative = [*parts, name]
                yield "/".join(relative), info
                if stat.S_ISDIR(info.st_mode):
                    pending.append(relative)

    def usage(self) -> Usage:
        files = 0
        size = 0
        for _, info in self.walk():
            if stat.S_ISREG(info.st_mode):
                files += 1
                size += info.st_size
        return Usage(files, size)

    def check_room(self, adding_bytes: int, *, new_file: bool) -> None:
        usage = self.usage()
        if usage.bytes + adding_bytes > self.quota_bytes:
            raise ToolError(
                f"the workspace quota of {self.quota_bytes // 1_000_000} MB would be exceeded "
                f"({usage.bytes:,} bytes used)"
            )
        if new_file and usage.files + 1 > self.max_files:
            raise ToolError(
                f"the workspace already holds the most files allowed ({self.max_files})"
            )

    # -- whole files --------------------------------------------------------------

    def read_bytes(self, path: str, limit: int) -> tuple[bytes, int]:
        """Up to `limit` bytes of a file, and the file's size."""
        with self.open_file(path) as fd:
            size = os.fstat(fd).st_size
            chunks = []
            remaining = limit
            while remaining > 0:
                chunk = os.read(fd, min(remaining, 1 << 16))
                if not chunk:
                    break
                chunks.append(chunk)
                remaining -= len(chunk)
            return b"".join(chunks), size

    def exists(self, path: str) -> bool:
        try:
            with self.open_file(path):
                return True
        except ToolError:
            return False

    def write_bytes(self, path: str, data: bytes) -> None:
        """Creates or replaces a file, inside the quota."""
        existing = 0
        new_file = True
        with contextlib.suppress(ToolError), self.open_file(path) as fd:
            existing = os.fstat(fd).st_size
            new_file = False
        self.check_room(len(data) - existing, new_file=new_file)
        # No O_TRUNC: the file is truncated only once it is known to be ours alone
        # (a hard link to a file outside must not be emptied by the open).
        with self.open_file(path, os.O_WRONLY | os.O_CREAT) as fd:
            os.ftruncate(fd, 0)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
