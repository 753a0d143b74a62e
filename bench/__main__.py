"""`python -m bench` (or `make bench`): what the bot adds on top of the model, under load.

Each case runs four processes on 127.0.0.1: the fake OpenRouter (time to first token
300 ms, 200 tokens at 100 tokens a second), the fake Slack or fake Discord, the real bot
(`routerbot serve`), and this driver. After one warm-up mention, N people mention the bot
at once, each in a channel of their own; then N slash commands arrive at once. Every
timestamp comes from the fakes' records, on the machine's one monotonic clock.

Figures per case (medians and p95, in ms unless said):
  a  event sent -> first thing the user sees (status, placeholder or text)
  b  first answer text visible, minus the fake's own time to first token
  c  the fake's stream end -> the full text visible
  d  platform write calls per reply; 429 answers
  e  acknowledgement latency p99 (Slack events and commands; Discord interactions)
  f  the bot's peak RSS (MB)
  g  replies incomplete or lost; messages whose text ever went backwards

Results go to bench/results/latest.md and latest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.fakes.discord import TOKEN as DISCORD_TOKEN
from tests.fakes.openrouter import TEST_KEY
from tests.fakes.slack import BOT_TOKEN, SIGNING_SECRET

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
ROUTERBOT = str(Path(sys.executable).parent / "routerbot")
TTFT_S = 0.3
TOKENS = 200
RATE = 100.0
ANSWER = [f"word{i}" for i in range(TOKENS)]
CASE_TIMEOUT_S = 240.0
WRITE_METHODS = re.compile(r"^(chat\.|assistant\.)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float]) -> dict[str, float | None]:
    ms = [v * 1000 for v in values]
    return {
        "median": statistics.median(ms) if ms else None,
        "p95": percentile(ms, 0.95),
        "p99": percentile(ms, 0.99),
        "n": len(ms),
    }


@dataclass
class Case:
    platform: str
    n: int
    tiers: bool = False
    a: dict[str, Any] = field(default_factory=dict)
    b: dict[str, Any] = field(default_factory=dict)
    c: dict[str, Any] = field(default_factory=dict)
    writes_per_reply: float = 0.0
    rate_limited: int = 0
    ack_events: dict[str, Any] = field(default_factory=dict)
    ack_commands: dict[str, Any] = field(default_factory=dict)
    peak_rss_mb: float = 0.0
    incomplete: int = 0
    backwards: int = 0
    seconds: float = 0.0


class Process:
    """A child process whose first line of output is its URL."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.popen = subprocess.Popen(  # noqa: S603 - our own interpreter and modules
            list(args),
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL if env is None else subprocess.PIPE,
            text=True,
        )

    def url(self) -> str:
        assert self.popen.stdout is not None
        return self.popen.stdout.readline().strip()

    def stop(self) -> str:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        err = self.popen.stderr.read() if self.popen.stderr else ""
        return err or ""

    def peak_rss_mb(self) -> float:
        status = Path(f"/proc/{self.popen.pid}/status").read_text()
        found = re.search(r"VmHWM:\s+(\d+) kB", status)
        return int(found.group(1)) / 1024 if found else 0.0


