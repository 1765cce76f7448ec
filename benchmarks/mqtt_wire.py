"""Just enough MQTT 3.1.1 on raw asyncio sockets to load a broker.

Why not paho: a load generator must be cheaper than the broker it loads, must not
add threads that compete with the broker for the two cores of a small machine,
and must let one event loop drive hundreds of connections. Hand-built packets
cost a few microseconds each; amqtt spends about a millisecond per CONNECT.

Only what the benchmarks need: CONNECT/CONNACK, SUBSCRIBE/SUBACK, PUBLISH with
QoS 0 and 1 (and its PUBACK), DISCONNECT. No QoS 2, no will, no TLS.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK, DISCONNECT = 1, 2, 3, 4, 8, 9, 14
DISCONNECT_PACKET = b"\xe0\x00"


class ProtocolError(Exception):
    """The broker answered something a well-behaved MQTT 3.1.1 broker would not."""


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("!H", len(raw)) + raw


def connect_packet(
    client_id: str,
    *,
    username: str | None = None,
    password: str | None = None,
    keepalive: int = 0,
    clean_session: bool = True,
) -> bytes:
    """keepalive 0 = no PINGREQ needed: idle benchmark clients stay silent."""
    flags = (
        (0x02 if clean_session else 0) | (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    )
    body = _string("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive) + _string(client_id)
    if username is not None:
        body += _string(username)
    if password is not None:
        body += _string(password)
    return bytes([CONNECT << 4]) + _remaining_length(len(body)) + body


def publish_packet(topic: str, payload: bytes, *, qos: int = 0, packet_id: int = 0) -> bytes:
    body = _string(topic) + (struct.pack("!H", packet_id) if qos else b"") + payload
    return bytes([(PUBLISH << 4) | (qos << 1)]) + _remaining_length(len(body)) + body


def subscribe_packet(packet_id: int, topic_filter: str, qos: int) -> bytes:
    body = struct.pack("!H", packet_id) + _string(topic_filter) + bytes([qos])
    return bytes([(SUBSCRIBE << 4) | 0x02]) + _remaining_length(len(body)) + body


def puback_packet(packet_id: int) -> bytes:
    return struct.pack("!BBH", PUBACK << 4, 2, packet_id)


class PacketReader:
    """Splits a byte stream into (type, flags, body); reads in large chunks to keep per-packet cost low."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader
        self._buf = bytearray()

    def _take(self) -> tuple[int, int, bytes] | None:
        buf = self._buf
        if len(buf) < 2:
            return None
        length, multiplier, pos = 0, 1, 1
        while True:
            if pos >= len(buf):
                return None
            byte = buf[pos]
            length += (byte & 0x7F) * multiplier
            multiplier *= 128
            pos += 1
            if not byte & 0x80:
                break
            if pos > 4:
                raise ProtocolError("malformed remaining length")
        if len(buf) < pos + length:
            return None
        header = buf[0]
        body = bytes(buf[pos : pos + length])
        del buf[: pos + length]
        return header >> 4, header & 0x0F, body

    async def next(self) -> tuple[int, int, bytes]:
        """The next packet; EOFError when the broker closed the connection."""
        while True:
            packet = self._take()
            if packet is not None:
                return packet
            chunk = await self._reader.read(65536)
            if not chunk:
                raise EOFError("connection closed by the broker")
            self._buf += chunk


def parse_publish(flags: int, body: bytes) -> tuple[str, bytes, int, int]:
    """-> (topic, payload, qos, packet_id)."""
    (topic_len,) = struct.unpack_from("!H", body)
    topic = body[2 : 2 + topic_len].decode()
    pos = 2 + topic_len
    qos = (flags >> 1) & 0x03
    packet_id = 0
    if qos:
        (packet_id,) = struct.unpack_from("!H", body, pos)
        pos += 2
    return topic, body[pos:], qos, packet_id


class Connection:
    """One MQTT connection. After :meth:`open`, call :meth:`run` (as a task) to dispatch incoming packets.

    Incoming QoS 1 PUBLISHes are acknowledged automatically, as any subscriber would.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = PacketReader(reader)
        self.writer = writer
        self.on_message: Callable[[str, bytes], None] = lambda _t, _p: None
        self.on_puback: Callable[[int], None] = lambda _pid: None
        self._suback: asyncio.Future[int] | None = None

    @classmethod
    async def open(
        cls,
        port: int,
        client_id: str,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
    ) -> Connection:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
        conn = cls(reader, writer)
        writer.write(connect_packet(client_id, username=username, password=password))
        kind, _flags, body = await asyncio.wait_for(conn.reader.next(), timeout)
        if kind != CONNACK or len(body) != 2:
            raise ProtocolError(f"expected CONNACK, got packet type {kind}")
        if body[1] != 0:
            writer.close()
            raise ProtocolError(f"CONNECT refused with return code {body[1]}")
        return conn

    async def subscribe(self, topic_filter: str, qos: int, timeout: float = 10.0) -> None:
        """Needs :meth:`run` to be running (it delivers the SUBACK)."""
        self._suback = asyncio.get_running_loop().create_future()
        self.writer.write(subscribe_packet(1, topic_filter, qos))
        granted = await asyncio.wait_for(self._suback, timeout)
        if granted == 0x80:
            raise ProtocolError(f"subscription to {topic_filter!r} refused")

    def publish(self, topic: str, payload: bytes, qos: int = 0, packet_id: int = 0) -> None:
        self.writer.write(publish_packet(topic, payload, qos=qos, packet_id=packet_id))

    async def run(self) -> None:
        """Dispatch packets until the connection ends (EOF or cancellation)."""
        with _quiet_eof():
            while True:
                kind, flags, body = await self.reader.next()
                if kind == PUBLISH:
                    topic, payload, qos, packet_id = parse_publish(flags, body)
                    if qos == 1:
                        self.writer.write(puback_packet(packet_id))
                    self.on_message(topic, payload)
                elif kind == PUBACK:
                    self.on_puback(struct.unpack("!H", body)[0])
                elif kind == SUBACK and self._suback is not None and not self._suback.done():
                    self._suback.set_result(body[-1])

    async def close(self) -> None:
        try:
            self.writer.write(DISCONNECT_PACKET)
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), 5)
        except (OSError, TimeoutError):
            pass


class _quiet_eof:
    """A closed connection ends :meth:`Connection.run` quietly."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> bool:
        return exc_type is not None and issubclass(exc_type, (EOFError, ConnectionError))


async def connect_cycle(
    port: int, client_id: str, timeout: float = 10.0, *, login: tuple[str, str] | None = None
) -> int:
    """One CONNECT -> CONNACK -> DISCONNECT cycle, ended when the broker has closed the socket.

    Waiting for the broker's close makes the cycle complete on both sides: the broker
    has processed the disconnect (and the agent released the connection) before the
    same worker connects again. Returns the CONNACK return code. ``login``: (username, password).
    """
    username, password = login if login is not None else (None, None)
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    try:
        writer.write(connect_packet(client_id, username=username, password=password))
        header = await asyncio.wait_for(reader.readexactly(4), timeout)
        if header[0] >> 4 != CONNACK:
            raise ProtocolError(f"expected CONNACK, got {header!r}")
        writer.write(DISCONNECT_PACKET)
        while await asyncio.wait_for(reader.read(4096), timeout):
            pass
        return header[3]
    finally:
        writer.close()
