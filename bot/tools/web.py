"""`webfetch` and `websearch`.

webfetch assumes the URL was written by an attacker. Every address the host resolves to
must be public (not loopback, private, link-local such as 169.254.169.254, multicast,
reserved, unspecified or unique-local, in any spelling: IPv4-mapped IPv6, NAT64, 6to4,
decimal, octal or hex IPv4); the connection then goes to the checked address itself, so
DNS cannot answer differently between the check and the connect. Redirects are checked
the same way, at most 5. Bodies are capped in size and time, and HTML becomes text.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from ..openrouter import ChatRequest, OpenRouterClient, OpenRouterError
from ..openrouter.refs import to_api_id
from .registry import FunctionTool, ToolContext, ToolError, short

MAX_BYTES = 5 * 1024 * 1024
MAX_REDIRECTS = 5
TIMEOUT_S = 15.0
MAX_TEXT_CHARS = 30_000
TEXT_TYPES = ("text/", "application/json", "application/xml", "application/xhtml+xml")

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]
NAT64 = ipaddress.ip_network("64:ff9b::/96")


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """An IPv4 address in any spelling inet_aton takes: 2130706433, 0177.0.0.1, 0x7f.1."""
    if not re.fullmatch(r"[0-9a-fA-FxX.]+", host) or not re.search(r"\d", host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def blocked_reason(ip: IP) -> str | None:
    """Why an address may not be fetched, or None for a public one."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            inner = blocked_reason(embedded)
            return f"{inner} (inside an IPv6 address)" if inner else None
    checks = (
        (ip.is_unspecified, "unspecified"),
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local (cloud metadata lives there)"),
        (ip.is_multicast, "multicast"),
        (ip.is_reserved, "reserved"),
        (
            isinstance(ip, ipaddress.IPv6Address) and ip in ipaddress.ip_network("fc00::/7"),
            "unique-local",
        ),
        (ip.is_private, "private"),
        (not ip.is_global, "not public"),
    )
    return next((reason for failed, reason in checks if failed), None)


@dataclass(frozen=True)
class Target:
    url: str  # with the checked address in place of the host
    host_header: str
    sni: str | None


