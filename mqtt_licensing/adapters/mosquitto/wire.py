"""Frames on the plugin's Unix socket (plugin/link.c is the other end).

A frame is a 4-byte big-endian length, a type byte, then fields, each a 4-byte big-endian
length and its bytes.
"""

from __future__ import annotations

import asyncio
import struct

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


def decode(body: bytes) -> tuple[bytes, list[bytes]]:
    kind, pos, fields = body[:1], 1, []
    while pos < len(body):
        if len(body) - pos < 4:
            raise FrameError("truncated field length")
        (n,) = struct.unpack_from(">I", body, pos)
        pos += 4
        if n > len(body) - pos:
            raise FrameError("field longer than its frame")
        fields.append(body[pos : pos + n])
        pos += n
    return kind, fields


async def read_frame(reader: asyncio.StreamReader) -> tuple[bytes, list[bytes]]:
    (length,) = struct.unpack(">I", await reader.readexactly(4))
    if not 0 < length <= MAX_FRAME:
        raise FrameError(f"frame length {length}")
    return decode(await reader.readexactly(length))
