"""The attack suite: tool arguments written by an attacker.

Every attempt must end in a clear tool error, and nothing outside the workspace may be
read, written or reached. The traffic of the webfetch attempts stays on 127.0.0.1: a
refused address is refused before any connection.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from bot.openrouter import OpenRouterClient
from bot.openrouter.types import ToolCall
from bot.store import Store
from bot.tools import ToolContext, ToolRegistry, Workspace
from bot.tools.files import FILE_TOOLS
from bot.tools.sandbox import bash_tool, jail_works, todo_tool
from bot.tools.web import WebFetcher, web_tools
from tests.fakes.web import FakeSite

SECRET = "the-secret-outside-the-workspace"


class World:
    """A data dir with secrets around one conversation's workspace."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.data = base / "data"
        self.root = self.data / "workspaces" / "slack" / "C1" / "T1"
        self.root.mkdir(parents=True)
        self.secret = base / "secret.txt"
        self.secret.write_text(SECRET)
        (self.data / "routerbot.sqlite3").write_text("SQLite format 3 " + SECRET)
        (base / ".env").write_text("OPENROUTER_API_KEY=sk-or-v1-" + "5" * 64)
        self.workspace = Workspace(self.root, quota_bytes=1_000_000, max_files=20)
        self.ctx = ToolContext("slack", "W1", "C1", "T1", "U1", self.workspace)

    def outside(self) -> dict[str, tuple[int, float]]:
        """Every file outside the workspace, with its size and modification time."""
        found = {}
        for path in self.base.rglob("*"):
            if self.root in path.parents or path == self.root:
                continue
            info = path.lstat()
            found[str(path)] = (info.st_size, info.st_mtime)
        return found


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


@pytest.fixture
async def registry(store: Store, client: OpenRouterClient) -> AsyncIterator[ToolRegistry]:
    fetcher = WebFetcher()  # nothing allowed: the defaults
    yield ToolRegistry([*FILE_TOOLS, web_tools(fetcher, client, "x/y")[0], todo_tool(store)])
    await fetcher.aclose()


async def call(registry: ToolRegistry, world: World, name: str, **args: Any) -> str:
    before = world.outside()
    result = await registry.call(ToolCall("c", name, json.dumps(args)), world.ctx, registry.names())
    assert world.outside() == before, "something outside the workspace changed"
    assert not result.ok, f"{name}({args}) was not refused: {result.text[:200]}"
    assert SECRET not in result.text
    assert result.text.startswith("Error: ")
    return result.text


# -- paths ------------------------------------------------------------------------------

TRAVERSALS = [
    ("read", {"path": "../../../../../secret.txt"}, "'..' is not allowed"),
    ("read", {"path": "a/../../secret.txt"}, "'..' is not allowed"),
    ("read", {"path": "./../secret.txt"}, "'..' is not allowed"),
    ("read", {"path": "/etc/passwd"}, "absolute path"),
    ("read", {"path": "//etc/passwd"}, "absolute path"),
    ("read", {"path": "~/.bashrc"}, "'~' paths are not allowed"),
    ("read", {"path": "~root/.ssh/id_rsa"}, "'~' paths are not allowed"),
    ("read", {"path": "/proc/self/root/etc/passwd"}, "absolute path"),
    ("read", {"path": "/proc/self/environ"}, "absolute path"),
    ("read", {"path": "..\\..\\secret.txt"}, "use '/' between folders"),
    ("read", {"path": "%2e%2e/%2e%2e/secret.txt"}, "does not exist"),
    ("read", {"path": "secret.txt\u0000.log"}, "NUL"),
    ("read", {"path": "../../../routerbot.sqlite3"}, "'..' is not allowed"),
    ("read", {"path": "../../../../../.env"}, "'..' is not allowed"),
    ("list", {"path": ".."}, "'..' is not allowed"),
    ("list", {"path": "/"}, "absolute path"),
    ("glob", {"pattern": "../*"}, "'..' is not allowed"),
    ("glob", {"pattern": "/etc/*"}, "absolute path"),
    ("grep", {"pattern": "secret", "path": "../../../.."}, "'..' is not allowed"),
    ("write", {"path": "../escaped.txt", "content": "x"}, "'..' is not allowed"),
    ("write", {"path": "/tmp/escaped.txt", "content": "x"}, "absolute path"),
    ("edit", {"path": "../../../../../secret.txt", "old": "the", "new": "a"}, "'..'"),
]


