"""Reading the start of a connection, before amqtt does (patches 1, 2 and 12 in :mod:`.patches`).

amqtt reads a packet's body with one ``read(n)`` and buffers it whole, any size, and parses
every CONNECT as MQTT 3.1.1. :class:`LimitedReader` refuses a body over the limit before it is
read; :func:`checked_connect_start` reads a CONNECT whole (under the limit) and refuses any protocol
level but 4 (an MQTT 5 CONNECT with properties would otherwise leave amqtt waiting for bytes).
:class:`ConnectDeadlines` ends the reading of a CONNECT that takes longer than ``connect_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any, cast

from amqtt.adapters import ReaderAdapter, WebSocketsReader, WriterAdapter
from amqtt.errors import AMQTTError, MQTTError, NoDataError
from amqtt.mqtt.connack import UNACCEPTABLE_PROTOCOL_VERSION, ConnackPacket

log = logging.getLogger(__name__)


class PacketTooLarge(Exception):
    """Raised by the limited reader; amqtt's reader loop ends the connection on it."""


class LimitedReader(ReaderAdapter):
    """amqtt reads a packet's body with one ``read(n)``: refuse n over the limit before reading."""

    def __init__(self, inner: ReaderAdapter, limit: int) -> None:
        self._inner = inner
        self._limit = limit
        # Anonymous CONNECTs are refused over WebSocket unless allowed. The exact type, which amqtt's
        # ws_connected builds (its source is pinned by the canary test): isinstance against an ABC
        # is a Python-level check, on every CONNECT.
        self.websocket = type(inner) is WebSocketsReader

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


class _ConnectBytes(ReaderAdapter):
    """A CONNECT read whole, parsed by amqtt from memory: one short call per field it reads. A
    field running past the packet's end reads short, which amqtt takes as that field missing,
    never as a wait for bytes of the next packet."""

    def __init__(self, packet: bytes) -> None:
        self._packet = packet
        self._at = 0

    async def read(self, n: int = -1) -> bytes:
        start = self._at
        self._at = end = len(self._packet) if n < 0 else start + n
        return self._packet[start:end]

    def feed_eof(self) -> None:
        pass


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

    Two reads in the usual case (the fixed header's first two bytes, then the body in one read
    under the packet-size limit), straight from the socket's adapter: amqtt then parses the
    CONNECT from memory. Every read here is on the CONNECT path of every client."""
    # (<= 5 bytes, no limit needed); type(), not isinstance(): an ABC's check is a Python call
    source = reader._inner if type(reader) is LimitedReader else reader  # noqa: SLF001
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
    return _ConnectBytes(head + body)


async def refuse(writer: WriterAdapter, code: int | None) -> None:
    """Answer CONNACK ``code`` (None: no answer) and close the socket; one already gone is no error."""
    if code is not None:
        with contextlib.suppress(OSError, AMQTTError):
            await ConnackPacket.build(0, code).to_stream(writer)
    with contextlib.suppress(OSError, AMQTTError, RuntimeError):
        await writer.close()


async def close_unread(exc: BaseException, writer: WriterAdapter, peer: tuple[str, int], *, missed: float) -> None:
    """A CONNECT not read: answered if it was of another MQTT version, and closed; raises AMQTTError
    naming why. ``missed``: the deadline it missed (0: it did not). Returns for any other error."""
    if isinstance(exc, UnsupportedProtocol):
        await refuse(writer, UNACCEPTABLE_PROTOCOL_VERSION)
        raise AMQTTError(f"refused CONNECT from {peer[0]}:{peer[1]}: {exc}") from None
    # EOFError: asyncio's IncompleteReadError, a socket closed in the middle of its CONNECT
    if missed or isinstance(exc, (OSError, EOFError, AMQTTError, MQTTError, NoDataError, PacketTooLarge)):
        reason = f"no CONNECT within {missed:g} s" if missed else str(exc)
        log.info("closed %s:%s before CONNECT completed: %s", *peer, reason)
        await refuse(writer, None)
        raise AMQTTError(reason) from None


class ConnectDeadlines:
    """One timer for every socket still sending its CONNECT, instead of one timer each.

    ``asyncio.timeout`` per CONNECT schedules and cancels a timer handle in the loop's heap on
    every connection (about ten Python calls on the broker's hottest path). Here a CONNECT costs
    two dict operations: :meth:`watch` notes the reading task with the current tick, :meth:`finish`
    drops it. While any task is watched, a timer ticks every ``timeout / TICKS`` seconds and
    cancels the tasks noted more than ``TICKS`` ticks ago: a CONNECT is ended after more than
    ``timeout`` seconds and at most ``timeout / TICKS`` later (never earlier). The task learns it
    was this sweeper that cancelled it from :meth:`finish` (anything else cancelling it, such as
    the broker's shutdown, stays a cancellation)."""

    TICKS = 10

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._period = timeout / self.TICKS
        self._tick = 0
        self._watched: dict[asyncio.Task[Any], int] = {}  # reading task -> tick when it started
        self._expired: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, task: asyncio.Task[Any]) -> None:
        self._watched[task] = self._tick
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._period, self._sweep)

    def finish(self, task: asyncio.Task[Any]) -> bool:
        """The CONNECT was read, or failed: no deadline cancels ``task`` after this. True when its
        deadline did (that cancellation is taken back) and nothing else cancelled it too."""
        if self._watched.pop(task, -1) >= 0:
            return False
        self._expired.discard(task)
        return task.uncancel() == 0

    def _sweep(self) -> None:
        self._tick += 1
        late = [task for task, tick in self._watched.items() if self._tick - tick > self.TICKS]
        for task in late:
            del self._watched[task]
            self._expired.add(task)
            task.cancel()
        self._timer = asyncio.get_running_loop().call_later(self._period, self._sweep) if self._watched else None
