"""License keys: opaque, pastable, checksummed.

Format: ``MQL1-XXXXX-XXXXX-XXXXX-XXXXX-XXXXX-XXXXX`` - 24 base32 characters of
randomness (120 bits) and a 6-character checksum. A typo is caught here, before
any network call. The vendor never stores the key itself, only its digest.
"""

from __future__ import annotations

import hashlib

from .codes import b32decode, b32encode, checksum
from .errors import ErrorCode, LicensingError

PREFIX = "MQL1"
_RANDOM_BYTES = 15
_BODY_CHARS = 24
_CHECK_CHARS = 6


def format_key(random_bytes: bytes) -> str:
    """Build a key from 15 random bytes (the caller owns the randomness)."""
    if len(random_bytes) != _RANDOM_BYTES:
        raise ValueError("a license key needs exactly 15 random bytes")
    body = b32encode(random_bytes)
    chars = body + checksum("license-key", random_bytes, _CHECK_CHARS)
    return PREFIX + "-" + "-".join(chars[i : i + 5] for i in range(0, len(chars), 5))


def normalize_key(text: object) -> str:
    """Canonical form of a key typed, pasted or read from a .txt file; raises invalid_key."""
    if not isinstance(text, str):
        raise LicensingError(ErrorCode.INVALID_FIELD, "the license key must be a string")
    compact = "".join(ch for ch in text.upper() if not ch.isspace() and ch != "-")
    if not compact.startswith(PREFIX):
        raise LicensingError(ErrorCode.INVALID_KEY, f"a license key starts with {PREFIX}-")
    chars = compact[len(PREFIX) :]
    if len(chars) != _BODY_CHARS + _CHECK_CHARS:
        raise LicensingError(
            ErrorCode.INVALID_KEY,
            f"a license key has {_BODY_CHARS + _CHECK_CHARS} characters after {PREFIX}-, this one has {len(chars)}",
        )
    try:
        raw = b32decode(chars[:_BODY_CHARS], _RANDOM_BYTES)
    except ValueError as exc:
        raise LicensingError(ErrorCode.INVALID_KEY, f"the license key contains a bad character ({exc})") from None
    check = chars[_BODY_CHARS:].replace("O", "0").replace("I", "1").replace("L", "1")
    if checksum("license-key", raw, _CHECK_CHARS) != check:
        raise LicensingError(ErrorCode.INVALID_KEY, "the license key checksum does not match: check for a typo")
    return format_key(raw)


def key_digest(key: str) -> str:
    """What the vendor stores and looks keys up by (hex sha256 of the canonical key)."""
    return hashlib.sha256(normalize_key(key).encode()).hexdigest()


def mask_key(key: str) -> str:
    """Show the first and last group only: enough to recognise, useless to steal."""
    groups = normalize_key(key).split("-")
    return "-".join([groups[0], groups[1], *("*****" for _ in groups[2:-1]), groups[-1]])
