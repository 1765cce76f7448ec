"""The Starlette app behind ``http_bind``: the License page's files, its small
``/page-config.json`` (where the browser finds the MQTT-over-WebSocket listener and
the store; no license data), and ``/healthz``.

Other endpoints of the same listener (the agent's ``/metrics`` and ``/healthz``,
mqtt_licensing/agent/metrics.py) are passed in as ``routes``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from ..core.features import CATALOGUE

# The page holds credentials in memory only; these headers keep it from being framed,
# cached by proxies or talking to anything but this host and the broker's WebSocket.
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
        "style-src 'self'; script-src 'self'; worker-src 'self' blob:; "  # MQTT.js runs its timers in a worker
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


@dataclass(frozen=True)
class PageConfig:
    """What the page needs to know that is not license data."""

    # A full ws:// or wss:// URL, when browsers reach the broker's WebSocket listener
    # some other way than this host (a proxy); otherwise ws_port on the page's own host.
    ws_url: str | None = None
    ws_port: int | None = None
    ws_tls: bool = False
    # The store's upgrade page (e.g. https://vendor.example/shop/upgrade); the page's Upgrade
    # button opens it with ?license=<license id>.
    store_url: str | None = None

    def problems(self) -> list[str]:
        """Configuration mistakes that leave the page unable to reach the broker, one line each."""
        if self.ws_url is not None and not self.ws_url.startswith(("ws://", "wss://")):
            return [f"ws_url must start with ws:// or wss:// (not {self.ws_url!r})"]
        if self.ws_url is None and self.ws_port is None:
            return ["the broker has no `ws` listener (type: ws) and no ws_url is set: add one to `listeners`"]
        return []

    def to_json(self) -> dict[str, Any]:
        return {
            "ws_url": self.ws_url,
            "ws_port": self.ws_port,
            "ws_tls": self.ws_tls,
            "ws_path": "/mqtt",
            "store_url": self.store_url,
            "features": [{"name": f.name, "title": f.title} for f in CATALOGUE.values()],
        }


class _SecureHeaders:
    """ASGI middleware adding :data:`SECURITY_HEADERS` to every response."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items() if k.encode() not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _healthz(_request: Request) -> Response:
    return PlainTextResponse("ok\n")


async def _page_config(request: Request) -> Response:
    page: PageConfig = request.app.state.page
    return JSONResponse(page.to_json())


def create_app(page: PageConfig | None, *, routes: Sequence[BaseRoute] = ()) -> Any:
    """The listener's ASGI app: ``routes`` first (the agent's ``/metrics`` and its ``/healthz``
    replace the plain one here), then the License page unless ``page`` is None."""
    own: list[BaseRoute] = [Route("/healthz", _healthz)]
    if page is not None:
        static = resources.files(__package__) / "static"
        own += [
            Route("/page-config.json", _page_config),
            Mount("/", app=StaticFiles(directory=str(static), html=True), name="static"),
        ]
    app = Starlette(routes=[*routes, *own])
    app.state.page = page
    return _SecureHeaders(app)
