"""Frames on the plugin's Unix socket (plugin/link.c is the other end).

A frame is a 4-byte big-endian length, a type byte, then fields, each a 4-byte big-endian
length and its bytes.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator

HELLO_AGENT = b"mqtt-licensing-agent/1"
HELLO_PLUGIN = b"mqtt-licensing-plugin/1"

# plugin -> agent
HELLO, CONNECTED, DISCONNECTED, REFUSED, MESSAGE, USAGE = b"H", b"C", b"D", b"R", b"M", b"U"
# agent -> plugin
SNAPSHOT, PUBLISH, KICK, USAGE_ACK = b"S", b"P", b"K", b"A"

MAX_FRAME = 32 * 1024 * 1024  # as plugin/link.c


class FrameError(Exception):
    """The peer sent something that is not a frame of this protocol."""


def encode(kind: bytes, *fields: bytes) -> bytes:
    body = kind + b"".join(struct.pack(">I", len(f)) + f for f in fields)
    return struct.pack(">I", len(body)) + body


_length = struct.Struct(">I").unpack_from


def decode(body: bytes) -> tuple[bytes, list[bytes]]:
    kind, pos, end, fields = body[:1], 1, len(body), []
    while pos < end:
        if end - pos < 4:
            raise FrameError("truncated field length")
        n = _length(body, pos)[0]
        pos += 4
        if n > end - pos:
            raise FrameError("field longer than its frame")
        fields.append(body[pos : pos + n])
        pos += n
    return kind, fields


async def frames(reader: asyncio.StreamReader) -> AsyncIterator[tuple[bytes, list[bytes]]]:
    """The frames as they arrive: one read takes every frame the plugin wrote since the last
    (under a CONNECT storm, one read carries many), rather than two reads per frame."""
    buffer = bytearray()
    while True:
        chunk = await reader.read(1 << 16)
        if not chunk:
            raise asyncio.IncompleteReadError(bytes(buffer), None)
        buffer += chunk
        pos = 0
        while len(buffer) - pos >= 4:
            length = _length(buffer, pos)[0]
            if not 0 < length <= MAX_FRAME:
                raise FrameError(f"frame length {length}")
            if len(buffer) - pos - 4 < length:
                break
            yield decode(bytes(buffer[pos + 4 : pos + 4 + length]))
            pos += 4 + length
        del buffer[:pos]
