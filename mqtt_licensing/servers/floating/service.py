"""The floating license server's domain logic: pool provisioning and seat leasing.

No HTTP here (see :mod:`.app`) and no SQL (see :mod:`.store`). Time comes from an
injectable clock so tests can move it.

Chain of trust: the vendor signs a :class:`FloatingCertificate` naming this server's
public key, seats and features; this server signs each :class:`Lease` with that key
and embeds the certificate bytes, so an agent checks vendor -> server -> lease with
:func:`core.documents.verify_lease` and the one vendor key it pins. The server itself
never trusts its stored certificate either: it is re-verified against the pinned
vendor key (``vendor.pub`` in the data folder) before every use.

Every lease request is an :class:`InstanceRequest` signed by the instance key:
acquire is verified against the key it carries (first contact), renew and release
against the key on record for that instance's lease. A request must be fresh
(``created_at`` within ``max_skew`` seconds of the server clock) and its nonce is
accepted once, so a captured request cannot be replayed.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ...core import labels
from ...core.documents import FloatingCertificate, InstanceRequest, Lease, open_instance_request, sign_instance_request
from ...core.errors import ErrorCode, LicensingError
from ...core.keys import key_digest
from ...core.signing import (
    fingerprint,
    load_public_key,
    parse_envelope,
    public_bytes,
    public_key_from_text,
    public_key_to_text,
)
from ..common import create_db_engine, load_or_create_signing_key, load_or_create_token, sqlite_url
from .store import FloatingStore, LeaseRow, StoreTx

DEFAULT_TTL = 600  # seconds; the agent renews every TTL/3
MAX_CLOCK_SKEW = 600  # seconds between a request's created_at and the server clock
KEY_NAME = "floating"
DB_NAME = "floating.db"
VENDOR_KEY_FILE = "vendor.pub"


@dataclass(frozen=True)
class PoolView:
    """The installed certificate after verification, plus where it came from."""

    certificate: FloatingCertificate
    blob: bytes
    vendor_url: str | None


class FloatingService:
    def __init__(
        self,
        store: FloatingStore,
        signing_key: Ed25519PrivateKey,
        *,
        data_dir: Path | None = None,
        vendor_public_key: Ed25519PublicKey | None = None,
        ttl: int = DEFAULT_TTL,
        clock: Callable[[], float] = time.time,
        max_skew: int = MAX_CLOCK_SKEW,
    ) -> None:
        if ttl <= 0:
            raise ValueError("the lease ttl must be positive")
        self.store = store
        self.key = signing_key
        self.public_key = public_bytes(signing_key)
        self.fingerprint = fingerprint(self.public_key)
        self.data_dir = data_dir
        self.ttl = int(ttl)
        self.clock = clock
        self.max_skew = max_skew
        self._fixed_vendor_key = vendor_public_key
        self._vendor_cache: tuple[Any, Ed25519PublicKey | None] = (None, None)
        self._verified: dict[tuple[bytes, bytes], FloatingCertificate] = {}

    def now(self) -> int:
        return int(self.clock())

    # -- the pinned vendor key -------------------------------------------------------
    @property
    def vendor_key_path(self) -> Path | None:
        return self.data_dir / VENDOR_KEY_FILE if self.data_dir is not None else None

    def vendor_key(self) -> Ed25519PublicKey | None:
        """The pinned vendor key: given at construction, else DIR/vendor.pub (re-read when it changes)."""
        if self._fixed_vendor_key is not None:
            return self._fixed_vendor_key
        path = self.vendor_key_path
        if path is None:
            return None
        try:
            text = path.read_text()  # tiny; re-read every time so a newly pinned key is seen at once
        except FileNotFoundError:
            return None
        if self._vendor_cache[0] != text:
            try:
                key = public_key_from_text(text)
            except (LicensingError, ValueError) as exc:
                raise LicensingError(ErrorCode.STATE_CORRUPT, f"{path} is not a vendor public key: {exc}") from None
            self._vendor_cache = (text, key)
        return self._vendor_cache[1]

    def pin_vendor_key(self, key: Ed25519PublicKey) -> None:
        """Store the vendor key every certificate must verify against (DIR/vendor.pub, atomically)."""
        self._fixed_vendor_key = None if self.data_dir is not None else key
        path = self.vendor_key_path
        if path is None:
            return
        text = public_key_to_text(key) + "\n"
        if path.exists() and path.read_text() == text:
            return
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)

    # -- certificates ------------------------------------------------------------------
    def verify_certificate(self, blob: bytes, vendor: Ed25519PublicKey | None = None) -> FloatingCertificate:
        """Verify a floating certificate against the pinned vendor key (or ``vendor``) and check it
        names this server."""
        vendor = vendor or self.vendor_key()
        if vendor is None:
            raise LicensingError(ErrorCode.NOT_PROVISIONED, "no vendor public key is pinned (provide --vendor-key)")
        cache_key = (bytes(blob), public_bytes(vendor))
        cert = self._verified.get(cache_key)
        if cert is None:
            cert = FloatingCertificate.open(bytes(blob), vendor)
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

    def _pool(self, tx: StoreTx, *, lock: bool) -> PoolView | None:
        row = tx.lock_pool() if lock else tx.read_pool()
        if row.certificate is None:
            return None
        try:
            cert = self.verify_certificate(row.certificate)
        except LicensingError as exc:
            raise LicensingError(
                ErrorCode.NOT_PROVISIONED, f"the installed floating certificate cannot be trusted: {exc.message}"
            ) from None
        return PoolView(cert, row.certificate, row.vendor_url)

    def _usable_pool(self, tx: StoreTx, now: int) -> PoolView:
        pool = self._pool(tx, lock=True)
        if pool is None:
            raise LicensingError(
                ErrorCode.NOT_PROVISIONED, "this floating server has no pool: activate it against the vendor first"
            )
        cert = pool.certificate
        if cert.expires_at is not None and now >= cert.expires_at:
            raise LicensingError(ErrorCode.EXPIRED, "the floating license term has ended")
        if cert.valid_until is not None and now >= cert.valid_until:
            raise LicensingError(
                ErrorCode.EXPIRED,
                "the floating certificate was not refreshed before its "
                "valid_until: run 'mqtt-licensing floating refresh'",
            )
        return pool

    def _lease_expiry(self, cert: FloatingCertificate, now: int) -> int:
        expires = now + self.ttl
        for limit in (cert.expires_at, cert.valid_until):
            if limit is not None:
                expires = min(expires, limit)
        return expires

    def _check_fresh(self, request: InstanceRequest, now: int) -> None:
        drift = request.created_at - now
        if abs(drift) > self.max_skew:
            raise LicensingError(
                ErrorCode.BAD_REQUEST,
                f"the request was created {abs(drift)} s {'after' if drift > 0 else 'before'} "
                f"the server's time (at most {self.max_skew} s): check both clocks",
            )

    def _remember(self, tx: StoreTx, request: InstanceRequest, now: int) -> None:
        if not tx.remember_nonce(request.fingerprint, request.nonce, request.created_at):
            raise LicensingError(ErrorCode.BAD_REQUEST, "this request was already used (replay): sign a new one")
        tx.prune_nonces(now - self.max_skew - 1)

    def _sign_lease(self, row: LeaseRow, pool: PoolView, now: int) -> bytes:
        return Lease(
            lease_id=row.lease_id,
            instance_fingerprint=row.instance_fingerprint,
            features=row.features,
            issued_at=now,
            expires_at=row.expires_at,
            ttl=self.ttl,
            certificate=pool.blob,
        ).sign(self.key)

    @staticmethod
    def _check_seat_order(tx: StoreTx, lease: LeaseRow, cert: FloatingCertificate, now: int) -> None:
        """A lease keeps its seat only while it is among the `seats` oldest (the pool may have shrunk)."""
        if tx.count_active_before(now, lease.issued_at, lease.lease_id) >= cert.seats:
            raise LicensingError(
                ErrorCode.NO_SEATS, f"the pool now has {cert.seats} seat(s) and this lease is beyond them"
            )

    # -- the lease API -------------------------------------------------------------------
    def acquire(self, request_blob: bytes) -> bytes:
        """Lease a seat (or return the instance's existing one, extended); return the signed lease."""
        now = self.now()
        request = open_instance_request(request_blob, labels.KIND_LEASE_ACQUIRE)
        self._check_fresh(request, now)
        requested = _feature_set(request.features)
        with self.store.transaction() as tx:
            pool = self._usable_pool(tx, now)
            cert = pool.certificate
            missing = sorted(set(requested) - set(cert.features))
            if missing:
                raise LicensingError(
                    ErrorCode.FEATURE_UNAVAILABLE,
                    f"the pool does not have {', '.join(missing)} (it has: {', '.join(cert.features) or 'nothing'})",
                )
            features = requested or tuple(sorted(cert.features))
            self._remember(tx, request, now)
            tx.delete_expired(now)
            expires = self._lease_expiry(cert, now)
            existing = tx.lease_by_fingerprint(request.fingerprint)
            if existing is not None:
                self._check_seat_order(tx, existing, cert, now)
                tx.extend_lease(existing.lease_id, renewed_at=now, expires_at=expires, features=features)
                row = LeaseRow(
                    existing.lease_id,
                    existing.instance_fingerprint,
                    existing.public_key,
                    features,
                    existing.issued_at,
                    now,
                    expires,
                )
            else:
                used = tx.count_active(now)
                if used >= cert.seats:
                    raise LicensingError(
                        ErrorCode.NO_SEATS, f"all {cert.seats} seat(s) of the pool are leased; retry later"
                    )
                row = LeaseRow(
                    "lse_" + secrets.token_hex(12), request.fingerprint, request.public_key, features, now, now, expires
                )
                tx.insert_lease(row)
        return self._sign_lease(row, pool, now)

    def renew(self, request_blob: bytes) -> bytes:
        """Extend the instance's lease; the request must be signed by the key the lease was given to."""
        now = self.now()
        claimed = _claimed_fingerprint(request_blob)
        with self.store.transaction() as tx:
            pool = self._usable_pool(tx, now)
            cert = pool.certificate
            lease = tx.lease_by_fingerprint(claimed)
            if lease is None or lease.expires_at <= now:
                raise LicensingError(
                    ErrorCode.LEASE_NOT_FOUND, "no active lease for this instance (expired or released): acquire again"
                )
            request = open_instance_request(request_blob, labels.KIND_LEASE_RENEW, load_public_key(lease.public_key))
            self._check_fresh(request, now)
            self._remember(tx, request, now)
            missing = sorted(set(lease.features) - set(cert.features))
            if missing:
                raise LicensingError(
                    ErrorCode.FEATURE_UNAVAILABLE,
                    f"the pool no longer has {', '.join(missing)}: acquire with another feature set",
                )
            self._check_seat_order(tx, lease, cert, now)
            expires = self._lease_expiry(cert, now)
            tx.extend_lease(lease.lease_id, renewed_at=now, expires_at=expires)
            row = LeaseRow(
                lease.lease_id,
                lease.instance_fingerprint,
                lease.public_key,
                lease.features,
                lease.issued_at,
                now,
                expires,
            )
        return self._sign_lease(row, pool, now)

    def release(self, request_blob: bytes) -> bool:
        """Give the seat back at once. Idempotent: False when the instance held no lease."""
        now = self.now()
        claimed = _claimed_fingerprint(request_blob)
        with self.store.transaction() as tx:
            tx.lock_pool()
            lease = tx.lease_by_fingerprint(claimed)
            known = load_public_key(lease.public_key) if lease is not None else None
            request = open_instance_request(request_blob, labels.KIND_LEASE_RELEASE, known)
            self._check_fresh(request, now)
            if lease is None:
                return False
            self._remember(tx, request, now)
            return tx.delete_lease(lease.lease_id)

    # -- provisioning ---------------------------------------------------------------------
    def _sign_request(self, kind: str, now: int, **fields: Any) -> tuple[bytes, str]:
        nonce = secrets.token_hex(16)
        return sign_instance_request(self.key, kind=kind, nonce=nonce, created_at=now, **fields), nonce

    def activation_request(self, license_key: str) -> tuple[bytes, str]:
        """Online activation: a signed floating_activate request; returns (blob, nonce)."""
        return self._sign_request(labels.KIND_FLOATING_ACTIVATE, self.now(), key_digest=key_digest(license_key))

    def offline_request(self, license_key: str) -> bytes:
        """Offline activation: a signed floating_request; its nonce becomes the pending one
        (a new request supersedes the previous)."""
        now = self.now()
        blob, nonce = self._sign_request(labels.KIND_FLOATING_REQUEST, now, key_digest=key_digest(license_key))
        with self.store.transaction() as tx:
            tx.lock_pool()
            tx.update_pool(pending_nonce=nonce, pending_at=now)
        return blob

    def current_certificate(self) -> FloatingCertificate | None:
        """The installed certificate, verified (expired or not); None when not provisioned."""
        with self.store.transaction() as tx:
            pool = self._pool(tx, lock=False)
        return pool.certificate if pool is not None else None

    def _require_certificate(self) -> PoolView:
        with self.store.transaction() as tx:
            pool = self._pool(tx, lock=False)
        if pool is None:
            raise LicensingError(ErrorCode.NOT_ACTIVATED, "this floating server is not activated")
        return pool

    def check_in_request(self) -> tuple[bytes, str]:
        pool = self._require_certificate()
        return self._sign_request(
            labels.KIND_FLOATING_CHECK_IN,
            self.now(),
            activation_id=pool.certificate.activation_id,
            license_id=pool.certificate.license_id,
        )

    def deactivation_request(self, *, offline: bool) -> bytes:
        pool = self._require_certificate()
        kind = labels.KIND_OFFLINE_DEACTIVATION if offline else labels.KIND_DEACTIVATE
        blob, _ = self._sign_request(
            kind, self.now(), activation_id=pool.certificate.activation_id, license_id=pool.certificate.license_id
        )
        return blob

    @property
    def vendor_url(self) -> str | None:
        with self.store.transaction() as tx:
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
        now = self.now()
        cert = self.verify_certificate(blob, vendor_public_key)
        if cert.seats < 0:
            raise LicensingError(ErrorCode.WRONG_DOCUMENT, "the floating certificate has a negative seat count")
        if cert.expires_at is not None and now >= cert.expires_at:
            raise LicensingError(ErrorCode.EXPIRED, "this floating certificate's license term has already ended")
        if cert.valid_until is not None and now >= cert.valid_until:
            raise LicensingError(ErrorCode.EXPIRED, "this floating certificate is past its valid_until")
        with self.store.transaction() as tx:
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
            values: dict[str, Any] = {
                "certificate": bytes(blob),
                "installed_at": now,
                "deactivated_at": None,
                "deactivated_activation_id": None,
            }
            if offline:
                values.update(pending_nonce=None, pending_at=None, vendor_url=None)
            elif vendor_url is not None:
                values["vendor_url"] = vendor_url
            tx.update_pool(**values)
        if vendor_public_key is not None:
            self.pin_vendor_key(vendor_public_key)
        return cert

    def forget_pool(self) -> FloatingCertificate | None:
        """Deactivated: drop the certificate and every lease at once; the pool stops leasing."""
        now = self.now()
        with self.store.transaction() as tx:
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

    # -- status -----------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Pool terms, seats used and free, every active lease. Read-only."""
        now = self.now()
        with self.store.transaction() as tx:
            row = tx.read_pool()
            leases = tx.active_leases(now)
            problem = None
            pool = None
            try:
                pool = self._pool(tx, lock=False)
            except LicensingError as exc:
                problem = exc.message
        out: dict[str, Any] = {
            "server_fingerprint": self.fingerprint,
            "server_public_key": public_key_to_text(self.public_key),
            "now": now,
            "ttl": self.ttl,
            "provisioned": pool is not None,
            "pending_request": row.pending_nonce is not None,
            "vendor_url": row.vendor_url,
            "pool": None,
            "problem": problem,
            "seats": {"total": 0, "used": len(leases), "free": 0},
            "leases": [
                {
                    "lease_id": le.lease_id,
                    "instance_fingerprint": le.instance_fingerprint,
                    "features": list(le.features),
                    "issued_at": le.issued_at,
                    "renewed_at": le.renewed_at,
                    "expires_at": le.expires_at,
                }
                for le in leases
            ],
        }
        if row.deactivated_at is not None:
            out["deactivated_at"] = row.deactivated_at
            out["deactivated_activation_id"] = row.deactivated_activation_id
        if pool is not None:
            cert = pool.certificate
            state = "active"
            if (cert.expires_at is not None and now >= cert.expires_at) or (
                cert.valid_until is not None and now >= cert.valid_until
            ):
                state = "expired"
            out["pool"] = {
                "state": state,
                "license_id": cert.license_id,
                "key_mask": cert.key_mask,
                "activation_id": cert.activation_id,
                "seats": cert.seats,
                "features": list(cert.features),
                "issued_at": cert.issued_at,
                "valid_until": cert.valid_until,
                "expires_at": cert.expires_at,
                "support_until": cert.support_until,
                "max_connections": cert.max_connections,
            }
            out["seats"] = {"total": cert.seats, "used": len(leases), "free": max(cert.seats - len(leases), 0)}
        return out

    def close(self) -> None:
        self.store.dispose()


def _feature_set(names: tuple[str, ...]) -> tuple[str, ...]:
    if any(not isinstance(n, str) or not n for n in names):
        raise LicensingError(ErrorCode.INVALID_FIELD, "features must be non-empty names")
    return tuple(sorted(set(names)))


def _claimed_fingerprint(blob: bytes) -> str:
    """The fingerprint a request claims, read before verification only to find the key on record."""
    claimed = InstanceRequest.from_body(parse_envelope(blob).unverified_body())
    return claimed.fingerprint


def open_service(
    data_dir: Path,
    *,
    ttl: int = DEFAULT_TTL,
    vendor_public_key: Ed25519PublicKey | None = None,
    db_url: str | None = None,
    clock: Callable[[], float] = time.time,
    max_skew: int = MAX_CLOCK_SKEW,
) -> FloatingService:
    """The service over a data folder: floating.key/.pub, floating.db (or ``db_url``), vendor.pub.

    ``vendor_public_key`` given here is pinned (written to vendor.pub)."""
    data_dir = Path(data_dir)
    key = load_or_create_signing_key(data_dir, KEY_NAME)
    store = FloatingStore(create_db_engine(db_url or sqlite_url(data_dir, DB_NAME)))
    service = FloatingService(store, key, data_dir=data_dir, ttl=ttl, clock=clock, max_skew=max_skew)
    if vendor_public_key is not None:
        service.pin_vendor_key(vendor_public_key)
    return service


def admin_token(data_dir: Path) -> str:
    return load_or_create_token(Path(data_dir))


__all__ = ["DEFAULT_TTL", "FloatingService", "PoolView", "admin_token", "open_service"]
