"""Signed requests of known activations, verified before their transaction.

A check-in or a heartbeat is verified against the public key on record for the activation it
names. That key, and the fingerprint derived from it, are written once when the activation is
made and never changed (an activation freed and activated again is a new row with a new id), so
a process may remember them: :class:`KeysOnRecord` maps an activation id to its key, loaded.

Why: the Ed25519 verification is the largest single cost of these requests (~90 us), and inside
the transaction it runs while the process holds SQLite's one write lock (the group commit's
batch; with several worker processes, the lock they all share). Verified first, with the key
remembered from an earlier request, it runs outside. Nothing that can change is remembered:
whether the activation is live, its license's status and terms are still read in the
transaction, so a freed, released, revoked or suspended activation is refused at once
(``tests/servers/activation/test_keys_on_record.py``).

The first request of an activation in a process is verified inside its transaction, as before,
against the row it reads; that fills the entry. A request verified early is checked again in the
transaction against the row's key (a byte comparison): an entry can never stand for another key.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ...core.documents import InstanceRequest, check_instance_request
from ...core.errors import ErrorCode, LicensingError
from ...core.signing import Envelope, load_public_key
from .._requests import peek
from .rows import ActivationRecord

# Entries kept per process: a fleet of this many instances is verified early on every request;
# past it the table starts again (each instance's next request fills its entry anew). ~250 bytes
# an entry: ~50 MB at the limit.
LIMIT = 200_000


@dataclass(frozen=True, slots=True)
class Presented:
    """A request as it arrived: parsed, and verified if its activation's key was remembered."""

    env: Envelope
    claimed: InstanceRequest  # unverified unless ``verified`` is set
    verified: InstanceRequest | None = None
    key: bytes | None = None  # the raw key it verified against


class KeysOnRecord:
    """activation id -> (raw public key, loaded key, instance fingerprint); thread-safe."""

    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self._keys: dict[str, tuple[bytes, Ed25519PublicKey, str]] = {}
        self._mutex = threading.Lock()

    def __len__(self) -> int:
        return len(self._keys)

    def present(self, blob: bytes, kind: str) -> Presented:
        """Parse ``blob`` and, when its activation's key is remembered, verify it now (outside any
        transaction). A bad signature is refused here as it would be in the transaction."""
        env, claimed = peek(blob)
        if not claimed.activation_id:
            raise LicensingError(ErrorCode.BAD_REQUEST, "the request names no activation")
        known = self._keys.get(claimed.activation_id)
        if known is None:
            return Presented(env, claimed)
        raw, key, fingerprint = known
        request = check_instance_request(env, claimed, kind, key)
        if request.fingerprint != fingerprint:
            raise LicensingError(ErrorCode.INVALID_SIGNATURE, "the request is not from the activated instance")
        return Presented(env, claimed, request, raw)

    def verify(self, presented: Presented, act: ActivationRecord, kind: str) -> InstanceRequest:
        """``presented`` verified against ``act``'s key on record (read in the transaction)."""
        if presented.verified is not None and presented.key == act.public_key:
            return presented.verified
        key = load_public_key(act.public_key)
        request = check_instance_request(presented.env, presented.claimed, kind, key)
        if request.fingerprint != act.instance_fingerprint:
            raise LicensingError(ErrorCode.INVALID_SIGNATURE, "the request is not from the activated instance")
        with self._mutex:
            if len(self._keys) >= self.limit:
                self._keys.clear()
            self._keys[act.id] = (act.public_key, key, act.instance_fingerprint)
        return request


__all__ = ["LIMIT", "KeysOnRecord", "Presented"]
