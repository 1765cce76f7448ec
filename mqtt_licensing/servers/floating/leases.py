"""Seat leasing: acquire, renew and release, each a signed :class:`InstanceRequest`.

Acquire is verified against the key the request carries (first contact), renew and release
against the key on record for that instance's lease. A request must be fresh (``created_at``
within ``max_clock_skew`` seconds of the server clock) and its nonce is accepted once, so a
captured request cannot be replayed.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import replace
from typing import Any

from ...core import labels
from ...core.documents import (
    FloatingCertificate,
    InstanceRequest,
    Lease,
    check_instance_request,
    open_instance_request,
)
from ...core.errors import ErrorCode, LicensingError
from ...core.signing import load_public_key
from .._jobs import Job
from .._requests import check_fresh, peek, replayed
from . import access, clones, names
from .access import NewIdentityLimit, admits, refused
from .lease_rows import LeaseRecord, PoolRecord
from .pool import FloatingContext, FloatingPool, PoolView, lapsed
from .store import Tx

log = logging.getLogger(__name__)


class Leases:
    """The lease API over the pool; counts the expired leases it reclaims (the metrics read it)."""

    def __init__(self, ctx: FloatingContext, pool: FloatingPool, new_identities: NewIdentityLimit) -> None:
        self.ctx = ctx
        self.pool = pool
        self.new_identities = new_identities
        self.expired = 0  # expired leases this process reclaimed
        self._nonces_pruned_at = 0

    def _usable_pool(self, row: PoolRecord, now: int) -> PoolView:
        pool = self.pool.view_of(row)
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
        expires = now + self.ctx.ttl
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
            tx.prune_nonces(now - self.ctx.max_clock_skew - 1)

    def _sign_lease(self, row: LeaseRecord, pool: PoolView, now: int) -> bytes:
        return Lease(
            lease_id=row.lease_id,
            instance_fingerprint=row.instance_fingerprint,
            features=row.features,
            issued_at=now,
            expires_at=row.expires_at,
            ttl=self.ctx.ttl,
            certificate=pool.blob,
            chain=row.chain,
        ).sign(self.ctx.signing_key)

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

    def acquire(self, request_blob: bytes, *, source: str = "local", join_token: str | None = None) -> bytes:
        """Lease a seat (or return the instance's existing one, extended); return the signed lease.

        A new seat needs the pool's access rules to admit the instance (:mod:`.access`)."""
        return self.acquire_job(request_blob, source=source, join_token=join_token).run(self.ctx.store)

    def _seats_exhausted(self, exc: Exception) -> None:
        if isinstance(exc, LicensingError) and exc.code == ErrorCode.NO_SEATS:
            # its transaction rolled back: the event gets its own
            self.ctx.event(None, "floating.seats_exhausted", message=exc.message)

    def acquire_job(
        self, request_blob: bytes, *, source: str = "local", join_token: str | None = None
    ) -> Job[Any, bytes]:
        """:meth:`acquire` as a :class:`.._jobs.Job`."""
        now = self.ctx.clock()
        envelope, peeked = peek(request_blob)  # first contact: verified against the key it carries
        request = check_instance_request(
            envelope, peeked, labels.KIND_LEASE_ACQUIRE, load_public_key(peeked.public_key)
        )
        check_fresh(request, now, self.ctx.max_clock_skew)
        requested = _feature_set(request.features)

        def work(tx: Tx) -> tuple[LeaseRecord, PoolView, int]:
            context = tx.lease_context(request.fingerprint)
            pool = self._usable_pool(context.pool, now)
            cert = pool.certificate
            missing = sorted(set(requested) - set(cert.features))
            if missing:
                raise LicensingError(
                    ErrorCode.FEATURE_UNAVAILABLE,
                    f"the pool does not have {', '.join(missing)} (it has: {', '.join(cert.features) or 'nothing'})",
                )
            features = requested or tuple(sorted(cert.features))
            self._remember(tx, request, now)
            if context.suspended is not None:
                raise clones.cloned(self.ctx.signing_key, context.suspended, request, now)
            reclaimed = tx.delete_expired(now)
            expires = self._lease_expiry(cert, now)
            existing = context.lease
            if existing is not None and existing.expires_at <= now:
                existing = None  # deleted just above: a new seat
            known: bool | None = None  # whether this pool leased to the instance before (read once)
            if existing is not None:
                self._check_seat_order(tx, existing, pool, now)
                # A new chain: a copy still renewing with the old one is seen at its next renewal.
                rotated: dict[str, Any] = {"chain": secrets.token_hex(16), "chain_prev": None}
                rotated.update(names.changed(tx.conn, request.fingerprint, existing.label, request.label, now))
                tx.extend_lease(existing.lease_id, renewed_at=now, expires_at=expires, features=features, **rotated)
                row = replace(existing, features=features, renewed_at=now, expires_at=expires, **rotated)
            else:
                known = access.leased_before(tx, request.fingerprint)
                if not known and not admits(
                    tx.access_rules(), fingerprint=request.fingerprint, source=source, join_token=join_token
                ):
                    raise refused()
                if not known:
                    self.new_identities.check(source)
                # The counter, not a COUNT over every lease: the expired ones were deleted above.
                used = tx.leases_held()
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
                before = names.last(tx.conn, request.fingerprint)
                # A returning instance keeps its last label when it sends none.
                update = {"label": before} | names.changed(tx.conn, request.fingerprint, before, request.label, now)
                row = replace(row, **update)
                tx.insert_lease(row)
            access.remember(tx, request.fingerprint, now, known=known)
            return row, pool, reclaimed

        def finish(done: tuple[LeaseRecord, PoolView, int]) -> bytes:
            row, pool, reclaimed = done  # committed: answered once durable
            self.expired += reclaimed  # after the commit: a refused acquire rolls its deletes back
            return self._sign_lease(row, pool, now)

        return Job(work, finish, self._seats_exhausted)

    def renew(self, request_blob: bytes) -> bytes:
        """Extend the instance's lease; the request must be signed by the key the lease was given to."""
        return self.renew_job(request_blob).run(self.ctx.store)

    def renew_job(self, request_blob: bytes) -> Job[Any, bytes]:
        """:meth:`renew` as a :class:`.._jobs.Job` (the server batches them on one thread)."""
        now = self.ctx.clock()
        envelope, peeked = peek(request_blob)
        claimed = peeked.fingerprint

        def work(tx: Tx) -> tuple[LeaseRecord, PoolView, InstanceRequest, bool]:
            context = tx.lease_context(claimed)
            pool = self._usable_pool(context.pool, now)
            cert = pool.certificate
            if context.suspended is not None:  # its lease is gone: verified against the key it carries
                request = open_instance_request(request_blob, labels.KIND_LEASE_RENEW)
                raise clones.cloned(self.ctx.signing_key, context.suspended, request, now)
            lease = context.lease
            if lease is None or lease.expires_at <= now:
                raise LicensingError(
                    ErrorCode.LEASE_NOT_FOUND, "no active lease for this instance (expired or released): acquire again"
                )
            request = check_instance_request(
                envelope, peeked, labels.KIND_LEASE_RENEW, load_public_key(lease.public_key)
            )
            check_fresh(request, now, self.ctx.max_clock_skew)
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
            chain.update(names.changed(tx.conn, claimed, lease.label, request.label, now))
            row = replace(lease, renewed_at=now, expires_at=expires, **chain)
            tx.write_renewal(row)
            if row.clone_count > lease.clone_count:
                self.ctx.event(tx.conn, "lease.cloned", lease_id=lease.lease_id, policy=pool.clone_policy)
            if row.clone_count and pool.clone_policy == "suspend":
                tx.delete_lease(lease.lease_id)  # the seat is free; both copies are refused from now on
                tx.suspend(claimed, lease.lease_id, now)
                return row, pool, request, True
            return row, pool, request, False

        def finish(done: tuple[LeaseRecord, PoolView, InstanceRequest, bool]) -> bytes:
            row, pool, request, suspend = done  # committed: answered once durable
            if suspend:  # raised once the suspension is committed
                log.warning("lease %s suspended: renewed by two instances %s", row.lease_id, claimed)
                raise clones.cloned(self.ctx.signing_key, row.lease_id, request, now)
            return self._sign_lease(row, pool, now)

        return Job(work, finish)

    def release(self, request_blob: bytes) -> bool:
        """Give the seat back at once. Idempotent: False when the instance held no lease."""
        return self.release_job(request_blob).run(self.ctx.store)

    def release_job(self, request_blob: bytes) -> Job[bool, bool]:
        """:meth:`release` as a :class:`.._jobs.Job`."""
        now = self.ctx.clock()
        envelope, peeked = peek(request_blob)
        claimed = peeked.fingerprint

        def work(tx: Tx) -> bool:
            lease = tx.lease_context(claimed).lease  # the pool row locked, as every lease request
            if lease is None:  # verified against the key it carries, for the answer
                request = open_instance_request(request_blob, labels.KIND_LEASE_RELEASE)
            else:
                known = load_public_key(lease.public_key)
                request = check_instance_request(envelope, peeked, labels.KIND_LEASE_RELEASE, known)
            check_fresh(request, now, self.ctx.max_clock_skew)
            if lease is None:
                return False
            self._remember(tx, request, now)
            access.remember(tx, claimed, now)  # leases from before the memory existed come back too
            return tx.delete_lease(lease.lease_id)

        return Job(work, lambda released: released)  # committed: answered once durable


def _feature_set(names: tuple[str, ...]) -> tuple[str, ...]:
    if any(not isinstance(n, str) or not n for n in names):
        raise LicensingError(ErrorCode.INVALID_FIELD, "features must be non-empty names")
    return tuple(sorted(set(names)))


__all__ = ["Leases"]
