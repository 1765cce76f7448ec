"""Admin and user password hashes for broker_config (stdlib only).

Two families are accepted:

* ours, ``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>`` (``mqtt-licensing hash-password``);
* Mosquitto's, as ``mosquitto_passwd`` writes them: ``$7$<iterations>$<salt b64>$<hash b64>``
  (PBKDF2-HMAC-SHA512, its default) and ``$6$<salt b64>$<hash b64>`` (salted SHA-512, 1.6 and older).

Verification is constant-time. scrypt costs tens of milliseconds on purpose, so callers on an
event loop run :func:`verify_password` in a thread (agent/credentials.py keeps a small pool).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os

_N, _R, _P, _DKLEN = 2**14, 8, 1, 32
_MAXMEM = 256 * 1024 * 1024
_MAX_PBKDF2_ITERATIONS = 10_000_000  # a hash from a file must not pin a core for minutes


def hash_password(password: str, *, salt: bytes | None = None, n: int = _N) -> str:
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=_R, p=_P, dklen=_DKLEN)
    return f"scrypt${n}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        computed, expected = _digests(password.encode(), encoded)
    except (ValueError, TypeError, binascii.Error):
        return False
    return hmac.compare_digest(computed, expected)


def is_password_hash(text: str) -> bool:
    parts = text.split("$")
    if text.startswith("scrypt$"):
        return len(parts) == 6
    if text.startswith("$7$"):
        return len(parts) == 5 and parts[2].isdigit()
    if text.startswith("$6$"):
        return len(parts) == 4
    return False


def dummy_hash_like(encoded: str) -> str:
    """A hash of a random password with the same scheme and cost as ``encoded``: checking an
    unknown username against it takes as long as checking a known one (no enumeration by timing)."""
    secret, salt = os.urandom(16), os.urandom(16)
    parts = encoded.split("$")
    if encoded.startswith("$7$"):
        iterations = min(int(parts[2]), _MAX_PBKDF2_ITERATIONS)
        digest = hashlib.pbkdf2_hmac("sha512", secret, salt[:12], iterations, 64)
        return f"$7${iterations}${_b64(salt[:12])}${_b64(digest)}"
    if encoded.startswith("$6$"):
        return f"$6${_b64(salt[:12])}${_b64(hashlib.sha512(secret + salt[:12]).digest())}"
    n = int(parts[1]) if encoded.startswith("scrypt$") and parts[1].isdigit() else _N
    return hash_password(secret.hex(), salt=salt, n=n)


def _digests(password: bytes, encoded: str) -> tuple[bytes, bytes]:
    parts = encoded.split("$")
    if encoded.startswith("scrypt$"):
        _scheme, n, r, p, salt_b64, hash_b64 = parts
        salt, digest = base64.b64decode(salt_b64, validate=True), base64.b64decode(hash_b64, validate=True)
        computed = hashlib.scrypt(password, salt=salt, n=int(n), r=int(r), p=int(p), dklen=len(digest), maxmem=_MAXMEM)
        return computed, digest
    if encoded.startswith("$7$"):
        _empty, _seven, iterations, salt_b64, hash_b64 = parts
        if not 0 < int(iterations) <= _MAX_PBKDF2_ITERATIONS:
            raise ValueError("iteration count out of range")
        salt, digest = base64.b64decode(salt_b64, validate=True), base64.b64decode(hash_b64, validate=True)
        return hashlib.pbkdf2_hmac("sha512", password, salt, int(iterations), len(digest)), digest
    if encoded.startswith("$6$"):
        _empty, _six, salt_b64, hash_b64 = parts
        salt, digest = base64.b64decode(salt_b64, validate=True), base64.b64decode(hash_b64, validate=True)
        return hashlib.sha512(password + salt).digest(), digest
    raise ValueError("unknown password hash scheme")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
