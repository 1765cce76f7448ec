"""What the activation server's concerns share: the service's settings, license and activation
lookups that every concern makes, the binding of an instance to a license, the certificates it
signs, and the JSON shape of its records."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ...core.documents import ActivationCertificate, FloatingCertificate, InstanceRequest
from ...core.errors import ErrorCode, LicensingError
from ...core.models import LicenseModel
from ...core.signing import b64
from ...core.timefmt import iso
from ..webhooks import emit
from . import names
from .catalogue import CatalogueQueries
from .keys_on_record import KeysOnRecord, Presented
from .store import ActivationRecord, ActivationStore, LicenseRecord, Tx

Clock = Callable[[], int]

# Why an activation is no longer live (``activations.freed_reason``), as told to the instance.
FREED_REASONS = {
    "deactivated": "it was deactivated",
    "freed_by_vendor": "the vendor freed it",
    "offline_deactivation": "it was freed by an offline deactivation code",
    "released_no_heartbeat": "the vendor released it after no heartbeat came for longer than release_after",
}

_WRONG_MODEL_HINT = {
    LicenseModel.ONLINE: "it is activated online with its key ($license/activate, method online)",
    LicenseModel.OFFLINE: "generate a usage request code ($license/offline/request) and have the vendor turn it "
    "into a usage license (vendor offline-activate)",
    LicenseModel.FLOATING: "it provisions a floating license server (mqtt-licensing floating activate), "
    "from which brokers lease seats",
}


def system_clock() -> int:
    return int(time.time())


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def new_chain() -> str:
    """A check-in chain secret: unguessable, rotated at every check-in."""
    return secrets.token_hex(16)


def bad(message: str) -> LicensingError:
    return LicensingError(ErrorCode.BAD_REQUEST, message)


def told_heartbeats(lic: LicenseRecord, now: int) -> int | None:
    """``last_heartbeat_at`` as a certificate signed now leaves it: ``now`` when it carries heartbeat
    terms (from then on the instance heartbeats), else None - an activation whose instance was never
    told the terms (it checks in daily, it sends no heartbeats) is never taken for silent."""
    return now if lic.model == LicenseModel.ONLINE and lic.heartbeat_interval is not None else None


def license_to_dict(lic: LicenseRecord, activations_used: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": lic.id,
        "key_mask": lic.key_mask,
        "model": lic.model,
        "features": list(lic.features),
        "max_activations": lic.max_activations,
        "seats": lic.seats,
        "expires_at": lic.expires_at,
        "support_until": lic.support_until,
        "max_connections": lic.max_connections,
        "overage": lic.overage,
        "status": lic.status,
        "metering": lic.metering,
        "clone_policy": lic.clone_policy,
        "heartbeat_interval": lic.heartbeat_interval,
        "release_after": lic.release_after,
        "created_at": lic.created_at,
        "updated_at": lic.updated_at,
    }
    if activations_used is not None:
        out["activations_used"] = activations_used
    return out


def activation_to_dict(act: ActivationRecord) -> dict[str, Any]:
    return {
        "id": act.id,
        "license_id": act.license_id,
        "instance_fingerprint": act.instance_fingerprint,
        "public_key": b64(act.public_key),
        "model": act.model,
        "active": act.active,
        "created_at": act.created_at,
        "last_check_in_at": act.last_check_in_at,
        "last_heartbeat_at": act.last_heartbeat_at,
        "last_seen_at": act.last_seen_at,
        "request_nonce": act.request_nonce,
        "freed_at": act.freed_at,
        "freed_reason": act.freed_reason,
        "cloned_at": act.cloned_at,
        "clone_count": act.clone_count,
        "label": act.label,  # untrusted text the instance chose: escape it wherever it is shown
    }


@dataclass(frozen=True)
class ServiceContext:
    """What every concern of :class:`.service.ActivationService` shares: the store, the vendor's
    signing key, the clock and the settings, plus the steps they all take (lookups, binding an
    instance to a license, signing its certificates). Built once by the service; never changed."""

    store: ActivationStore
    signing_key: Ed25519PrivateKey
    clock: Clock
    certificate_lifetime: int
    max_clock_skew: int
    rate_limit_failures: int
    rate_limit_window: int
    trial_limit_burst: int
    trial_limit_total: int
    rate_limit_key_failures: int
    data_dir: Path | None = None
    # The key rotations and retirements of data_dir (read at open: a rotation takes a restart),
    # carried in every certificate so that offline sites and floating servers' brokers learn them.
    key_documents: tuple[bytes, ...] = ()
    # The public keys of activations seen, so known requests are verified outside the transaction.
    keys: KeysOnRecord = field(default_factory=KeysOnRecord)

    def license(self, tx: Tx, license_id: Any, *, lock: bool = False) -> LicenseRecord:
        lic = tx.get_license(license_id, lock=lock) if isinstance(license_id, str) else None
        if lic is None:
            raise LicensingError(ErrorCode.NOT_FOUND, f"no license {license_id!r} exists")
        return lic

    def event(self, tx: Tx, event_type: str, **data: Any) -> None:
        """Queue a webhook event in the transaction of the change it announces (servers/webhooks)."""
        emit(tx.conn, event_type, data, self.clock())

    def free(self, tx: Tx, act: ActivationRecord, now: int, reason: str) -> ActivationRecord:
        tx.get_license(act.license_id, lock=True)  # serialize with activations counting this license
        tx.update_activation(act.id, freed_at=now, freed_reason=reason)
        kind = "activation.released" if reason.startswith("released") else "activation.freed"
        self.event(tx, kind, activation_id=act.id, license_id=act.license_id, reason=reason)
        return replace(act, freed_at=now, freed_reason=reason)

    def check_usable(self, lic: LicenseRecord, now: int, model: LicenseModel | None) -> None:
        if model is not None and lic.model != model:
            raise LicensingError(
                ErrorCode.WRONG_MODEL,
                f"license {lic.id} is a {lic.model} license, not {model}: {_WRONG_MODEL_HINT[LicenseModel(lic.model)]}",
            )
        if lic.status == "revoked":
            raise LicensingError(ErrorCode.REVOKED, f"license {lic.id} has been revoked")
        if lic.status == "suspended":
            raise LicensingError(ErrorCode.SUSPENDED, f"license {lic.id} is suspended: contact the vendor")
        if lic.expires_at is not None and now >= lic.expires_at:
            raise LicensingError(ErrorCode.EXPIRED, f"license {lic.id} expired at {iso(lic.expires_at)}")

    def bind(
        self, tx: Tx, lic: LicenseRecord, request: InstanceRequest, now: int, nonce: str | None = None
    ) -> tuple[ActivationRecord, bool]:
        """The instance's live activation of ``lic`` (reused), or a new one if any is left.

        Must run in the transaction that locked ``lic``.
        """
        existing = tx.find_live_activation(lic.id, request.fingerprint)
        if existing is not None:
            # A new chain: a copy still holding the old one is seen at its next check-in.
            updates: dict[str, Any] = {
                "last_check_in_at": now,
                "chain": new_chain(),
                "chain_prev": None,
                "last_heartbeat_at": told_heartbeats(lic, now),
            }
            if nonce is not None and existing.request_nonce != nonce:
                if existing.request_created_at is not None and request.created_at < existing.request_created_at:
                    raise LicensingError(
                        ErrorCode.REQUEST_SUPERSEDED,
                        "a newer request code of this instance was already answered; use the newest request code",
                    )
                updates.update(request_nonce=nonce, request_created_at=request.created_at)
            updates.update(names.changed(tx.conn, existing.id, existing.label, request.label, now))
            tx.update_activation(existing.id, **updates)
            return replace(existing, **updates), True
        used = tx.count_active(lic.id)
        if used >= lic.max_activations:
            raise LicensingError(
                ErrorCode.NO_ACTIVATIONS_LEFT,
                f"all {lic.max_activations} activation(s) of license {lic.id} are in use: "
                f"deactivate one, or ask the vendor to free a lost one",
            )
        act = ActivationRecord(
            id=new_id("act"),
            license_id=lic.id,
            instance_fingerprint=request.fingerprint,
            public_key=request.public_key,
            model=lic.model,
            created_at=now,
            last_check_in_at=now,
            last_heartbeat_at=told_heartbeats(lic, now),
            request_nonce=nonce,
            request_created_at=request.created_at if nonce is not None else None,
            freed_at=None,
            freed_reason=None,
            chain=new_chain(),
        )
        act = replace(act, **names.changed(tx.conn, act.id, None, request.label, now))
        tx.insert_activation(act)
        self.event(
            tx,
            "activation.created",
            activation_id=act.id,
            license_id=lic.id,
            model=lic.model,
            instance_fingerprint=act.instance_fingerprint,
            label=act.label,
        )
        return act, False

    def verify_known(self, tx: Tx, blob: bytes | Presented, kind: str) -> tuple[ActivationRecord, InstanceRequest]:
        """Verify a request against the key on record for the activation it names (already done,
        outside the transaction, for a :class:`Presented` one whose key was remembered)."""
        presented = blob if isinstance(blob, Presented) else self.keys.present(blob, kind)
        activation_id = presented.claimed.activation_id
        act = tx.get_activation(activation_id) if activation_id else None
        if act is None:
            raise LicensingError(
                ErrorCode.ACTIVATION_NOT_FOUND, f"activation {activation_id!r} is not known to the vendor"
            )
        return act, self.keys.verify(presented, act, kind)

    # -- documents -------------------------------------------------------------------
    def online_valid_until(self, lic: LicenseRecord, now: int) -> int:
        """How long an online certificate serves without news: ``certificate_lifetime``, or with
        heartbeat terms ``release_after``, so an instance that cannot reach the vendor stops serving
        when its activation is released, not days after another instance took the seat."""
        lifetime = self.certificate_lifetime
        if lic.release_after is not None:
            lifetime = min(lifetime, lic.release_after)
        return now + lifetime

    @staticmethod
    def definitions(tx: Tx, lic: LicenseRecord) -> tuple[dict[str, Any], ...]:
        """The catalogue's current definitions of the license's features, read in the transaction
        that read the license: a certificate carries them signed, so a title changed by the vendor
        reaches the broker at its next check-in. Read per request, not cached: one indexed SELECT."""
        return CatalogueQueries(tx.conn).definitions_of(lic.features)

    def activation_certificate(
        self,
        lic: LicenseRecord,
        act: ActivationRecord,
        now: int,
        *,
        valid_until: int | None,
        definitions: tuple[dict[str, Any], ...],
        request_nonce: str | None = None,
        usage_stored: tuple[int, ...] = (),
    ) -> bytes:
        return ActivationCertificate(
            license_id=lic.id,
            key_mask=lic.key_mask,
            activation_id=act.id,
            model=lic.model,
            features=lic.features,
            instance_fingerprint=act.instance_fingerprint,
            issued_at=now,
            valid_until=valid_until,
            expires_at=lic.expires_at,
            support_until=lic.support_until,
            max_connections=lic.max_connections,
            overage=lic.overage,
            request_nonce=request_nonce,
            usage_stored=usage_stored,
            metering=lic.metering,
            chain=act.chain if lic.model == LicenseModel.ONLINE else None,
            definitions=definitions,
            key_documents=self.key_documents,
            heartbeat_interval=lic.heartbeat_interval if lic.model == LicenseModel.ONLINE else None,
            release_after=lic.release_after if lic.model == LicenseModel.ONLINE else None,
        ).sign(self.signing_key)

    def floating_certificate(
        self,
        lic: LicenseRecord,
        act: ActivationRecord,
        now: int,
        *,
        definitions: tuple[dict[str, Any], ...],
        request_nonce: str | None = None,
        usage_stored: tuple[str, ...] = (),
        valid_until: int | None = None,
    ) -> bytes:
        """``valid_until``: online, a lifetime the server refreshes (capped by the license's expiry);
        offline (None) the license's expiry, as no refresh can reach the server."""
        if valid_until is None or (lic.expires_at is not None and lic.expires_at < valid_until):
            valid_until = lic.expires_at
        return FloatingCertificate(
            license_id=lic.id,
            key_mask=lic.key_mask,
            activation_id=act.id,
            server_fingerprint=act.instance_fingerprint,
            server_public_key=act.public_key,
            seats=lic.seats or 0,
            features=lic.features,
            issued_at=now,
            valid_until=valid_until,
            expires_at=lic.expires_at,
            support_until=lic.support_until,
            max_connections=lic.max_connections,
            overage=lic.overage,
            request_nonce=request_nonce,
            usage_stored=usage_stored,
            chain=act.chain,
            definitions=definitions,
            key_documents=self.key_documents,
        ).sign(self.signing_key)
