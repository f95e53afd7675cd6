"""textual-serve's Server behind `Access`: every request needs the token and this server's own Host and
Origin, or it gets 403 before any handler runs (a refused websocket never starts a console), and the page is
the package's template, which loads only from this server.

textual-serve is subclassed, not forked: its app is built by `_make_app` (the guard joins its middlewares), its
index handler is replaced (URLs from the Host the browser used, so `localhost` works as well as 127.0.0.1),
its startup banner is dropped (serve-web prints the URL with the token) and aiohttp's access log, whose
request lines carry the token, is silenced.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import aiohttp_jinja2
from aiohttp import hdrs, web
from textual_serve.server import Server, to_int

from console.web.access import TOKEN_PARAM, Access

TEMPLATES = Path(__file__).parent / "templates"
DEFAULT_FONT_SIZE = 16
log = logging.getLogger("gb10-console.web")


class GuardedServer(Server):
    """A textual-serve Server that answers only requests from its own page carrying its token."""

    def __init__(self, command: str, access: Access, title: str) -> None:
        super().__init__(command, host=access.host, port=access.port, title=title, public_url=access.base_url,
                         templates_path=TEMPLATES)  # fmt: skip
        self.access = access

    def initialize_logging(self) -> None:
        """textual-serve's logging, without aiohttp's access log (its lines would show the token)."""
        super().initialize_logging()
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)

    async def _make_app(self) -> web.Application:
        app = await super()._make_app()
        app.middlewares.append(self.guard)
        return app

    async def on_startup(self, app: web.Application) -> None:
        """Print nothing: serve-web's banner gave the URL with its token, textual-serve's would lack it."""

    @web.middleware
    async def guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """403 with the reason unless `Access` lets the request in; the first page load sets the token cookie
        (HttpOnly, SameSite=Strict) so the page's own static files and websocket need no token in their URL."""
        offered = request.query.get(TOKEN_PARAM, request.cookies.get(self.access.cookie_name))
        websocket = request.headers.get(hdrs.UPGRADE, "").lower() == "websocket"
        reason = self.access.refusal(request.host, request.headers.get(hdrs.ORIGIN), websocket, offered)
        if reason is not None:
            log.warning("refused %s %s: %s", request.method, request.path, reason)
            raise web.HTTPForbidden(text=f"forbidden: {reason}\n")
        response = await handler(request)
        if TOKEN_PARAM in request.query and not response.prepared:
            response.set_cookie(self.access.cookie_name, self.access.token, httponly=True, samesite="Strict")
        return response

    @aiohttp_jinja2.template("app_index.html")
    async def handle_index(self, request: web.Request) -> dict[str, Any]:
        """The page's template values, its URLs on the Host the browser used (one of ours: the guard checked)."""
        return {
            "font_size": to_int(request.query.get("fontsize", str(DEFAULT_FONT_SIZE)), DEFAULT_FONT_SIZE),
            "app_websocket_url": f"ws://{request.host}/ws",
            "config": {"static": {"url": f"http://{request.host}/static/"}},
            "application": {"name": self.title},
        }