@pytest.mark.parametrize(("tool", "args", "why"), TRAVERSALS)
async def test_path_spellings_are_refused(
    registry: ToolRegistry, world: World, tool: str, args: dict[str, Any], why: str
) -> None:
    assert why in await call(registry, world, tool, **args)


def link_out(world: World) -> None:
    os.symlink(world.secret, world.root / "link.txt")
    os.symlink("../../../../../secret.txt", world.root / "relative-link.txt")
    os.symlink(world.base, world.root / "linkdir")
    os.link(world.secret, world.root / "hardlink.txt")
    os.symlink("/dev/zero", world.root / "zero")


LINKS = [
    ("read", {"path": "link.txt"}, "symbolic link"),
    ("read", {"path": "relative-link.txt"}, "symbolic link"),
    ("read", {"path": "linkdir/secret.txt"}, "symbolic link"),
    ("list", {"path": "linkdir"}, "symbolic link"),
    ("read", {"path": "hardlink.txt"}, "hard link"),
    ("write", {"path": "hardlink.txt", "content": "overwritten"}, "hard link"),
    ("write", {"path": "link.txt", "content": "overwritten"}, "symbolic link"),
    ("write", {"path": "linkdir/new.txt", "content": "x"}, "symbolic link"),
    ("edit", {"path": "link.txt", "old": "the", "new": "a"}, "symbolic link"),
    ("edit", {"path": "hardlink.txt", "old": "the", "new": "a"}, "hard link"),
    ("read", {"path": "zero"}, "symbolic link"),
    ("grep", {"pattern": "secret", "path": "link.txt"}, "symbolic link"),
]


@pytest.mark.parametrize(("tool", "args", "why"), LINKS)
async def test_links_leading_out_are_refused(
    registry: ToolRegistry, world: World, tool: str, args: dict[str, Any], why: str
) -> None:
    link_out(world)
    assert why in await call(registry, world, tool, **args)
    assert world.secret.read_text() == SECRET


async def test_grep_over_the_workspace_skips_links(registry: ToolRegistry, world: World) -> None:
    link_out(world)
    result = await registry.call(
        ToolCall("c", "grep", json.dumps({"pattern": "secret"})), world.ctx, registry.names()
    )
    assert result.text == "no matches for 'secret'"


async def test_special_files_are_refused(registry: ToolRegistry, world: World) -> None:
    os.mkfifo(world.root / "pipe")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(world.root / "sock"))
    try:
        # A fifo would block a plain open() forever; it must come back at once.
        text = await asyncio.wait_for(call(registry, world, "read", path="pipe"), timeout=5)
        assert "fifo" in text
        assert "socket" in await call(registry, world, "read", path="sock")
        assert "fifo" in await call(registry, world, "write", path="pipe", content="x")
    finally:
        server.close()
    assert stat.S_ISFIFO((world.root / "pipe").lstat().st_mode)


