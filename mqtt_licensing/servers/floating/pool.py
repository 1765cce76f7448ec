"""The floating server's pool: the vendor key it pins, the vendor-signed certificate it leases
seats from, and the signed requests that provision it (online or by codes).

The server never trusts its stored certificate either: it is re-verified against the pinned vendor
key (``vendor.pub`` in the data folder) before every use.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ...core import instance_label, labels
from ...core.documents import FloatingCertificate, sign_instance_request
from ...core.errors import ErrorCode, LicensingError
from ...core.keyring import KeyRing
from ...core.keys import key_digest
from ...core.signing import VerifyingKey, fingerprint, public_bytes
from ..webhooks import Webhooks, emit
from .lease_rows import PoolRecord
from .store import FloatingStore, Tx
from .trust import VENDOR_KEY_FILE, VendorTrust
from .usage import parse_ref


@dataclass(frozen=True)
class PoolView:
    """The installed certificate after verification, plus where it came from."""

    certificate: FloatingCertificate
    blob: bytes
    vendor_url: str | None
    seat_check_before: int | None = None  # see schema.pool
    clone_policy: str | None = None  # None = "flag" (see .clones)


def lapsed(cert: FloatingCertificate, now: int) -> str | None:
    """Which limit of the certificate has passed (``expires_at`` or ``valid_until``), if any."""
    if cert.expires_at is not None and now >= cert.expires_at:
        return "expires_at"
    if cert.valid_until is not None and now >= cert.valid_until:
        return "valid_until"
    return None


@dataclass(frozen=True)
class FloatingContext:
    """What every part of :class:`.service.FloatingService` shares; built once, never changed."""

    store: FloatingStore
    signing_key: Ed25519PrivateKey
    clock: Callable[[], int]
    ttl: int
    max_clock_skew: int
    data_dir: Path | None = None

    @property
    def public_key(self) -> bytes:
        return public_bytes(self.signing_key)

    def event(self, conn: sa.Connection | None, event_type: str, **data: Any) -> None:
        """Queue a webhook event: in the caller's transaction (``conn``), or in one of its own when
        the change it reports is a refusal whose transaction rolls back."""
        if conn is not None:
            emit(conn, event_type, data, self.clock())
        else:
            Webhooks(self.store.engine).emit(event_type, data, self.clock())

    @property
    def fingerprint(self) -> str:
        return fingerprint(public_bytes(self.signing_key))


class FloatingPool:
    """Everything about the certificate: the pinned vendor key, verification, provisioning."""

    def __init__(self, ctx: FloatingContext, vendor_public_key: Ed25519PublicKey | None = None) -> None:
        self.ctx = ctx
        self.public_key = ctx.public_key
        self.fingerprint = ctx.fingerprint
        self.trust = VendorTrust(ctx.data_dir, vendor_public_key)
        self._verified: dict[tuple[bytes, bytes | int], FloatingCertificate] = {}

    # -- the pinned vendor key and its rotations (.trust) ----------------------------
    @property
    def vendor_key_path(self) -> Path | None:
        return self.trust.key_path

    def vendor_key(self) -> Ed25519PublicKey | None:
        """The pinned vendor key (DIR/vendor.pub, or the one given at construction)."""
        return self.trust.pinned()

    def vendor_keys(self) -> KeyRing | None:
        """Every vendor key trusted now: the pinned one and the rotations it endorsed (not the retired)."""
        return self.trust.ring()

    def pin_vendor_key(self, key: Ed25519PublicKey) -> None:
        self.trust.pin(key)

    # -- certificates ------------------------------------------------------------------
    def verify_certificate(self, blob: bytes, vendor: Ed25519PublicKey | None = None) -> FloatingCertificate:
        """Verify a floating certificate against the pinned vendor key (or ``vendor``) and check it
        names this server."""
        verifier: VerifyingKey | None = vendor if vendor is not None else self.vendor_keys()
        if verifier is None:
            raise LicensingError(ErrorCode.NOT_PROVISIONED, "no vendor public key is pinned (provide --vendor-key)")
        # verified once per certificate and trust (the pinned key, the rotations accepted so far)
        trusted = public_bytes(vendor) if vendor is not None else self.trust.generation
        cert = self._verified.get((bytes(blob), trusted))
        if cert is None:
            if vendor is None and self.trust.learn(bytes(blob)):  # a rotation it carries: the new key signed it
                verifier, trusted = self.vendor_keys(), self.trust.generation
                assert verifier is not None
            cache_key = (bytes(blob), trusted)
            cert = FloatingCertificate.open(bytes(blob), verifier)
            if fingerprint(cert.server_public_key) != cert.server_fingerprint:
                raise LicensingError(
                    ErrorCode.INVALID_SIGNATURE, "the floating certificate's fingerprint does not match its server key"
                )
            if cert.server_public_key != self.public_key or cert.server_fingerprint != self.fingerprint:
                raise LicensingError(
                    ErrorCode.WRONG_INSTANCE,
                    f"the floating certificate is for server {cert.server_fingerprint}, "
                    f"this server is {self.fingerprint}",
                )
            if len(self._verified) > 16:
                self._verified.clear()
            self._verified[cache_key] = cert
        return cert

    def view(self, tx: Tx, *, lock: bool) -> PoolView | None:
        return self.view_of(tx.lock_pool() if lock else tx.read_pool())

    def view_of(self, row: PoolRecord) -> PoolView | None:
        """The pool row's certificate, verified (once per certificate and vendor trust)."""
        if row.certificate is None:
            return None
        try:
            cert = self.verify_certificate(row.certificate)
        except LicensingError as exc:
            raise LicensingError(
                ErrorCode.NOT_PROVISIONED, f"the installed floating certificate cannot be trusted: {exc.message}"
            ) from None
        return PoolView(cert, row.certificate, row.vendor_url, row.seat_check_before, row.clone_policy)

    # -- provisioning ---------------------------------------------------------------------
    def _sign_request(self, kind: str, now: int, **fields: Any) -> tuple[bytes, str]:
        nonce = secrets.token_hex(16)
        # The vendor lists a floating server by its host name, as it lists a broker by its label.
        fields.setdefault("label", instance_label.clean(socket.gethostname()))
        return sign_instance_request(self.ctx.signing_key, kind=kind, nonce=nonce, created_at=now, **fields), nonce

    def activation_request(self, license_key: str) -> tuple[bytes, str]:
        """Online activation: a signed floating_activate request; returns (blob, nonce)."""
        return self._sign_request(labels.KIND_FLOATING_ACTIVATE, self.ctx.clock(), key_digest=key_digest(license_key))

    def offline_request(self, license_key: str, usage: dict[str, Any]) -> bytes:
        """Offline activation: a signed floating_request; its nonce becomes the pending one
        (a new request supersedes the previous). It carries ``usage``, the brokers' records held here."""
        now = self.ctx.clock()
        blob, nonce = self._sign_request(labels.KIND_FLOATING_REQUEST, now, key_digest=key_digest(license_key), **usage)
        with self.ctx.store.transaction() as tx:
            tx.lock_pool()
            tx.update_pool(pending_nonce=nonce, pending_at=now)
        return blob

    def require_certificate(self) -> PoolView:
        with self.ctx.store.transaction() as tx:
            pool = self.view(tx, lock=False)
        if pool is None:
            raise LicensingError(ErrorCode.NOT_ACTIVATED, "this floating server is not activated")
        return pool

    def check_in_request(self) -> tuple[bytes, str]:
        cert = self.require_certificate().certificate
        return self._sign_request(
            labels.KIND_FLOATING_CHECK_IN,
            self.ctx.clock(),
            activation_id=cert.activation_id,
            license_id=cert.license_id,
            chain=cert.chain,  # the vendor sees a copied data folder as two servers on one activation
        )

    def deactivation_request(self, *, offline: bool) -> bytes:
        cert = self.require_certificate().certificate
        kind = labels.KIND_OFFLINE_DEACTIVATION if offline else labels.KIND_DEACTIVATE
        blob, _ = self._sign_request(
            kind, self.ctx.clock(), activation_id=cert.activation_id, license_id=cert.license_id
        )
        return blob

    def vendor_url(self) -> str | None:
        """Where the pool was activated online (None: offline). Reads the database: off the loop."""
        with self.ctx.store.transaction() as tx:
            return tx.read_pool().vendor_url

    def install_certificate(
        self,
        blob: bytes,
        *,
        nonce: str | None = None,
        offline: bool = False,
        vendor_url: str | None = None,
        vendor_public_key: Ed25519PublicKey | None = None,
    ) -> FloatingCertificate:
        """Verify and install a vendor-signed certificate in one transaction.

        ``offline``: the certificate must answer the pending offline request (its nonce).
        ``nonce``: the online request it answers; a certificate that names another nonce is refused.
        ``vendor_public_key``: verify against this key and pin it (DIR/vendor.pub) once installed;
        default: the key already pinned.
        """
        now = self.ctx.clock()
        cert = self.verify_certificate(blob, vendor_public_key)
        if cert.seats < 0:
            raise LicensingError(ErrorCode.WRONG_DOCUMENT, "the floating certificate has a negative seat count")
        limit = lapsed(cert, now)
        if limit == "expires_at":
            raise LicensingError(ErrorCode.EXPIRED, "this floating certificate's license term has already ended")
        if limit == "valid_until":
            raise LicensingError(ErrorCode.EXPIRED, "this floating certificate is past its valid_until")
        with self.ctx.store.transaction() as tx:
            row = tx.lock_pool()
            if offline:
                if row.pending_nonce is None:
                    raise LicensingError(
                        ErrorCode.NO_PENDING_REQUEST,
                        "no floating request is pending: run 'mqtt-licensing floating request'",
                    )
                if cert.request_nonce != row.pending_nonce:
                    raise LicensingError(
                        ErrorCode.REQUEST_SUPERSEDED,
                        "this certificate answers another request (an older one, or another "
                        "server's): send the latest request code to the vendor",
                    )
            elif nonce is not None and cert.request_nonce is not None and cert.request_nonce != nonce:
                raise LicensingError(ErrorCode.REQUEST_SUPERSEDED, "the certificate answers another request")
            # Fewer seats than live leases: the newest ones lose their seat on renewal, so leases
            # issued until now must check their order; otherwise every lease fits and none need to.
            oversubscribed = row.certificate is not None and tx.count_active(now) > cert.seats
            values: dict[str, Any] = {
                "certificate": bytes(blob),
                "installed_at": now,
                "seat_check_before": now + 1 if oversubscribed else None,
                "deactivated_at": None,
                "deactivated_activation_id": None,
            }
            if offline:
                values.update(pending_nonce=None, pending_at=None, vendor_url=None)
            elif vendor_url is not None:
                values["vendor_url"] = vendor_url
            # The usage records the request code carried that the vendor now holds
            tx.usage.drop([ref for ref in map(parse_ref, cert.usage_stored) if ref is not None])
            tx.update_pool(**values)
        if vendor_public_key is not None:
            self.pin_vendor_key(vendor_public_key)
        return cert

    def forget_pool(self) -> FloatingCertificate | None:
        """Deactivated: drop the certificate and every lease at once; the pool stops leasing."""
        now = self.ctx.clock()
        with self.ctx.store.transaction() as tx:
            row = tx.lock_pool()
            old = None
            if row.certificate is not None:
                try:
                    old = self.verify_certificate(row.certificate)
                except LicensingError:
                    old = None
            tx.delete_all_leases()
            tx.update_pool(
                certificate=None,
                installed_at=None,
                pending_nonce=None,
                pending_at=None,
                deactivated_at=now,
                deactivated_activation_id=old.activation_id if old else None,
            )
        return old


__all__ = ["VENDOR_KEY_FILE", "FloatingContext", "FloatingPool", "PoolView", "lapsed"]
