"""Run the HTTP listener inside the broker's running event loop.

uvicorn serves on a socket bound here first, so a bad ``http_bind`` or a port in use
is one line (:class:`LicensingError`) instead of uvicorn's ``sys.exit``; and uvicorn
does not take the process's signals, which belong to the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator, Sequence
from typing import Any

import uvicorn
from starlette.routing import BaseRoute

from ..core.errors import ErrorCode, LicensingError
from .app import PageConfig, create_app

log = logging.getLogger(__name__)


def parse_bind(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6) -> (host, port); one-line error naming the fix."""
    host, sep, port_text = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise LicensingError(ErrorCode.INVALID_FIELD, f"http_bind must be HOST:PORT, e.g. 0.0.0.0:8080 (not {text!r})")
    return host, int(port_text)


class _BrokerOwnedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # SIGINT/SIGTERM stop the broker, which stops this server


class HttpListener:
    """One uvicorn server on ``bind`` as a task of the current loop: ``await start()`` / ``await stop()``."""

    def __init__(self, app: Any, bind: str) -> None:
        self.app = app
        self.host, self.port = parse_bind(bind)
        self._server: _BrokerOwnedServer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        sock = self._bind()
        self.port = sock.getsockname()[1]
        # log_config=None: the broker's logging setup stays as it is.
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        server = _BrokerOwnedServer(config)
        task = asyncio.create_task(server.serve(sockets=[sock]), name=f"http-listener-{self.port}")
        while not server.started:
            if task.done():
                sock.close()
                raise LicensingError(ErrorCode.INTERNAL_ERROR, f"the HTTP listener on {self.url} stopped at start")
            await asyncio.sleep(0.01)
        self._server, self._task = server, task
        log.info("License page on %s", self.url)

    def _bind(self) -> socket.socket:
        try:
            infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            family, _, _, _, address = infos[0]
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError as exc:
            raise LicensingError(ErrorCode.INVALID_FIELD, f"http_bind {self.host}:{self.port}: {exc}") from None
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(128)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise LicensingError(
                ErrorCode.INVALID_FIELD,
                f"http_bind {self.host}:{self.port} cannot be used ({exc.strerror or exc}): choose another port",
            ) from None
        return sock

    async def stop(self) -> None:
        server, task = self._server, self._task
        self._server = self._task = None
        if server is None or task is None:
            return
        server.should_exit = True
        await task


async def start_http(bind: str, page: PageConfig | None, *, routes: Sequence[BaseRoute] = ()) -> HttpListener | None:
    """Start the listener, or log one line and return None: an HTTP listener that cannot
    start must not keep the broker from serving MQTT. A page that could not reach the
    broker (no ``ws`` listener, a bad ``ws_url``) is left out, with one line; ``routes``
    are served all the same."""
    for problem in page.problems() if page is not None else []:
        log.error("License page not served: %s", problem)
        page = None
    try:
        listener = HttpListener(create_app(page, routes=routes), bind)
        await listener.start()
    except LicensingError as exc:
        log.error("HTTP listener not started (License page, /metrics): %s", exc.message)
        return None
    return listener