async def test_binary_files_are_refused(registry: ToolRegistry, world: World) -> None:
    (world.root / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    assert "binary file" in await call(registry, world, "read", path="image.png")


async def test_quota_and_file_count(registry: ToolRegistry, world: World) -> None:
    big = "x" * 1_100_000
    assert "quota of 1 MB" in await call(registry, world, "write", path="big.txt", content=big)
    assert not (world.root / "big.txt").exists()
    for i in range(20):
        (world.root / f"f{i}.txt").write_text("x")
    assert "most files allowed (20)" in await call(
        registry, world, "write", path="one-more.txt", content="x"
    )


async def test_catastrophic_regex_is_stopped(registry: ToolRegistry, world: World) -> None:
    (world.root / "a.txt").write_text("x" * 5000 + "\n")
    text = await call(registry, world, "grep", pattern="(x+x+)+y")
    assert "took too long" in text
    assert "not a valid regular expression" in await call(registry, world, "grep", pattern="(")


async def test_oversized_output_is_capped(world: World, store: Store) -> None:
    (world.root / "huge.log").write_text("ERROR again\n" * 100_000)
    registry = ToolRegistry(FILE_TOOLS)
    result = await registry.call(
        ToolCall("c", "grep", json.dumps({"pattern": "ERROR"})), world.ctx, registry.names()
    )
    assert result.text.endswith("[99800 more matches not shown; narrow the search]")
    assert len(result.text.splitlines()) == 201


# -- webfetch ---------------------------------------------------------------------------

ADDRESSES = [
    ("http://127.0.0.1:{port}/page", "loopback"),
    ("http://localhost:{port}/page", "loopback"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://10.0.0.1/", "private"),
    ("http://172.16.5.4/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://100.64.0.1/", "not public"),
    ("http://[::1]:{port}/page", "loopback"),
    ("http://[::ffff:127.0.0.1]:{port}/page", "loopback (inside an IPv6 address)"),
    ("http://[::ffff:169.254.169.254]/", "link-local"),
    ("http://[64:ff9b::7f00:1]/", "loopback (inside an IPv6 address)"),
    ("http://[2002:7f00:1::]/", "loopback (inside an IPv6 address)"),
    ("http://2130706433:{port}/page", "loopback"),
    ("http://0177.0.0.1:{port}/page", "loopback"),
    ("http://0x7f.0.0.1:{port}/page", "loopback"),
    ("http://0x7f000001:{port}/page", "loopback"),
    ("http://127.1:{port}/page", "loopback"),
    ("http://0.0.0.0:{port}/page", "unspecified"),
    ("http://[::]:{port}/page", "unspecified"),
    ("http://[fd00::1]/", "unique-local"),
    ("http://[fe80::1]/", "link-local"),
    ("http://224.0.0.1/", "multicast"),
    ("http://[ff02::1]/", "multicast"),
    ("http://240.0.0.1/", "reserved"),
    ("file:///etc/passwd", "only http and https"),
    ("ftp://127.0.0.1/", "only http and https"),
    ("gopher://127.0.0.1:70/", "only http and https"),
    ("http://user:pass@example.com/", "user name or password"),
    ("http:///path-only", "has no host"),
]


@pytest.mark.parametrize(("url", "why"), ADDRESSES)
async def test_webfetch_refuses_local_addresses(
    registry: ToolRegistry, world: World, site: FakeSite, url: str, why: str
) -> None:
    port = site.url.rsplit(":", 1)[1]
    assert why in await call(registry, world, "webfetch", url=url.format(port=port))
    assert site.paths == []


async def fetch_with(fetcher: WebFetcher, world: World, url: str) -> tuple[bool, str]:
    # webfetch never calls OpenRouter; the client only completes websearch's signature.
    client = OpenRouterClient.create(
        api_key="sk-or-v1-unused-unused", base_url="http://127.0.0.1:9"
    )
    registry = ToolRegistry([web_tools(fetcher, client, "x/y")[0]])
    result = await registry.call(
        ToolCall("c", "webfetch", json.dumps({"url": url})), world.ctx, registry.names()
    )
    await fetcher.aclose()
    await client.aclose()
    return result.ok, result.text


async def test_the_fake_site_is_reachable_only_when_allowed(world: World, site: FakeSite) -> None:
    ok, text = await fetch_with(
        WebFetcher(allow_hosts=frozenset({"127.0.0.1"})), world, f"{site.url}/page"
    )
    assert ok, text
    assert "Build 42" in text


async def test_redirects_to_private_addresses_are_refused(world: World, site: FakeSite) -> None:
    fetcher = WebFetcher(allow_hosts=frozenset({"127.0.0.1"}))
    ok, text = await fetch_with(
        fetcher, world, f"{site.url}/redirect?to=http://169.254.169.254/latest/"
    )
    assert not ok
    assert "link-local" in text
    assert site.paths == ["/redirect?to=http://169.254.169.254/latest/"]


async def test_redirect_loops_end(world: World, site: FakeSite) -> None:
    ok, text = await fetch_with(
        WebFetcher(allow_hosts=frozenset({"127.0.0.1"})), world, f"{site.url}/loop/0"
    )
    assert not ok
    assert "more than 5 redirects" in text
    assert len(site.paths) == 6


async def test_any_private_answer_of_the_resolver_refuses(world: World, site: FakeSite) -> None:
    async def mixed(host: str, port: int) -> list[str]:
        return ["93.184.215.14", "10.1.2.3"]

    ok, text = await fetch_with(WebFetcher(resolver=mixed), world, "http://mixed.test/")
    assert not ok
    assert "private address (10.1.2.3)" in text


async def test_dns_rebinding_cannot_change_the_address(world: World, site: FakeSite) -> None:
    port = int(site.url.rsplit(":", 1)[1])
    answers: list[str] = []

    async def rebinding(host: str, port_: int) -> list[str]:
        # First answer passes the check; any later look-up would point elsewhere.
        answer = "127.0.0.1" if not answers else "10.9.9.9"
        answers.append(answer)
        return [answer]

    fetcher = WebFetcher(resolver=rebinding, allow_hosts=frozenset({"127.0.0.1"}))
    ok, text = await fetch_with(fetcher, world, f"http://rebind.test:{port}/text")
    assert ok, text
    assert answers == ["127.0.0.1"]  # looked up once, and the connection went there
    assert f"plain text for rebind.test:{port}" in text  # the Host header kept the name


async def test_https_is_pinned_and_verified_by_name(world: World) -> None:
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("site.test").configure_cert(server_context)
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)
    secure = FakeSite()
    port = int((await secure.start(ssl_context=server_context)).rsplit(":", 1)[1])

    async def local(host: str, port_: int) -> list[str]:
        return ["127.0.0.1"]

    def fetcher() -> WebFetcher:
        return WebFetcher(
            resolver=local, allow_hosts=frozenset({"127.0.0.1"}), verify=client_context
        )

    try:
        ok, text = await fetch_with(fetcher(), world, f"https://site.test:{port}/text")
        assert ok, text
        assert f"plain text for site.test:{port}" in text
        # Pinned to the same address, a name the certificate does not cover fails.
        ok, text = await fetch_with(fetcher(), world, f"https://other.test:{port}/text")
        assert not ok
        assert "could not be fetched" in text
    finally:
        await secure.stop()
    assert secure.paths == ["/text"]


async def test_blocked_hosts(world: World, site: FakeSite) -> None:
    async def local(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    fetcher = WebFetcher(
        resolver=local, allow_hosts=frozenset({"127.0.0.1"}), block_hosts=frozenset({"evil.test"})
    )
    ok, text = await fetch_with(fetcher, world, "http://api.evil.test/")
    assert not ok
    assert "blocked by the bot's settings" in text


async def test_big_bodies_are_cut_and_binary_refused(world: World, site: FakeSite) -> None:
    allow = frozenset({"127.0.0.1"})
    ok, text = await fetch_with(WebFetcher(allow_hosts=allow), world, f"{site.url}/big")
    assert ok
    assert "[the page is larger than 5 MB; cut there]" in text
    ok, text = await fetch_with(WebFetcher(allow_hosts=allow), world, f"{site.url}/image")
    assert not ok
    assert "image/png, not text" in text


# -- bash -------------------------------------------------------------------------------


@pytest.fixture
async def jail() -> ToolRegistry:
    why = await jail_works()
    if why is not None:
        pytest.skip(f"no jail on this machine: {why}")  # .ci/run installs bubblewrap
    return ToolRegistry([bash_tool("bwrap", timeout_s=5)])


async def run(jail: ToolRegistry, world: World, command: str) -> tuple[bool, str]:
    before = world.outside()
    result = await jail.call(
        ToolCall("c", "bash", json.dumps({"command": command})), world.ctx, jail.names()
    )
    assert world.outside() == before, "the command changed something outside the workspace"
    assert SECRET not in result.text
    return result.ok, result.text


async def test_bash_works_in_the_workspace(jail: ToolRegistry, world: World) -> None:
    (world.root / "build.log").write_text("a\nb\nc\n")
    ok, text = await run(jail, world, "pwd; wc -l build.log; echo made > out.txt")
    assert ok
    assert text == "/workspace\n3 build.log\n[exit status 0]"
    assert (world.root / "out.txt").read_text() == "made\n"


async def test_bash_has_no_network(jail: ToolRegistry, world: World, site: FakeSite) -> None:
    port = site.url.rsplit(":", 1)[1]
    ok, text = await run(
        jail, world, f"bash -c 'echo hi > /dev/tcp/127.0.0.1/{port}' 2>&1; ip -o link 2>&1 | wc -l"
    )
    assert ok
    assert "Connection refused" in text or "Network is unreachable" in text
    assert site.paths == []


@pytest.mark.parametrize(
    "command",
    [
        f"cat {Path.home()}/.bashrc",
        "cat /work/main/README.md",
        "touch /usr/escaped",
        "echo x > /etc/escaped",
        "ls /root",
    ],
)
async def test_bash_sees_only_the_system_read_only(
    jail: ToolRegistry, world: World, command: str
) -> None:
    ok, text = await run(jail, world, command)
    assert ok
    assert "[exit status 0]" not in text


async def test_bash_cannot_reach_the_data_dir_or_env(jail: ToolRegistry, world: World) -> None:
    for target in (world.data / "routerbot.sqlite3", world.base / ".env", world.secret):
        _, text = await run(jail, world, f"cat {target}")
        assert "No such file or directory" in text


async def test_bash_environment_is_empty(
    jail: ToolRegistry, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-v1-" + "7" * 64)
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-should-not-leak")
    _, text = await run(jail, world, "env; cat /proc/1/environ 2>&1")
    assert "sk-or-v1" not in text
    assert "xoxb" not in text
    names = {line.split("=", 1)[0] for line in text.splitlines() if "=" in line}
    assert names <= {"PATH", "HOME", "LANG", "PWD", "SHLVL", "_", "OLDPWD"}


async def test_bash_private_tmp(jail: ToolRegistry, world: World, tmp_path: Path) -> None:
    marker = f"routerbot-jail-{os.getpid()}"
    await run(jail, world, f"echo x > /tmp/{marker}")
    assert not (Path("/tmp") / marker).exists()


async def test_bash_output_is_capped(jail: ToolRegistry, world: World) -> None:
    ok, text = await run(jail, world, "yes routerbot | head -c 10000000")
    assert ok
    assert "[output cut at 64 KB]" in text
    assert len(text) < 70_000


async def test_bash_wall_time(jail: ToolRegistry, world: World) -> None:
    ok, text = await run(jail, world, "sleep 60")
    assert not ok
    assert "ran longer than 5 s and was stopped" in text


async def test_bash_fork_bomb_is_contained(jail: ToolRegistry, world: World) -> None:
    def sleepers() -> int:
        count = 0
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    if "routerbomb" in Path(entry.path, "cmdline").read_bytes().decode():
                        count += 1
                except OSError:
                    continue
        return count

    ok, text = await run(
        jail, world, "routerbomb() { routerbomb | routerbomb & }; routerbomb; sleep 30"
    )
    assert not ok
    assert "was stopped" in text
    # The jail's PID namespace died with it: nothing of the bomb is left running.
    for _ in range(100):
        if sleepers() == 0:
            break
        await asyncio.sleep(0.05)
    assert sleepers() == 0


async def test_bash_never_hands_over_a_hard_linked_file(jail: ToolRegistry, world: World) -> None:
    if os.getuid() != 0:
        # Only a root bot hands the workspace over; unprivileged, the jail cannot link
        # to anything outside (it sees no outside file on the workspace's mount).
        pytest.skip("the hand-over to nobody happens only when the bot runs as root")
    os.link(world.secret, world.root / "hardlink.txt")
    _, text = await run(jail, world, "echo changed > hardlink.txt")
    assert "Permission denied" in text
    assert world.secret.read_text() == SECRET
    assert world.secret.stat().st_uid == 0


async def test_bash_cannot_outgrow_the_workspace_quota(jail: ToolRegistry, world: World) -> None:
    ok, text = await run(jail, world, "head -c 2000000 /dev/zero > big.bin; ls -l big.bin")
    assert ok
    assert "File size limit exceeded" in text or "[exit status 0]" not in text
    assert (world.root / "big.bin").stat().st_size <= 1_000_000
