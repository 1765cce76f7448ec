"""Which browser pages may open MQTT-over-WebSocket connections to the broker.

A browser lets any page it shows open a WebSocket to any address and sends that page's
``Origin`` with the handshake; it is the only thing telling the broker which site is asking.
Allowed: no Origin at all (not a browser: mosquitto, MQTT.js under Node), the listener's own
address (paho sends that; only the broker answers there, so no page has it), the License
page's own origin (the page connects to the ``ws`` listener on the host it was loaded from, so
the Origin's host equals the handshake's ``Host`` and its port is ``http_bind``'s), any origin
on ``ws_url``'s host, and the origins listed in ``ws_origins`` (``*``: any).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import websockets
import websockets.asyncio.server
from amqtt.broker import Broker
from amqtt.contexts import ListenerType
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

log = logging.getLogger(__name__)


def _host_port(netloc: str) -> tuple[str, int | None]:
    try:
        parts = urlsplit(f"//{netloc}")
        return (parts.hostname or "").lower(), parts.port
    except ValueError:
        return "", None


@dataclass(frozen=True)
class OriginPolicy:
    page_port: int | None  # http_bind's port: the License page
    ws_url_host: str | None
    extra: frozenset[str]

    @classmethod
    def build(cls, http_bind: str | None, ws_url: str | None, origins: list[str]) -> OriginPolicy:
        port = (http_bind or "").rpartition(":")[2]
        ws_host = urlsplit(ws_url).hostname if ws_url else None
        return cls(
            int(port) if port.isdigit() else None,
            ws_host.lower() if ws_host else None,
            frozenset(o.strip().rstrip("/").lower() for o in origins),
        )

    def allows(self, origin: str | None, host_header: str | None) -> bool:
        if origin is None:
            return True
        origin = origin.strip().rstrip("/").lower()
        if "*" in self.extra or origin in self.extra:
            return True
        try:
            parts = urlsplit(origin)
            scheme, host, port = parts.scheme, (parts.hostname or ""), parts.port
        except ValueError:
            return False
        if scheme not in ("http", "https") or not host:
            return False
        if self.ws_url_host is not None and host == self.ws_url_host:
            return True
        request_host, request_port = _host_port(host_header or "")
        port = port or (443 if scheme == "https" else 80)
        if host == request_host and port == (request_port or port):
            return True  # the WebSocket's own address (what paho sends): no page is served there
        return self.page_port is not None and host == request_host and port == self.page_port


class WebSocketOrigins:
    """Patch 13 of :mod:`.patches`: amqtt's ``ws`` listener, with the Origin checked at the handshake."""

    def __init__(self, broker: Broker, policy: OriginPolicy) -> None:
        self._broker = broker
        self._policy = policy

    def install(self) -> None:
        self._orig_create_server = self._broker._create_server_instance  # noqa: SLF001
        self._broker._create_server_instance = self._create_server_instance  # noqa: SLF001

    async def _create_server_instance(
        self, listener_name: str, listener_type: ListenerType, address: str | None, port: int, ssl_context: Any
    ) -> Any:
        if listener_type != ListenerType.WS:
            return await self._orig_create_server(listener_name, listener_type, address, port, ssl_context)
        # amqtt's own call (broker.py, _create_server_instance), plus the Origin check
        return await websockets.asyncio.server.serve(
            functools.partial(self._broker.ws_connected, listener_name=listener_name),
            address,
            port,
            ssl=ssl_context,
            subprotocols=[websockets.Subprotocol("mqtt")],
            process_request=self._check_origin,
        )

    def _check_origin(self, connection: ServerConnection, request: Request) -> Response | None:
        origin, host = request.headers.get("Origin"), request.headers.get("Host")
        if self._policy.allows(origin, host):
            return None
        log.warning(
            "refused a WebSocket from %s: Origin %r is not allowed (ws_origins)", connection.remote_address, origin
        )
        return connection.respond(HTTPStatus.FORBIDDEN, "Origin not allowed on this broker (ws_origins)\n")
