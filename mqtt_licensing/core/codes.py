"""Text armour for everything a person copies by hand: license keys and offline codes.

Crockford base32 (digits and upper-case letters without I, L, O, U) survives
mail clients, terminals and retyping: case does not matter, O reads as 0 and
I/L read as 1. Every armoured block carries a checksum so a typo is reported as
a typo (``invalid_code``) before anyone looks at the signature inside.
"""

from __future__ import annotations

import hashlib
import re

from .errors import ErrorCode, LicensingError

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DECODE = {c: i for i, c in enumerate(_ALPHABET)}
_DECODE.update({"O": 0, "I": 1, "L": 1})

LINE_WIDTH = 64
CHECKSUM_CHARS = 8


def b32encode(data: bytes) -> str:
    bits = int.from_bytes(data, "big") if data else 0
    nchars = (len(data) * 8 + 4) // 5
    pad = nchars * 5 - len(data) * 8
    bits <<= pad
    return "".join(_ALPHABET[(bits >> (5 * i)) & 31] for i in reversed(range(nchars)))


def b32decode(text: str, nbytes: int | None = None) -> bytes:
    """Decode Crockford base32; raises ValueError on a foreign character."""
    text = text.upper()
    bits = 0
    for ch in text:
        try:
            bits = (bits << 5) | _DECODE[ch]
        except KeyError:
            raise ValueError(f"character {ch!r} is not base32") from None
    total = len(text) * 5
    if nbytes is None:
        nbytes = total // 8
    pad = total - nbytes * 8
    if pad < 0 or pad >= 5 + 8:
        raise ValueError("wrong length")
    if bits & ((1 << pad) - 1):
        raise ValueError("non-zero padding bits")
    return (bits >> pad).to_bytes(nbytes, "big")


def checksum(label: str, data: bytes, nchars: int) -> str:
    digest = hashlib.sha256(label.encode() + b"\0" + data).digest()
    return b32encode(digest)[:nchars]


def armor(label: str, data: bytes) -> str:
    """Wrap bytes as a pastable block: BEGIN line, base32 lines, checksum line, END line."""
    body = b32encode(data)
    lines = [body[i : i + LINE_WIDTH] for i in range(0, len(body), LINE_WIDTH)]
    return (
        "\n".join(
            [f"-----BEGIN {label}-----", *lines, f"={checksum(label, data, CHECKSUM_CHARS)}", f"-----END {label}-----"]
        )
        + "\n"
    )


_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.S)


def unarmor(text: str, label: str) -> bytes:
    """Inverse of :func:`armor`. Tolerates indentation, CRLF, '>' quoting and blank lines."""
    if not isinstance(text, str):
        raise LicensingError(ErrorCode.INVALID_FIELD, "a code must be text")
    cleaned = "\n".join(line.strip().lstrip(">").strip() for line in text.splitlines())
    match = _BLOCK.search(cleaned)
    if match is None:
        raise LicensingError(ErrorCode.INVALID_CODE, f"no '{label}' block found (expected -----BEGIN {label}-----)")
    if match.group(1) != label:
        raise LicensingError(ErrorCode.WRONG_DOCUMENT, f"this is a '{match.group(1).lower()}', not a '{label.lower()}'")
    body_lines = [ln for ln in match.group(2).split() if ln]
    if not body_lines or not body_lines[-1].startswith("="):
        raise LicensingError(ErrorCode.INVALID_CODE, "the checksum line is missing: was the code cut short?")
    expected = body_lines[-1][1:].upper()
    try:
        data = b32decode("".join(body_lines[:-1]))
    except ValueError as exc:
        raise LicensingError(ErrorCode.INVALID_CODE, f"the code is damaged ({exc}): copy it again") from None
    if checksum(label, data, CHECKSUM_CHARS) != expected.replace("O", "0").replace("I", "1").replace("L", "1"):
        raise LicensingError(ErrorCode.INVALID_CODE, "checksum mismatch: the code was changed or mistyped")
    return data
