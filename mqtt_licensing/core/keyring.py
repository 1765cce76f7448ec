"""The vendor's signing keys as a broker or floating server trusts them: pinned, rotated, retired.

A site pins one vendor key at install. When the vendor rotates, it signs a
:class:`KeyRotation` with the old key that endorses the new one; a site that verifies it
against a key it already trusts adds the new key. From then on documents signed by either
key verify. A :class:`KeyRetirement`, signed by a key that stays, ends the old one: documents
it signed are refused from then on. Nothing here reads a file or a clock: the agent and the
floating server persist :meth:`VendorKeys.to_json` themselves.

Each document's envelope names its signer (``kid``, the key's fingerprint), so choosing the
verifying key costs one dict lookup, never a trial of every key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .document_base import Document
from .errors import ErrorCode, LicensingError
from .signing import (
    fingerprint,
    load_public_key,
    parse_envelope,
    public_bytes,
    public_key_from_text,
    public_key_to_text,
    verify_envelope,
)

D = TypeVar("D", bound=Document)


@dataclass(frozen=True)
class KeyRotation(Document):
    """The old key's word that ``new_public_key`` signs for the vendor too."""

    TYP: ClassVar[str] = "key_rotation"

    old_fingerprint: str
    new_public_key: bytes
    new_fingerprint: str
    issued_at: int


@dataclass(frozen=True)
class KeyRetirement(Document):
    """A remaining key's word that ``retired_fingerprint`` signs nothing any more."""

    TYP: ClassVar[str] = "key_retirement"

    retired_fingerprint: str
    issued_at: int


def rotation(old: Ed25519PrivateKey, new: Ed25519PrivateKey, now: int) -> bytes:
    return KeyRotation(fingerprint(old), public_bytes(new), fingerprint(new), now).sign(old)


def retirement(signer: Ed25519PrivateKey, retired_fingerprint: str, now: int) -> bytes:
    if fingerprint(signer) == retired_fingerprint:
        raise LicensingError(ErrorCode.INVALID_FIELD, "a key cannot sign its own retirement")
    return KeyRetirement(retired_fingerprint, now).sign(signer)


@dataclass(frozen=True)
class VendorKeys:
    """The vendor keys a site trusts (by fingerprint) and the ones it has seen retired."""

    keys: Mapping[str, Ed25519PublicKey]
    retired: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def pinned(cls, key: Ed25519PublicKey) -> VendorKeys:
        return cls({fingerprint(key): key})

    def key_for(self, kid: str) -> Ed25519PublicKey:
        if kid in self.retired:
            raise LicensingError(
                ErrorCode.INVALID_SIGNATURE,
                f"signed by vendor key {kid[:12]}, which the vendor has retired",
            )
        key = self.keys.get(kid)
        if key is None:
            raise LicensingError(
                ErrorCode.INVALID_SIGNATURE,
                f"signed by vendor key {kid[:12]}, which this site does not trust: its rotation document never "
                "reached it; pin the vendor's current vendor.pub (vendor_public_key) or check in once more",
            )
        return key

    def open(self, cls: type[D], blob: bytes) -> D:
        """Verify a vendor document against the key its envelope names."""
        env = parse_envelope(blob)
        return cls.from_body(verify_envelope(env, cls.TYP, self.key_for(env.kid)))

    def body(self, blob: bytes, typ: str) -> dict[str, Any]:
        env = parse_envelope(blob)
        return verify_envelope(env, typ, self.key_for(env.kid))

    def accept_rotation(self, blob: bytes) -> VendorKeys:
        """Trust the key a rotation endorses, once it verifies against a key trusted already."""
        doc = self.open(KeyRotation, blob)
        new = load_public_key(doc.new_public_key)
        if fingerprint(new) != doc.new_fingerprint:
            raise LicensingError(ErrorCode.INVALID_SIGNATURE, "the rotation's new key does not match its fingerprint")
        if doc.new_fingerprint in self.keys or doc.new_fingerprint in self.retired:
            return self
        return VendorKeys({**self.keys, doc.new_fingerprint: new}, self.retired)

    def accept_retirement(self, blob: bytes) -> VendorKeys:
        doc = self.open(KeyRetirement, blob)
        if doc.retired_fingerprint in self.retired:
            return self
        remaining = {fp: key for fp, key in self.keys.items() if fp != doc.retired_fingerprint}
        if not remaining:
            raise LicensingError(ErrorCode.INVALID_SIGNATURE, "a retirement may not leave a site without a key")
        return VendorKeys(remaining, self.retired | {doc.retired_fingerprint})

    def to_json(self) -> dict[str, Any]:
        return {
            "keys": sorted(public_key_to_text(key) for key in self.keys.values()),
            "retired": sorted(self.retired),
        }

    @classmethod
    def from_json(cls, data: object, pinned: Ed25519PublicKey) -> VendorKeys:
        """What a site stored, always including the key its config pins (unless retired)."""
        keys = {fingerprint(pinned): pinned}
        retired: set[str] = set()
        if isinstance(data, Mapping):
            for text in data.get("keys") or []:
                if isinstance(text, str):
                    key = public_key_from_text(text)
                    keys[fingerprint(key)] = key
            retired = {fp for fp in data.get("retired") or [] if isinstance(fp, str)}
        live = {fp: key for fp, key in keys.items() if fp not in retired}
        if not live:
            raise LicensingError(
                ErrorCode.INVALID_SIGNATURE,
                "every vendor key this site knows is retired: pin the vendor's current vendor.pub",
            )
        return cls(live, frozenset(retired))


