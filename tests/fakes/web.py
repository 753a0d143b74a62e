"""A small web site on 127.0.0.1 for the webfetch tests: pages, redirects, big and binary
bodies. It records every request, so a test can show that nothing reached it."""

from __future__ import annotations

import ssl

from aiohttp import web

PAGE = """<!doctype html><html><head><title>Build status</title>
<style>body { color: red }</style><script>alert("no")</script></head>
<body><h1>Build 42</h1><p>All <b>green</b> except:</p>
<ul><li>lint: 2 warnings</li><li>docs: broken link</li></ul></body></html>"""


class FakeSite:
    def __init__(self) -> None:
        self.paths: list[str] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> str:
        app = web.Application()
        app.router.add_get("/page", self._page)
        app.router.add_get("/redirect", self._redirect)
        app.router.add_get("/loop/{n}", self._loop)
        app.router.add_get("/big", self._big)
        app.router.add_get("/image", self._image)
        app.router.add_get("/text", self._text)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        scheme = "https" if ssl_context else "http"
        self.url = f"{scheme}://127.0.0.1:{self._runner.addresses[0][1]}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _seen(self, request: web.Request) -> None:
        self.paths.append(request.path_qs)

    async def _page(self, request: web.Request) -> web.Response:
        self._seen(request)
        return web.Response(text=PAGE, content_type="text/html")

    async def _text(self, request: web.Request) -> web.Response:
        self._seen(request)
        host = request.headers.get("Host", "")
        return web.Response(text=f"plain text for {host}", content_type="text/plain")

    async def _redirect(self, request: web.Request) -> web.Response:
        self._seen(request)
        raise web.HTTPFound(request.query["to"])

    async def _loop(self, request: web.Request) -> web.Response:
        self._seen(request)
        raise web.HTTPFound(f"/loop/{int(request.match_info['n']) + 1}")

    async def _big(self, request: web.Request) -> web.StreamResponse:
        self._seen(request)
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        line = b"x" * 1023 + b"\n"
        for _ in range(6 * 1024):  # 6 MB
            await response.write(line)
        return response

    async def _image(self, request: web.Request) -> web.Response:
        self._seen(request)
        return web.Response(body=b"\x89PNG\r\n", content_type="image/png")
