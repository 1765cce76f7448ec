"""Running a server app: in the foreground (the CLI) or on a background thread (tests, the demo,
the benchmarks)."""

from __future__ import annotations

import asyncio
import random
import socket
import ssl
import threading
from typing import Any

import uvicorn
from starlette.applications import Starlette

from ..core.errors import ErrorCode, LicensingError

# Below Linux's default ephemeral range (32768-60999): a port bind(0) hands out is from that range,
# where any outgoing connection may take it between this pick and the caller's own bind (seen with
# six test workers opening thousands of connections).
_PICK_FROM, _PICK_TO = 20000, 32767


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing is bound to now, for a server started next on ``host``."""
    for _ in range(100):
        port = random.randint(_PICK_FROM, _PICK_TO)
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # that range is full: whatever the kernel has
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _listen(host: str, port: int) -> socket.socket:
    """The server's socket, bound here rather than by uvicorn: with ``port`` 0 a free port is picked
    and held in one step, so no other process can take it between the pick and the bind (two test
    workers once picked the same port)."""
    for _ in range(100):
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a restart finds TIME_WAIT
        try:
            sock.bind((host, port or free_port(host)))
        except OSError:
            sock.close()
            if port:
                raise
            continue
        sock.set_inheritable(True)
        return sock
    raise OSError(f"no free port on {host}")


def tls_options(cert: str | None, key: str | None) -> dict[str, Any]:
    """uvicorn's HTTPS options; a certificate without its key (or one that does not load) is a
    one-line error naming the fix."""
    if not cert and not key:
        return {}
    if not cert or not key:
        raise LicensingError(ErrorCode.BAD_REQUEST, "HTTPS needs both --tls-cert and --tls-key")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
        raise LicensingError(
            ErrorCode.BAD_REQUEST, f"cannot load the TLS certificate {cert} with key {key}: {reason}"
        ) from None
    return {"ssl_certfile": cert, "ssl_keyfile": key}


def serve_forever(
    app: Starlette, host: str, port: int, *, tls_cert: str | None = None, tls_key: str | None = None
) -> None:
    # http/loop "auto": httptools and uvloop (dependencies) when importable: the C HTTP parser
    # and event loop, a large share of a request's CPU here (docs/benchmarks.md).
    # proxy_headers off: X-Forwarded-For is honoured only from --trusted-proxies (see _proxies.py)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        **tls_options(tls_cert, tls_key),
    )


class ServerThread:
    """Run an ASGI app with uvicorn on a background thread: a real server on a real socket.

    ``with ServerThread(app) as url: ...``
    """

    def __init__(
        self,
        app: Starlette,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tls_cert: str | None = None,
        tls_key: str | None = None,
    ) -> None:
        self.host = host
        self._socket = _listen(host, port)
        self.port = int(self._socket.getsockname()[1])
        self.scheme = "https" if tls_cert else "http"
        config = uvicorn.Config(
            app,
            host=host,
            port=self.port,
            log_level="warning",
            access_log=False,
            lifespan="on",
            proxy_headers=False,
            **tls_options(tls_cert, tls_key),
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name=f"uvicorn:{self.port}", daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self._socket]))

    def start(self) -> str:
        self._thread.start()
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"server on port {self.port} failed to start")
            threading.Event().wait(0.01)
        return self.url

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()  # never served (stopped before start): the port is given back all the same

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


__all__ = ["ServerThread", "free_port", "serve_forever", "tls_options"]
