"""Ed25519-signed msgpack documents.

A signed document is a msgpack map ``{typ, body, kid, sig}``: ``body`` is the
msgpack encoding of the payload, kept as bytes so verification never depends on
re-encoding; ``sig`` covers a domain tag, the type and those bytes, so a
signature for one kind of document can never be replayed as another kind.
Nothing is returned from :func:`open_document` unless the signature checks.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any, Protocol

import msgpack
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import ErrorCode, LicensingError

_DOMAIN = b"mqtt-licensing/v1\0"
MAX_DOCUMENT_BYTES = 64 * 1024


def public_bytes(key: Ed25519PublicKey | Ed25519PrivateKey) -> bytes:
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(public_key: bytes | Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """Stable identity of a key: hex of the first 16 bytes of SHA-256 of the raw public key."""
    raw = public_key if isinstance(public_key, bytes) else public_bytes(public_key)
    return hashlib.sha256(raw).hexdigest()[:32]


def load_public_key(raw: bytes) -> Ed25519PublicKey:
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, TypeError):
        raise LicensingError(ErrorCode.INVALID_FIELD, "not an Ed25519 public key") from None


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64(text: object) -> bytes:
    if not isinstance(text, str):
        raise LicensingError(ErrorCode.INVALID_FIELD, "expected base64 text")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        raise LicensingError(ErrorCode.INVALID_FIELD, "invalid base64") from None


def public_key_to_text(key: Ed25519PublicKey | Ed25519PrivateKey | bytes) -> str:
    """The form a public key is pinned in (config files, vendor.pub): base64url of the raw 32 bytes."""
    return b64(key if isinstance(key, bytes) else public_bytes(key))


def public_key_from_text(text: str) -> Ed25519PublicKey:
    text = text.strip()
    if text.startswith("-----BEGIN PUBLIC KEY-----"):
        key = serialization.load_pem_public_key(text.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise LicensingError(ErrorCode.INVALID_FIELD, "the public key is not Ed25519")
        return key
    return load_public_key(unb64(text))


def _signed_bytes(typ: str, body: bytes) -> bytes:
    return _DOMAIN + typ.encode() + b"\0" + body


_KIDS: dict[Ed25519PrivateKey, str] = {}


def _kid(private_key: Ed25519PrivateKey) -> str:
    """The signer's fingerprint, remembered per key object: a server signs every answer with one
    key, and deriving the public key and its hash each time was a third of the signing cost."""
    kid = _KIDS.get(private_key)
    if kid is None:
        if len(_KIDS) >= 256:  # tests and clients make many keys: a bound, not an LRU
            _KIDS.clear()
        kid = _KIDS[private_key] = fingerprint(private_key)
    return kid


def sign_document(private_key: Ed25519PrivateKey, typ: str, body: dict[str, Any]) -> bytes:
    body_bytes = msgpack.packb(body, use_bin_type=True)
    envelope: bytes = msgpack.packb(
        {
            "typ": typ,
            "body": body_bytes,
            "kid": _kid(private_key),
            "sig": private_key.sign(_signed_bytes(typ, body_bytes)),
        },
        use_bin_type=True,
    )
    return envelope


@dataclass(frozen=True)
class Envelope:
    """A parsed but NOT yet verified document. Only :func:`open_document` trusts one."""

    typ: str
    body: bytes
    kid: str
    sig: bytes

    def unverified_body(self) -> dict[str, Any]:
        """Read fields needed to find the verifying key (e.g. the embedded public key)."""
        return _unpack_map(self.body)


def _unpack_map(data: bytes) -> dict[str, Any]:
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            max_bin_len=MAX_DOCUMENT_BYTES,
            max_str_len=MAX_DOCUMENT_BYTES,
            max_array_len=4096,
            max_map_len=4096,
        )
    except Exception:  # msgpack raises a zoo of exception types on garbage
        raise LicensingError(ErrorCode.INVALID_CODE, "the document is not valid msgpack") from None
    if not isinstance(value, dict):
        raise LicensingError(ErrorCode.INVALID_CODE, "the document is not a map")
    return value


def parse_envelope(blob: bytes) -> Envelope:
    if not isinstance(blob, (bytes, bytearray)) or len(blob) > MAX_DOCUMENT_BYTES:
        raise LicensingError(ErrorCode.INVALID_CODE, "the document is missing or too large")
    outer = _unpack_map(bytes(blob))
    typ, body, kid, sig = (outer.get(k) for k in ("typ", "body", "kid", "sig"))
    if not (isinstance(typ, str) and isinstance(body, bytes) and isinstance(kid, str) and isinstance(sig, bytes)):
        raise LicensingError(ErrorCode.INVALID_CODE, "the document envelope is incomplete")
    return Envelope(typ, body, kid, sig)


def open_document(blob: bytes, expected_typ: str, public_key: VerifyingKey) -> dict[str, Any]:
    """Verify ``blob`` was signed by ``public_key`` as a document of ``expected_typ``; return its body."""
    env = parse_envelope(blob)
    return verify_envelope(env, expected_typ, public_key)


class KeyChooser(Protocol):
    """Several trusted keys (the vendor's, across a rotation: :mod:`.keyring`); a document's
    envelope names its signer, and the chooser gives that key or refuses."""

    def key_for(self, kid: str) -> Ed25519PublicKey: ...


VerifyingKey = Ed25519PublicKey | KeyChooser


def verify_envelope(env: Envelope, expected_typ: str, public_key: VerifyingKey) -> dict[str, Any]:
    check_envelope(env, expected_typ, public_key)
    return _unpack_map(env.body)


def check_envelope(env: Envelope, expected_typ: str, public_key: VerifyingKey) -> None:
    """Refuse ``env`` unless it is a ``expected_typ`` signed by ``public_key``: then its body bytes
    are the signed ones, and a body decoded from them before this check may be trusted after it."""
    if env.typ != expected_typ:
        raise LicensingError(ErrorCode.WRONG_DOCUMENT, f"expected a {expected_typ}, got a {env.typ}")
    if not isinstance(public_key, Ed25519PublicKey):
        public_key = public_key.key_for(env.kid)
    # The signature covers typ and body only; the key id must name the verifying key, so a
    # changed kid is a changed (and rejected) document too.
    if env.kid != fingerprint(public_key):
        raise LicensingError(
            ErrorCode.INVALID_SIGNATURE, f"the {expected_typ.replace('_', ' ')} was not signed by the expected key"
        )
    try:
        public_key.verify(env.sig, _signed_bytes(env.typ, env.body))
    except InvalidSignature:
        raise LicensingError(
            ErrorCode.INVALID_SIGNATURE, f"the {expected_typ.replace('_', ' ')} signature does not verify"
        ) from None
