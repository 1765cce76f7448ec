"""Reading the start of a connection, before amqtt does (patches 1 and 12 in :mod:`.patches`).

amqtt reads a packet's body with one ``read(n)`` and buffers it whole, any size, and parses
every CONNECT as MQTT 3.1.1. :class:`LimitedReader` refuses a body over the limit before it is
read; :func:`checked_connect_start` reads a CONNECT whole (under the limit) and refuses any protocol
level but 4 (an MQTT 5 CONNECT with properties would otherwise leave amqtt waiting for bytes).
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, cast

from amqtt.adapters import ReaderAdapter, WebSocketsReader
from amqtt.errors import NoDataError


class PacketTooLarge(Exception):
    """Raised by the limited reader; amqtt's reader loop ends the connection on it."""


class LimitedReader(ReaderAdapter):
    """amqtt reads a packet's body with one ``read(n)``: refuse n over the limit before reading."""

    def __init__(self, inner: ReaderAdapter, limit: int) -> None:
        self._inner = inner
        self._limit = limit
        self.websocket = isinstance(inner, WebSocketsReader)  # anonymous CONNECTs are refused there

    def read(self, n: int = -1) -> Coroutine[Any, Any, bytes]:
        # A plain function handing back the inner read: no coroutine frame of its own on every
        # read of every packet (amqtt awaits the result; the error is raised at the same place).
        if n > self._limit:
            raise PacketTooLarge(f"packet over max_packet_size ({n} > {self._limit} bytes)")
        reading: Coroutine[Any, Any, bytes] = self._inner.read(n)  # typed here: amqtt is untyped
        return reading

    def feed_eof(self) -> None:
        self._inner.feed_eof()


class _ReplayReader(ReaderAdapter):
    """Serves bytes already read (the start of a CONNECT) before reading on."""

    def __init__(self, head: bytes, inner: ReaderAdapter) -> None:
        self._head = head
        self._inner = inner

    def read(self, n: int = -1) -> Coroutine[Any, Any, bytes]:
        if not self._head:
            # the head replayed: straight to the socket (see LimitedReader)
            reading: Coroutine[Any, Any, bytes] = self._inner.read(n)
            return reading
        return self._read_head(n)

    async def _read_head(self, n: int) -> bytes:
        if n < 0:
            head, self._head = self._head, b""
            return head + cast(bytes, await self._inner.read(n))
        head, self._head = self._head[:n], self._head[n:]
        return head + (cast(bytes, await self._inner.read(n - len(head))) if n > len(head) else b"")

    def feed_eof(self) -> None:
        self._inner.feed_eof()


class UnsupportedProtocol(Exception):
    def __init__(self, level: int) -> None:
        name = "MQTT 5" if level == 5 else f"MQTT protocol level {level}"
        super().__init__(f"{name}: this broker speaks MQTT 3.1.1 only (CONNACK 0x01 sent)")


async def _read_exactly(reader: ReaderAdapter, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = await reader.read(n - len(data))
        if not chunk:
            raise NoDataError("connection closed during CONNECT")
        data += chunk
    return data


async def checked_connect_start(reader: ReaderAdapter) -> ReaderAdapter:
    """Read a CONNECT whole; raise UnsupportedProtocol for a protocol level other than 4; else hand
    amqtt a reader that replays it.

    Three reads in the usual case (two bytes, the rest of the fixed header's length, the body in
    one read under the packet-size limit), straight from the socket's adapter: amqtt then parses
    the CONNECT from memory. Every read here is on the CONNECT path of every client."""
    source = reader._inner if isinstance(reader, LimitedReader) else reader  # noqa: SLF001  (<= 5 bytes: no limit)
    head = await _read_exactly(source, 2)  # every MQTT packet starts with at least these two
    if head[0] >> 4 != 1:
        return _ReplayReader(head, reader)  # not a CONNECT: amqtt refuses it its own way
    remaining, shift = 0, 0
    for i in range(1, 5):
        if i == len(head):
            head += await _read_exactly(source, 1)
        remaining |= (head[i] & 0x7F) << shift
        shift += 7
        if not head[i] & 0x80:
            break
    if remaining < 7:
        return _ReplayReader(head, reader)
    body = await _read_exactly(reader, remaining)  # through the limit: PacketTooLarge before a byte is read
    length = int.from_bytes(body[:2], "big")  # MQTT 3.1.1: b"MQTT" (4); MQTT 3.1: b"MQIsdp" (6)
    if length <= 6 and remaining >= 2 + length + 1:
        name, level = body[2 : 2 + length], body[2 + length]
        if name == b"MQTT" and level != 4:
            raise UnsupportedProtocol(level)
    return _ReplayReader(head + body, reader)