class _Text(HTMLParser):
    """HTML to readable text: blocks on their own lines, scripts and styles dropped."""

    BLOCKS = frozenset(
        [
            "p",
            "div",
            "br",
            "li",
            "ul",
            "ol",
            "h1",
            "h2",
            "h3",
            "h4",
            "h5",
            "h6",
            "tr",
            "table",
            "section",
            "article",
            "header",
            "footer",
            "pre",
            "blockquote",
            "title",
        ]
    )
    SKIP = frozenset({"script", "style", "noscript", "template", "svg"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self.skipping += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")
        if tag == "li":
            self.parts.append("- ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    text = "\n".join(line for line in lines if line)
    return re.sub(r"\n{3,}", "\n\n", text)


class WebFetcher:
    def __init__(
        self,
        *,
        allow_hosts: frozenset[str] = frozenset(),
        block_hosts: frozenset[str] = frozenset(),
        resolver: Resolver = system_resolver,
        max_bytes: int = MAX_BYTES,
        timeout_s: float = TIMEOUT_S,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.allow_hosts = frozenset(h.lower() for h in allow_hosts)
        self.block_hosts = frozenset(h.lower().lstrip(".") for h in block_hosts)
        self.resolver = resolver
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        # trust_env=False: a proxy from the environment would connect on its own terms,
        # past the address check.
        self._http = httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,
            verify=verify,
            timeout=httpx.Timeout(timeout_s, connect=5.0),
            headers={"User-Agent": "routerbot-webfetch/0.1"},
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    def _blocked_name(self, host: str) -> bool:
        return any(host == b or host.endswith("." + b) for b in self.block_hosts)

    async def check(self, url: str) -> Target:
        """The pinned target for a URL, or a ToolError saying why it is refused."""
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https"):
            raise ToolError(f"only http and https URLs can be fetched, not {parts.scheme!r}")
        if "@" in parts.netloc:
            raise ToolError("URLs with a user name or password are not fetched")
        host = (parts.hostname or "").lower().rstrip(".")
        if not host:
            raise ToolError(f"{short(url, 80)!r} has no host")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise ToolError(f"{short(url, 80)!r} has an invalid port") from None
        if self._blocked_name(host):
            raise ToolError(f"{host} is blocked by the bot's settings")
        literal = legacy_ipv4(host)
        try:
            addresses = [str(literal or ipaddress.ip_address(host))]
        except ValueError:
            try:
                addresses = await asyncio.wait_for(self.resolver(host, port), timeout=5)
            except (OSError, TimeoutError):
                raise ToolError(f"the host {host} could not be resolved") from None
        if not addresses:
            raise ToolError(f"the host {host} could not be resolved")
        allowed = host in self.allow_hosts
        for address in addresses:
            ip = ipaddress.ip_address(address)
            if str(ip) in self.block_hosts:
                raise ToolError(f"{host} is blocked by the bot's settings")
            reason = blocked_reason(ip)
            if reason and not (allowed or str(ip) in self.allow_hosts):
                raise ToolError(
                    f"{host} leads to a {reason} address ({ip}); webfetch only reaches "
                    "public addresses"
                )
        pinned = ipaddress.ip_address(addresses[0])
        netloc = f"[{pinned}]" if pinned.version == 6 else str(pinned)
        default_port = 443 if parts.scheme == "https" else 80
        host_header = host if port == default_port else f"{host}:{port}"
        target = urlunsplit((parts.scheme, f"{netloc}:{port}", parts.path or "/", parts.query, ""))
        return Target(target, host_header, host if parts.scheme == "https" else None)

    async def fetch(self, url: str) -> str:
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._fetch(url)
        except TimeoutError:
            raise ToolError(f"{short(url, 80)} took longer than {self.timeout_s:g} s") from None

    async def _fetch(self, url: str) -> str:
        for _ in range(MAX_REDIRECTS + 1):
            target = await self.check(url)
            extensions = {"sni_hostname": target.sni} if target.sni else {}
            try:
                async with self._http.stream(
                    "GET",
                    target.url,
                    headers={"Host": target.host_header, "Accept": "text/html, text/*;q=0.9"},
                    extensions=extensions,
                ) as response:
                    if response.is_redirect and "location" in response.headers:
                        url = urljoin(url, response.headers["location"])
                        continue
                    if response.status_code >= 400:
                        raise ToolError(f"{short(url, 80)} answered HTTP {response.status_code}")
                    kind = response.headers.get("content-type", "text/plain").lower()
                    if not kind.startswith(TEXT_TYPES):
                        raise ToolError(f"{short(url, 80)} is {kind.split(';')[0]}, not text")
                    body, cut = await self._read(response)
                    text = body.decode(response.encoding or "utf-8", "replace")
            except httpx.HTTPError as exc:
                raise ToolError(
                    f"{short(url, 80)} could not be fetched ({type(exc).__name__})"
                ) from None
            if "html" in kind:
                text = html_to_text(text)
            notes = []
            if cut:
                notes.append(
                    f"[the page is larger than {self.max_bytes // 1_000_000} MB; cut there]"
                )
            if len(text) > MAX_TEXT_CHARS:
                notes.append(f"[{len(text) - MAX_TEXT_CHARS:,} more characters not shown]")
                text = text[:MAX_TEXT_CHARS]
            return "\n".join([f"{url}\n", text, *notes])
        raise ToolError(f"more than {MAX_REDIRECTS} redirects")

    async def _read(self, response: httpx.Response) -> tuple[bytes, bool]:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size > self.max_bytes:
                return b"".join(chunks)[: self.max_bytes], True
        return b"".join(chunks), False


def web_tools(
    fetcher: WebFetcher, client: OpenRouterClient, search_model: str
) -> list[FunctionTool]:
    async def webfetch(ctx: ToolContext, url: str) -> str:
        """Fetch a public web page (http or https) and return its text.

        Args:
            url: the address, e.g. "https://example.com/docs".
        """
        return await fetcher.fetch(url)

    async def websearch(ctx: ToolContext, query: str) -> str:
        """Search the web and return what was found, with the sources' URLs.

        Args:
            query: what to look for.
        """
        request = ChatRequest(
            models=[to_api_id(search_model)],
            messages=[
                {
                    "role": "user",
                    "content": "Report what the web search results say about this, "
                    f"citing each source's URL: {query}",
                }
            ],
            plugins=[{"id": "web"}],
            prompt_caching=False,
        )
        try:
            completion = await client.complete(request)
        except OpenRouterError as error:
            raise ToolError(f"the web search failed: {error.user_message}") from None
        return completion.text or "the search found nothing"

    def host_of(arguments: dict[str, object]) -> str:
        return urlsplit(str(arguments["url"])).hostname or short(str(arguments["url"]))

    return [
        FunctionTool(webfetch, activity=lambda a: f"Fetching {host_of(a)}"),
        FunctionTool(websearch, activity=lambda a: f"Searching the web for {short(a['query'])}"),
    ]