async def fetch(session: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> Any:
    async with session.request(method, url, **kw) as response:
        response.raise_for_status()
        return await response.json()


async def wait_for(check: Any, within_s: float, what: str) -> None:
    """Polls `check` (an async predicate) every 0.2 s for at most `within_s`."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"gave up waiting for {what}")


def words(text: str) -> list[str]:
    return re.findall(r"word\d+", text)


async def run_case(platform_name: str, n: int, *, tiers: bool = False) -> Case:
    case = Case(platform_name, n, tiers)
    started = time.monotonic()
    python = sys.executable
    router = Process(
        python, "-m", "tests.fakes.openrouter", "--port", str(free_port()),
        "--ttft", str(TTFT_S), "--tokens", str(TOKENS), "--rate", str(RATE),
    )  # fmt: skip
    router_url = router.url()
    fake_args = ["--port", str(free_port())]
    if platform_name == "slack":
        fake = Process(python, "-m", "tests.fakes.slack", *fake_args, *(["--tiers"] * tiers))
    else:
        fake = Process(python, "-m", "tests.fakes.discord", *fake_args, "--channels", str(n + 1))
    fake_url = fake.url()
    port = free_port()
    data = tempfile.mkdtemp(prefix="routerbot-bench-")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", data),
        "OPENROUTER_API_KEY": TEST_KEY,
        "OPENROUTER_BASE_URL": router_url,
        "PORT": str(port),
        "ROUTERBOT_DATA_DIR": data,
        "ROUTERBOT_LOG_LEVEL": "WARNING",
        "ROUTERBOT_USER_RATE_LIMIT": "0",
    }
    if platform_name == "slack":
        env |= {
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_BASE_URL": fake_url + "/api/",
        }
    else:
        env |= {"DISCORD_BOT_TOKEN": DISCORD_TOKEN, "DISCORD_API_BASE_URL": fake_url + "/api/v10"}
    bot = Process(ROUTERBOT, "serve", env=env)
    base = f"http://127.0.0.1:{port}"
    connector = aiohttp.TCPConnector(limit=0)
    try:
        async with aiohttp.ClientSession(connector=connector) as session:

            async def ready() -> bool:
                try:
                    async with session.get(base + "/readyz") as response:
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            await wait_for(ready, 30, "the bot to be ready")
            if platform_name == "slack":
                await fetch(
                    session, "POST", fake_url + "/_fake/setup",
                    json={"events_url": base + "/slack/events", "echo": True},
                )  # fmt: skip
            await measure(case, session, fake_url, router_url.removesuffix("/api/v1"))
            case.peak_rss_mb = round(bot.peak_rss_mb(), 1)
    finally:
        errors = bot.stop()
        fake.stop()
        router.stop()
        if "Traceback" in errors:
            print(errors[-3000:], file=sys.stderr)
        if os.environ.get("BENCH_DUMP"):
            (Path(os.environ["BENCH_DUMP"]) / "bot-stderr.txt").write_text(errors)
    case.seconds = round(time.monotonic() - started, 1)
    return case


async def measure(case: Case, session: aiohttp.ClientSession, fake: str, router: str) -> None:
    n = case.n
    mentions = fake + "/_fake/mentions"
    # Warm-up: the catalogue, connections, first-use imports. Not measured.
    warmup = {"n": 1, "prefix": "warmup", "channels": "CW", "offset": n}
    await fetch(session, "POST", mentions, json=warmup)
    await wait_for(lambda: complete(session, fake, case.platform, 1), 60, "the warm-up reply")
    before = await fetch(session, "GET", fake + "/_fake/records")
    skip_calls = len(before["calls"])
    streams_before = len(await fetch(session, "GET", router + "/_fake/streams"))
    await fetch(session, "POST", mentions, json={"n": n, "prefix": "bench"})
    await wait_for(
        lambda: complete(session, fake, case.platform, n, "bench"), CASE_TIMEOUT_S, "the replies"
    )
    records = await fetch(session, "GET", fake + "/_fake/records")
    streams = (await fetch(session, "GET", router + "/_fake/streams"))[streams_before:]
    if os.environ.get("BENCH_DUMP"):  # the raw records, to look into one case
        dump = Path(os.environ["BENCH_DUMP"]) / f"{case.platform}-{n}-{int(case.tiers)}.json"
        dump.write_text(json.dumps({"records": records, "streams": streams}), encoding="utf-8")
    commands = "/_fake/commands" if case.platform == "slack" else "/_fake/interactions"
    acks_before = len(records.get("acks", [])) if case.platform == "slack" else 0
    await fetch(session, "POST", fake + commands, json={"n": n})

    async def acknowledged() -> bool:
        # Slack: the fake records each ack as its request returns. Discord: an interaction
        # is answered by a callback that arrives after its dispatch.
        if case.platform == "slack":
            return True
        found = await fetch(session, "GET", fake + "/_fake/records")
        return sum(1 for _, done in found["interactions"] if done is not None) >= n

    await wait_for(acknowledged, 60, "the commands' answers")
    after = await fetch(session, "GET", fake + "/_fake/records")
    if case.platform == "slack":
        analyse_slack(case, records, streams, skip_calls)
        commands_acked = [a for a in after["acks"][acks_before:] if a[0] == "/credits"]
        case.ack_commands = summary([done - sent for _, sent, done in commands_acked])
    else:
        analyse_discord(case, records, streams, skip_calls)
        answered = [(s, d) for s, d in after["interactions"] if d is not None]
        case.ack_commands = summary([d - s for s, d in answered])


async def complete(
    session: aiohttp.ClientSession, fake: str, platform_name: str, n: int, prefix: str = ""
) -> bool:
    records = await fetch(session, "GET", fake + "/_fake/records")
    done = 0
    for timeline in final_texts(records, platform_name).values():
        if words(timeline) == ANSWER:
            done += 1
    expected = n + (1 if prefix else 0)
    return done >= expected


def final_texts(records: dict[str, Any], platform_name: str) -> dict[str, str]:
    """Per channel, the answer people see now: the bot's visible messages from the last
    one that starts the answer (an answer posted anew under load leaves the earlier, partial
    one behind until its removal)."""
    found: dict[str, list[str]] = {}
    for message in records["messages"]:
        if not message["timeline"] or message.get("deleted") or message.get("streaming"):
            continue
        texts = found.setdefault(message["channel"], [])
        text = message["timeline"][-1][1]
        if "word0 " in text or text.startswith("word0"):
            texts.clear()
        texts.append(text)
    return {channel: "\n".join(texts) for channel, texts in found.items()}


def streams_by_index(streams: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """The fake's streams by the number of the benchmark's question they answered."""
    found = {}
    for stream in streams:
        match = re.search(r"\bbench (\d+)$", str(stream.get("last_message")))
        if match:
            found[int(match.group(1))] = stream
    return found


def went_backwards(timeline: list[list[Any]]) -> int:
    """1 when a message's text ever got shorter than it was (deletion aside)."""
    lengths = [len(words(text)) for _, text in timeline if text]
    return int(any(later < earlier for earlier, later in itertools.pairwise(lengths)))


def analyse(
    case: Case,
    records: dict[str, Any],
    streams: list[dict[str, Any]],
    channels: list[str],
    seen_first: dict[str, float],
) -> None:
    """(a), (b), (c), incomplete and backwards, per reply; `channels[i]` is where question
    i was asked, `seen_first` what showed there before any message (a status, typing)."""
    by_channel: dict[str, list[dict[str, Any]]] = {}
    for message in records["messages"]:
        by_channel.setdefault(message["channel"], []).append(message)
    by_index = streams_by_index(streams)
    finals = final_texts(records, case.platform)
    a, b, c = [], [], []
    for index, channel in enumerate(channels):
        messages = by_channel.get(channel, [])
        sent = records["sent_at"].get(channel)
        if words(finals.get(channel, "")) != ANSWER:
            case.incomplete += 1
        case.backwards += sum(went_backwards(m["timeline"]) for m in messages)
        timeline = sorted(t for m in messages for t in m["timeline"])
        if sent is None or not timeline:
            continue
        a.append(min(timeline[0][0], seen_first.get(channel, timeline[0][0])) - sent)
        stream = by_index.get(index)
        first_text = next((at for at, text in timeline if "word0" in text), None)
        full = next((at for at, text in timeline if "word199" in text), None)
        if stream and first_text is not None and stream.get("first_token_at"):
            b.append((first_text - sent) - (stream["first_token_at"] - stream["requested_at"]))
        if stream and full is not None and stream.get("ended_at"):
            c.append(full - stream["ended_at"])
    case.a, case.b, case.c = summary(a), summary(b), summary(c)


def analyse_slack(
    case: Case, records: dict[str, Any], streams: list[dict[str, Any]], skip_calls: int
) -> None:
    calls = records["calls"][skip_calls:]
    statuses: dict[str, float] = {}
    for call in calls:
        if call["method"] == "assistant.threads.setStatus" and not call["error"]:
            statuses.setdefault(call["channel"], call["at"])
    analyse(case, records, streams, [f"CB{i:04d}" for i in range(case.n)], statuses)
    writes = [x for x in calls if WRITE_METHODS.match(x["method"])]
    case.writes_per_reply = round(len(writes) / case.n, 1)
    case.rate_limited = sum(1 for x in calls if x["status"] == 429)
    events = [done - s for kind, s, done in records["acks"] if kind in ("app_mention", "message")]
    case.ack_events = summary(events)


def analyse_discord(
    case: Case, records: dict[str, Any], streams: list[dict[str, Any]], skip_calls: int
) -> None:
    calls = records["calls"][skip_calls:]
    channels = [str(910_000_000_000_000_000 + i) for i in range(case.n)]
    analyse(case, records, streams, channels, records["typing"])
    writes = [x for x in calls if x["method"] in ("POST", "PATCH") and "/channels/" in x["path"]]
    case.writes_per_reply = round(len(writes) / case.n, 1)
    case.rate_limited = sum(1 for x in calls if x["status"] == 429)


def machine() -> str:
    cpu = "unknown CPU"
    info = Path("/proc/cpuinfo")
    if info.exists():
        found = re.search(r"model name\s*:\s*(.+)", info.read_text())
        cpu = found.group(1).strip() if found else cpu
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        found = re.search(r"MemTotal:\s+(\d+) kB", meminfo.read_text())
        memory = f", {int(found.group(1)) / 1024 / 1024:.0f} GiB" if found else ""
    return f"{os.cpu_count()} cores ({cpu}){memory}, Python {platform.python_version()}"


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def table(cases: list[Case]) -> str:
    head = (
        "| platform | N | Slack tiers | a median / p95 | b median / p95 | c median / p95 "
        "| writes/reply | 429s | ack events p99 | ack commands p99 | peak RSS MB "
        "| incomplete | backwards | run s |\n"
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    rows = []
    for x in cases:
        rows.append(
            f"| {x.platform} | {x.n} | {'yes' if x.tiers else 'no'} "
            f"| {fmt(x.a.get('median'))} / {fmt(x.a.get('p95'))} "
            f"| {fmt(x.b.get('median'))} / {fmt(x.b.get('p95'))} "
            f"| {fmt(x.c.get('median'))} / {fmt(x.c.get('p95'))} "
            f"| {x.writes_per_reply} | {x.rate_limited} "
            f"| {fmt(x.ack_events.get('p99'))} | {fmt(x.ack_commands.get('p99'))} "
            f"| {x.peak_rss_mb} | {x.incomplete} | {x.backwards} | {x.seconds} |"
        )
    return head + "\n".join(rows) + "\n"


def plan(args: argparse.Namespace) -> list[tuple[str, int, bool]]:
    platforms = ["slack", "discord"] if args.platform == "both" else [args.platform]
    sizes = [int(s) for s in args.sizes.split(",") if s]
    cases = [(p, n, False) for p in platforms for n in sizes]
    if "slack" in platforms and args.tiers:
        cases += [("slack", n, True) for n in (20, 100) if n in sizes or not args.quick]
    if args.memory:
        cases += [(p, args.memory, False) for p in platforms]
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--platform", choices=["slack", "discord", "both"], default="both")
    parser.add_argument("--sizes", default="1,20,100,200", help="N values, comma-separated")
    parser.add_argument("--memory", type=int, default=1000, help="N of the memory run (0: none)")
    parser.add_argument("--no-tiers", dest="tiers", action="store_false",
                        help="skip the run with Slack's documented tiers enforced")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="N = 1 and 20 only, no memory run")
    parser.add_argument("--out", default=str(RESULTS), help="where latest.md and .json go")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.memory = "1,20", 0
    cases: list[Case] = []
    for platform_name, n, tiers in plan(args):
        label = f"{platform_name} N={n}" + (" with Slack's tiers" if tiers else "")
        print(f"running {label} ...", flush=True)
        case = asyncio.run(run_case(platform_name, n, tiers=tiers))
        print(table([case]).splitlines()[-1], flush=True)
        cases.append(case)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    header = (
        f"# Benchmark results\n\n{when}, on {machine()}.\n\n"
        f"Fake model: time to first token {TTFT_S * 1000:.0f} ms, {TOKENS} tokens at "
        f"{RATE:.0f} tokens/s. Times in ms (a: event -> first thing seen; b: first text "
        "minus the model's time to first token; c: stream end -> full text), RSS in MB.\n\n"
    )
    (out / "latest.md").write_text(header + table(cases), encoding="utf-8")
    (out / "latest.json").write_text(
        json.dumps({"when": when, "machine": machine(), "cases": [asdict(c) for c in cases]},
                   indent=2) + "\n",
        encoding="utf-8",
    )  # fmt: skip
    print(f"\nwrote {out / 'latest.md'}")


if __name__ == "__main__":
    main()
