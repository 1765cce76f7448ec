"""A minimal HTTP/1.1 keep-alive client on raw asyncio sockets, for load generation.

Why not httpx: measured on the benchmark machine, an ``httpx.AsyncClient`` spends
4-14 ms of CPU per request (more with more concurrent connections in its pool),
against about 1 ms for the whole server-side stack. A benchmark driven by httpx
measures httpx. This client costs tens of microseconds per request, so the server
is what saturates. It speaks just what our servers answer: ``Content-Length``
bodies, no chunking, no redirects, no TLS. (httpx is still used for setup calls.)
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlsplit


class HttpError(Exception):
    pass


class Response:
    __slots__ = ("body", "status")

    def __init__(self, status: int, body: bytes) -> None:
        self.status, self.body = status, body

    def json(self) -> Any:
        return json.loads(self.body)

    def error_code(self) -> str:
        """The ``{"error": {"code"}}`` of our servers' error answers, else the HTTP status."""
        try:
            return str(self.json()["error"]["code"])
        except (ValueError, KeyError, TypeError):
            return f"HTTP {self.status}"


class Connection:
    """One persistent connection; one request at a time (as each simulated instance does)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None or self._writer.is_closing():
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self._reader, self._writer

    async def request(
        self, method: str, path: str, body: Any = None, *, headers: str = "", timeout: float = 60.0
    ) -> Response:
        payload = b"" if body is None else json.dumps(body).encode()
        data = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{headers}"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        ).encode() + payload
        reused = self._writer is not None
        try:
            return await self._exchange(data, timeout)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            # The server closes idle keep-alive connections (uvicorn: after 5 s). A request
            # that met a closed reused connection got no answer at all: send it again once.
            if not reused or (isinstance(exc, asyncio.IncompleteReadError) and exc.partial):
                raise
            return await self._exchange(data, timeout)

    async def _exchange(self, data: bytes, timeout: float) -> Response:
        reader, writer = await self._open()
        writer.write(data)
        try:
            return await asyncio.wait_for(self._read(reader), timeout)
        except BaseException:
            await self.close()  # a half-read answer must not be mistaken for the next one
            raise

    async def _read(self, reader: asyncio.StreamReader) -> Response:
        header = await reader.readuntil(b"\r\n\r\n")
        lines = header.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = None
        close = False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.strip().lower() == "close":
                close = True
            elif name == "transfer-encoding":
                raise HttpError("chunked answers are not supported by this load generator")
        if length is None:
            raise HttpError("an answer without Content-Length")
        body = await reader.readexactly(length)
        if close:
            await self.close()
        return Response(status, body)

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 5)
            except (OSError, TimeoutError):
                pass


class Pool:
    """``size`` connections to ``base_url``: worker n always uses connection n."""

    def __init__(self, base_url: str, size: int, *, token: str | None = None) -> None:
        parts = urlsplit(base_url)
        self.connections = [Connection(parts.hostname or "127.0.0.1", parts.port or 80) for _ in range(size)]
        self.headers = f"Authorization: Bearer {token}\r\n" if token else ""

    def __getitem__(self, n: int) -> Connection:
        return self.connections[n]

    async def request(self, n: int, method: str, path: str, body: Any = None) -> Response:
        return await self.connections[n].request(method, path, body, headers=self.headers)

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.connections))

    async def __aenter__(self) -> Pool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
