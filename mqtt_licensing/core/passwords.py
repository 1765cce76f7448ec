"""Admin and user password hashes for broker_config (scrypt, stdlib only).

Format: ``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>``. Verification is constant-time.
scrypt costs tens of milliseconds on purpose, so callers on an event loop run
:func:`verify_password` in a thread.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

_N, _R, _P, _DKLEN = 2**14, 8, 1, 32


def hash_password(password: str, *, salt: bytes | None = None, n: int = _N) -> str:
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=_R, p=_P, dklen=_DKLEN)
    enc = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"scrypt${n}${_R}${_P}${enc(salt)}${enc(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        scheme, n, r, p, salt_b64, hash_b64 = encoded.split("$")
        if scheme != "scrypt":
            return False
        salt, expected = base64.b64decode(salt_b64), base64.b64decode(hash_b64)
        digest = hashlib.scrypt(
            password.encode(), salt=salt, n=int(n), r=int(r), p=int(p), dklen=len(expected), maxmem=256 * 1024 * 1024
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, expected)


def is_password_hash(text: str) -> bool:
    return text.startswith("scrypt$") and text.count("$") == 5