def carried(blob: bytes) -> list[bytes]:
    """The key documents a vendor certificate carries, or the certificate a lease embeds, read
    without trusting them: each is verified by :meth:`KeyRing.accept` against the keys trusted
    already, so whoever forged the carrier gains nothing."""
    try:
        body = parse_envelope(blob).unverified_body()
    except (LicensingError, ValueError, TypeError):
        return []
    inner = body.get("certificate")
    if isinstance(inner, bytes):  # a lease: the floating server's certificate inside
        return carried(inner)
    docs = body.get("key_documents")
    return [d for d in docs if isinstance(d, bytes)] if isinstance(docs, list | tuple) else []


class KeyRing:
    """The vendor keys a running site trusts, shared by everything that verifies vendor documents
    (it is a :class:`~.signing.KeyChooser`). It keeps the rotation and retirement documents it
    accepted: stored as they are, they are replayed from the pinned key at the next start, so a
    forged or edited entry fails verification instead of adding a key."""

    def __init__(self, pinned: Ed25519PublicKey) -> None:
        self.keys = VendorKeys.pinned(pinned)
        self.documents: list[bytes] = []

    def key_for(self, kid: str) -> Ed25519PublicKey:
        return self.keys.key_for(kid)

    def accept(self, blobs: list[bytes]) -> bool:
        """Apply the documents this site has not seen; returns whether anything changed. A document
        that does not verify against the keys trusted so far is skipped (it may verify once an
        earlier rotation arrives), never trusted."""
        changed = False
        for blob in blobs:
            if blob in self.documents:
                continue
            try:
                typ = parse_envelope(blob).typ
                keys = (
                    self.keys.accept_rotation(blob)
                    if typ == KeyRotation.TYP
                    else self.keys.accept_retirement(blob)
                    if typ == KeyRetirement.TYP
                    else None
                )
            except LicensingError:
                continue
            if keys is None:
                continue
            self.keys = keys
            self.documents.append(blob)
            changed = True
        return changed

    def accept_carried(self, blob: bytes) -> bool:
        """Learn the rotations a vendor certificate (or a lease's certificate) carries, before it is verified."""
        return self.accept(carried(blob))

    def restore(self, blobs: list[bytes]) -> None:
        """At start: replay what was stored (in order; each must verify again)."""
        pending = list(blobs)
        while pending and self.accept(pending):
            pending = [b for b in pending if b not in self.documents]
