"""The floating license server's domain logic: seat leasing over the pool of :mod:`.pool`.

No HTTP here (see :mod:`.app`) and no SQL (see :mod:`.store`). Time comes from an
injectable clock so tests can move it.

Chain of trust: the vendor signs a :class:`FloatingCertificate` naming this server's
public key, seats and features; this server signs each :class:`Lease` with that key
and embeds the certificate bytes, so an agent checks vendor -> server -> lease with
:func:`core.documents.verify_lease` and the one vendor key it pins.

Every lease request is an :class:`InstanceRequest` signed by the instance key:
acquire is verified against the key it carries (first contact), renew and release
against the key on record for that instance's lease. A request must be fresh
(``created_at`` within ``max_clock_skew`` seconds of the server clock) and its nonce is
accepted once, so a captured request cannot be replayed.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ...core import labels
from ...core.documents import FloatingCertificate, InstanceRequest, Lease, open_instance_request
from ...core.errors import ErrorCode, LicensingError
from ...core.signing import load_public_key, public_key_to_text
from .._db import create_db_engine
from .._files import database_url as resolve_database_url
from .._files import load_or_create_signing_key, remember_database_url
from .._requests import MAX_CLOCK_SKEW, check_fresh, peek_request, replayed
from . import clones
from .access import NewIdentityLimit, admits, new_join_token, normalized_rule, refused
from .pool import FloatingPool, PoolView, lapsed
from .store import FloatingStore, LeaseRecord, Tx
from .usage import FloatingUsage

log = logging.getLogger(__name__)

DEFAULT_TTL = 600  # seconds; the agent renews every TTL/3
KEY_NAME = "floating"
DB_FILE = "floating.db"


def system_clock() -> int:
    return int(time.time())


class FloatingService(FloatingPool, FloatingUsage):
    """The floating server's behaviour; thread-safe (all state is in the database)."""

    def __init__(
        self,
        store: FloatingStore,
        signing_key: Ed25519PrivateKey,
        *,
        data_dir: Path | None = None,
        vendor_public_key: Ed25519PublicKey | None = None,
        ttl: int = DEFAULT_TTL,
        clock: Callable[[], int] = system_clock,
        max_clock_skew: int = MAX_CLOCK_SKEW,
        new_identities_per_minute: int | None = None,
    ) -> None:
        if ttl <= 0:
            raise ValueError("the lease ttl must be positive")
        self.store = store
        self.signing_key = signing_key
        self.data_dir = data_dir
        self.ttl = int(ttl)
        self.clock = clock
        self.max_clock_skew = max_clock_skew
        self.leases_expired = 0  # expired leases this process reclaimed (the metrics count them)
        self._nonces_pruned_at = 0
        self.new_identities = NewIdentityLimit(new_identities_per_minute)
        self._init_pool(vendor_public_key)

    @classmethod
    def open(
        cls,
        data_dir: str | Path,
        *,
        database_url: str | None = None,
        vendor_public_key: Ed25519PublicKey | None = None,
        **options: Any,
    ) -> FloatingService:
        """Open (creating on first use) the floating server state in ``data_dir``: floating.key/.pub,
        floating.db (or ``database_url``, remembered in the folder), vendor.pub. ``vendor_public_key``
        given here is pinned."""
        data_dir = Path(data_dir)
        key = load_or_create_signing_key(data_dir, KEY_NAME)
        url = resolve_database_url(data_dir, DB_FILE, database_url)
        store = FloatingStore(create_db_engine(url))
        store.migrate()
        remember_database_url(data_dir, url)  # only once it worked
        service = cls(store, key, data_dir=data_dir, **options)
        if vendor_public_key is not None:
            service.pin_vendor_key(vendor_public_key)
        return service

    def close(self) -> None:
        self.store.close()

    def _usable_pool(self, tx: Tx, now: int) -> PoolView:
        pool = self._pool(tx, lock=True)
        if pool is None:
            raise LicensingError(
                ErrorCode.NOT_PROVISIONED, "this floating server has no pool: activate it against the vendor first"
            )
        limit = lapsed(pool.certificate, now)
        if limit == "expires_at":
            raise LicensingError(ErrorCode.EXPIRED, "the floating license term has ended")
        if limit == "valid_until":
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

    def _remember(self, tx: Tx, request: InstanceRequest, now: int) -> None:
        if not tx.remember_nonce(request.fingerprint, request.nonce, request.created_at):
            raise replayed()
        # Pruning is housekeeping, not protection (a request older than the clock window is
        # refused by check_fresh anyway): once a second per process instead of on every request.
        if now != self._nonces_pruned_at:
            self._nonces_pruned_at = now
            tx.prune_nonces(now - self.max_clock_skew - 1)

    def _sign_lease(self, row: LeaseRecord, pool: PoolView, now: int) -> bytes:
        return Lease(
            lease_id=row.lease_id,
            instance_fingerprint=row.instance_fingerprint,
            features=row.features,
            issued_at=now,
            expires_at=row.expires_at,
            ttl=self.ttl,
            certificate=pool.blob,
            chain=row.chain,
        ).sign(self.signing_key)

    @staticmethod
    def _check_seat_order(tx: Tx, lease: LeaseRecord, pool: PoolView, now: int) -> None:
        """A lease keeps its seat only while it is among the `seats` oldest (the pool may have shrunk).

        Counted only for a lease issued before the last shrink below the leases in use: one issued
        later found fewer than `seats` older leases, and older ones never come back, so it fits
        (this is what keeps a renewal free of a count over every lease)."""
        cert = pool.certificate
        if pool.seat_check_before is None or lease.issued_at >= pool.seat_check_before:
            return
        if tx.count_active_before(now, lease.issued_at, lease.lease_id) >= cert.seats:
            raise LicensingError(
                ErrorCode.NO_SEATS, f"the pool now has {cert.seats} seat(s) and this lease is beyond them"
            )

    # -- the lease API -------------------------------------------------------------------
    def acquire(self, request_blob: bytes, *, source: str = "local", join_token: str | None = None) -> bytes:
        """Lease a seat (or return the instance's existing one, extended); return the signed lease.

        A new seat needs the pool's access rules to admit the instance (:mod:`.access`)."""
        now = self.clock()
        request = open_instance_request(request_blob, labels.KIND_LEASE_ACQUIRE)
        check_fresh(request, now, self.max_clock_skew)
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
            clones.refuse_suspended(tx, self.signing_key, request, now)
            reclaimed = tx.delete_expired(now)
            expires = self._lease_expiry(cert, now)
            existing = tx.lease_by_fingerprint(request.fingerprint)
            if existing is not None:
                self._check_seat_order(tx, existing, pool, now)
                # A new chain: a copy still renewing with the old one is seen at its next renewal.
                rotated: dict[str, Any] = {"chain": secrets.token_hex(16), "chain_prev": None}
                tx.extend_lease(existing.lease_id, renewed_at=now, expires_at=expires, features=features, **rotated)
                row = replace(existing, features=features, renewed_at=now, expires_at=expires, **rotated)
            else:
                if not admits(tx.access_rules(), fingerprint=request.fingerprint, source=source, join_token=join_token):
                    raise refused()
                self.new_identities.check(source)
                used = tx.count_active(now)
                if used >= cert.seats:
                    raise LicensingError(
                        ErrorCode.NO_SEATS, f"all {cert.seats} seat(s) of the pool are leased; retry later"
                    )
                row = LeaseRecord(
                    "lse_" + secrets.token_hex(12),
                    request.fingerprint,
                    request.public_key,
                    features,
                    now,
                    now,
                    expires,
                    chain=secrets.token_hex(16),
                )
                tx.insert_lease(row)
        self.leases_expired += reclaimed  # after the commit: a refused acquire rolls its deletes back
        return self._sign_lease(row, pool, now)

    def renew(self, request_blob: bytes) -> bytes:
        """Extend the instance's lease; the request must be signed by the key the lease was given to."""
        now = self.clock()
        claimed = peek_request(request_blob).fingerprint
        suspend = False
        with self.store.transaction() as tx:
            pool = self._usable_pool(tx, now)
            cert = pool.certificate
            if tx.is_suspended(claimed):  # its lease is gone: verified against the key it carries
                clones.refuse_suspended(
                    tx, self.signing_key, open_instance_request(request_blob, labels.KIND_LEASE_RENEW), now
                )
            lease = tx.lease_by_fingerprint(claimed)
            if lease is None or lease.expires_at <= now:
                raise LicensingError(
                    ErrorCode.LEASE_NOT_FOUND, "no active lease for this instance (expired or released): acquire again"
                )
            request = open_instance_request(request_blob, labels.KIND_LEASE_RENEW, load_public_key(lease.public_key))
            check_fresh(request, now, self.max_clock_skew)
            self._remember(tx, request, now)
            missing = sorted(set(lease.features) - set(cert.features))
            if missing:
                raise LicensingError(
                    ErrorCode.FEATURE_UNAVAILABLE,
                    f"the pool no longer has {', '.join(missing)}: acquire with another feature set",
                )
            self._check_seat_order(tx, lease, pool, now)
            expires = self._lease_expiry(cert, now)
            chain = clones.follow_chain(lease, request.chain, now)
            tx.extend_lease(lease.lease_id, renewed_at=now, expires_at=expires, **chain)
            row = replace(lease, renewed_at=now, expires_at=expires, **chain)
            if row.clone_count and pool.clone_policy == "suspend":
                tx.delete_lease(lease.lease_id)  # the seat is free; both copies are refused from now on
                tx.suspend(claimed, lease.lease_id, now)
                suspend = True
        if suspend:  # raised once the suspension is committed
            log.warning("lease %s suspended: renewed by two instances %s", row.lease_id, claimed)
            raise clones.cloned(self.signing_key, row.lease_id, request, now)
        return self._sign_lease(row, pool, now)

    def release(self, request_blob: bytes) -> bool:
        """Give the seat back at once. Idempotent: False when the instance held no lease."""
        now = self.clock()
        claimed = peek_request(request_blob).fingerprint
        with self.store.transaction() as tx:
            tx.lock_pool()
            lease = tx.lease_by_fingerprint(claimed)
            known = load_public_key(lease.public_key) if lease is not None else None
            request = open_instance_request(request_blob, labels.KIND_LEASE_RELEASE, known)
            check_fresh(request, now, self.max_clock_skew)
            if lease is None:
                return False
            self._remember(tx, request, now)
            return tx.delete_lease(lease.lease_id)

    # -- access rules (issue 10, see .access) -----------------------------------------------
    def allow(self, kind: str, value: str | None = None) -> str | None:
        """Add a rule; for ``token`` with no value, make a new join token and return it (shown once)."""
        token = new_join_token() if kind == "token" and not value else None
        stored = normalized_rule(kind, token or value or "")
        with self.store.transaction() as tx:
            tx.add_access(kind, stored, self.clock())
        return token

    def never_provisioned(self) -> bool:
        """No certificate was ever installed and no access rule exists: a new pool."""
        with self.store.transaction() as tx:
            row = tx.read_pool()
            return row.installed_at is None and row.deactivated_at is None and not tx.access_rules()

    def set_clone_policy(self, policy: str) -> None:
        with self.store.transaction() as tx:
            tx.update_pool(clone_policy=clones.check_policy(policy))

    def unsuspend(self, fingerprint: str) -> bool:
        with self.store.transaction() as tx:
            return tx.unsuspend(fingerprint.strip().lower())

    def disallow(self, kind: str, value: str) -> bool:
        with self.store.transaction() as tx:
            return tx.remove_access(kind, normalized_rule(kind, value))

    # -- status -----------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Pool terms, seats used and free, every active lease. Read-only."""
        now = self.clock()
        with self.store.transaction() as tx:
            row = tx.read_pool()
            leases = tx.active_leases(now)
            rules = tx.access_rules()
            suspended = tx.suspended()
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
            # issue 10: who may take a new seat ([] = anyone who can reach this server)
            "access": [{"kind": k, "value": "(join token)" if k == "token" else v} for k, v in rules],
            "open": not rules,  # a pool provisioned before pools were closed by default
            "clone_policy": row.clone_policy or "flag",
            "suspended": [{"instance_fingerprint": fp, "lease_id": lid} for fp, lid in sorted(suspended.items())],
            "leases": [
                {
                    "lease_id": le.lease_id,
                    "instance_fingerprint": le.instance_fingerprint,
                    "features": list(le.features),
                    "issued_at": le.issued_at,
                    "renewed_at": le.renewed_at,
                    "expires_at": le.expires_at,
                    "cloned_at": le.cloned_at,
                    "clone_count": le.clone_count,
                }
                for le in leases
            ],
        }
        out["usage"] = self.usage_status()  # issue 16: brokers' records held for the vendor
        if row.deactivated_at is not None:
            out["deactivated_at"] = row.deactivated_at
            out["deactivated_activation_id"] = row.deactivated_activation_id
        if pool is not None:
            cert = pool.certificate
            state = "expired" if lapsed(cert, now) else "active"
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


def _feature_set(names: tuple[str, ...]) -> tuple[str, ...]:
    if any(not isinstance(n, str) or not n for n in names):
        raise LicensingError(ErrorCode.INVALID_FIELD, "features must be non-empty names")
    return tuple(sorted(set(names)))


__all__ = ["DB_FILE", "DEFAULT_TTL", "KEY_NAME", "FloatingService", "PoolView", "system_clock"]
