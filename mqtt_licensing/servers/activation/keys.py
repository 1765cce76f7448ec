"""The vendor's signing keys across a rotation, in its data folder.

``vendor.key`` is the key that signs now. ``vendor key rotate`` keeps the previous one as
``vendor-<fingerprint>.key`` (0600) and appends to ``key-documents.txt`` a rotation document
signed by it that endorses the new key; ``vendor key retire`` appends a retirement signed by
the current key. Brokers and floating servers fetch those documents (``GET /v1/keys``) and
verify each against the keys they already trust (:mod:`...core.keyring`). A running server
reads the folder when it starts: restart it (and copy the folder to every replica) after a
rotation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ...core import keyring
from ...core.errors import ErrorCode, LicensingError
from ...core.signing import b64, fingerprint, parse_envelope, public_key_to_text, unb64
from .._files import atomic_write, load_or_create_signing_key

DOCUMENTS = "key-documents.txt"


def documents(data_dir: Path) -> list[bytes]:
    """The rotation and retirement documents, oldest first (none before the first rotation)."""
    path = data_dir / DOCUMENTS
    if not path.exists():
        return []
    return [unb64(line) for line in path.read_text().split() if line]


def _append(data_dir: Path, blob: bytes) -> None:
    lines = [b64(d) for d in documents(data_dir)] + [b64(blob)]
    atomic_write(data_dir / DOCUMENTS, ("\n".join(lines) + "\n").encode(), mode=0o644)


def _pem(key: Ed25519PrivateKey) -> bytes:
    encoding, form = serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8
    return key.private_bytes(encoding, form, serialization.NoEncryption())


def rotate(data_dir: Path, now: int, name: str = "vendor") -> tuple[str, str]:
    """Make a new signing key current; returns (old, new) fingerprints."""
    old = load_or_create_signing_key(data_dir, name)
    new = Ed25519PrivateKey.generate()
    atomic_write(data_dir / f"{name}-{fingerprint(old)}.key", _pem(old))  # kept: a rotation can be re-signed
    _append(data_dir, keyring.rotation(old, new, now))  # first: a crash after it leaves the old key current
    atomic_write(data_dir / f"{name}.key", _pem(new))
    atomic_write(data_dir / f"{name}.pub", (public_key_to_text(new) + "\n").encode(), mode=0o644)
    return fingerprint(old), fingerprint(new)


def retire(data_dir: Path, retired: str, now: int, name: str = "vendor") -> None:
    """End a previous key: documents it signed are refused by every site that sees this."""
    current = load_or_create_signing_key(data_dir, name)
    known = {d.old_fingerprint for d in _rotations(data_dir)}
    match = [fp for fp in known if fp.startswith(retired)] if retired else []
    if len(match) != 1:
        raise LicensingError(
            ErrorCode.NOT_FOUND, f"no single previous vendor key {retired!r} (previous: {', '.join(sorted(known))})"
        )
    _append(data_dir, keyring.retirement(current, match[0], now))


def _rotations(data_dir: Path) -> list[keyring.KeyRotation]:
    out = []
    for blob in documents(data_dir):
        body = parse_envelope(blob)
        if body.typ == keyring.KeyRotation.TYP:
            out.append(keyring.KeyRotation.from_body(body.unverified_body()))
    return out


@dataclass(frozen=True)
class KeyList:
    current: str
    previous: list[str]
    retired: list[str]


def describe(data_dir: Path, name: str = "vendor") -> KeyList:
    current = load_or_create_signing_key(data_dir, name)
    retired = [
        keyring.KeyRetirement.from_body(parse_envelope(b).unverified_body()).retired_fingerprint
        for b in documents(data_dir)
        if parse_envelope(b).typ == keyring.KeyRetirement.TYP
    ]
    previous = [d.old_fingerprint for d in _rotations(data_dir)]
    return KeyList(fingerprint(current), previous, retired)
