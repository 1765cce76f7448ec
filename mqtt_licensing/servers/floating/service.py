"""The floating license server's domain logic: a facade over the pool (:mod:`.pool`), the leases
(:mod:`.leases`) and the brokers' usage records (:mod:`.usage`).

No HTTP here (see :mod:`.app`) and no SQL (see :mod:`.store`). Time comes from an
injectable clock so tests can move it.

Chain of trust: the vendor signs a :class:`FloatingCertificate` naming this server's
public key, seats and features; this server signs each :class:`Lease` with that key
and embeds the certificate bytes, so an agent checks vendor -> server -> lease with
:func:`core.documents.verify_lease` and the one vendor key it pins.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ...core.documents import FloatingCertificate
from ...core.errors import LicensingError
from ...core.keyring import KeyRing
from ...core.listing import LeaseFilter
from ...core.signing import public_key_to_text
from .._db import create_db_engine, reading
from .._files import database_url as resolve_database_url
from .._files import load_or_create_signing_key, remember_database_url
from .._jobs import JobBatcher
from .._requests import MAX_CLOCK_SKEW
from ..defaults import FLOATING_TTL
from . import access, clones, names
from .access import NewIdentityLimit, new_join_token, normalized_rule
from .leases import Leases
from .pool import FloatingContext, FloatingPool, PoolView, lapsed
from .store import FloatingStore, Tx
from .usage import FloatingUsage

log = logging.getLogger(__name__)

DEFAULT_TTL = FLOATING_TTL  # seconds; the agent renews every TTL/3
EVERY_LEASE = LeaseFilter()
KEY_NAME = "floating"
DB_FILE = "floating.db"


def system_clock() -> int:
    return int(time.time())


@dataclass(frozen=True)
class PoolGauges:
    seats: int  # in the pool (0 before provisioning)
    used: int  # leased now
    cloned: int  # active leases renewed by two instances
    provisioned: bool


class FloatingService:
    """The floating server's behaviour; thread-safe (all state is in the database).

    A facade: one frozen :class:`.pool.FloatingContext` and the parts built over it
    (:attr:`pool`, :attr:`leases`, :attr:`usage`); its methods delegate to them. Every method is
    synchronous and may block on the database: call it through ``run_in_threadpool`` /
    ``to_thread`` from a loop."""

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
        self.ctx = FloatingContext(store, signing_key, clock, int(ttl), max_clock_skew, data_dir)
        self.pool = FloatingPool(self.ctx, vendor_public_key)
        self.new_identities = NewIdentityLimit(new_identities_per_minute)
        self.leases = Leases(self.ctx, self.pool, self.new_identities)
        self.usage = FloatingUsage(self.ctx, self.pool)
        # The server's lease requests, batched on one thread (the routes await them there)
        self.batcher = JobBatcher(store, name="lease")

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
        self.batcher.close()
        self.ctx.store.close()

    # -- what callers read --------------------------------------------------------------------
    @property
    def store(self) -> FloatingStore:
        return self.ctx.store

    @property
    def signing_key(self) -> Ed25519PrivateKey:
        return self.ctx.signing_key

    @property
    def data_dir(self) -> Path | None:
        return self.ctx.data_dir

    @property
    def ttl(self) -> int:
        return self.ctx.ttl

    def clock(self) -> int:
        return self.ctx.clock()

    @property
    def public_key(self) -> bytes:
        return self.pool.public_key

    @property
    def fingerprint(self) -> str:
        return self.pool.fingerprint

    @property
    def leases_expired(self) -> int:
        """Expired leases this process reclaimed (the metrics count them)."""
        return self.leases.expired

    # -- the lease API (:mod:`.leases`) -------------------------------------------------------
    def acquire(self, request_blob: bytes, *, source: str = "local", join_token: str | None = None) -> bytes:
        return self.leases.acquire(request_blob, source=source, join_token=join_token)

    def renew(self, request_blob: bytes) -> bytes:
        return self.leases.renew(request_blob)

    def release(self, request_blob: bytes) -> bool:
        return self.leases.release(request_blob)

    # -- the pool and its provisioning (:mod:`.pool`) -----------------------------------------
    def vendor_key(self) -> Ed25519PublicKey | None:
        return self.pool.vendor_key()

    def vendor_keys(self) -> KeyRing | None:
        """The pinned vendor key and the rotations it endorsed since (servers/floating/trust.py)."""
        return self.pool.vendor_keys()

    def pin_vendor_key(self, key: Ed25519PublicKey) -> None:
        self.pool.pin_vendor_key(key)

    def verify_certificate(self, blob: bytes, vendor: Ed25519PublicKey | None = None) -> FloatingCertificate:
        return self.pool.verify_certificate(blob, vendor)

    def vendor_url(self) -> str | None:
        return self.pool.vendor_url()

    def activation_request(self, license_key: str) -> tuple[bytes, str]:
        return self.pool.activation_request(license_key)

    def offline_request(self, license_key: str) -> bytes:
        """Offline activation: a signed floating_request carrying the oldest held usage records."""
        return self.pool.offline_request(license_key, self.usage.usage_fields())

    def check_in_request(self) -> tuple[bytes, str]:
        return self.pool.check_in_request()

    def deactivation_request(self, *, offline: bool) -> bytes:
        return self.pool.deactivation_request(offline=offline)

    def install_certificate(
        self,
        blob: bytes,
        *,
        nonce: str | None = None,
        offline: bool = False,
        vendor_url: str | None = None,
        vendor_public_key: Ed25519PublicKey | None = None,
    ) -> FloatingCertificate:
        return self.pool.install_certificate(
            blob, nonce=nonce, offline=offline, vendor_url=vendor_url, vendor_public_key=vendor_public_key
        )

    def forget_pool(self) -> FloatingCertificate | None:
        return self.pool.forget_pool()

    # -- usage records (:mod:`.usage`) --------------------------------------------------------
    def accept_usage(self, request_blob: bytes, records: list[bytes]) -> bytes:
        return self.usage.accept_usage(request_blob, records)

    def forward_batch(self) -> tuple[bytes, str, list[tuple[str, int]]] | None:
        return self.usage.forward_batch()

    def forwarded(self, ack_blob: bytes, nonce: str, sent: list[tuple[str, int]], vendor: Any) -> int:
        return self.usage.forwarded(ack_blob, nonce, sent, vendor)

    def usage_status(self) -> dict[str, Any]:
        return self.usage.usage_status()

    def gauges(self) -> PoolGauges:
        """What the metrics show: seats, leases in use and seen cloned. Counted in SQL, read-only."""
        now = self.clock()
        with self.store.transaction() as tx:
            used, cloned = tx.lease_gauges(now)
            try:
                pool = self.pool.view(tx, lock=False)
            except LicensingError:  # an untrusted certificate leases nothing: not provisioned
                pool = None
        seats = pool.certificate.seats if pool is not None else 0
        return PoolGauges(seats=seats, used=used, cloned=cloned, provisioned=pool is not None)

    # -- access rules (see .access) -----------------------------------------------
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
        rule = normalized_rule(kind, value)
        with self.store.transaction() as tx:
            forgotten = kind == "fingerprint" and access.forget(tx, rule)
            return tx.remove_access(kind, rule) or forgotten

    # -- status -----------------------------------------------------------------------------
    def status(self, wanted: LeaseFilter = EVERY_LEASE) -> dict[str, Any]:
        """Pool terms, seats used and free, the active leases ``wanted`` picks. Read-only."""
        now = self.clock()
        with reading(self.store.engine) as conn:  # read-only: renewals never wait for a status
            tx = Tx(conn)
            row = tx.read_pool()
            leases = tx.active_leases(now)
            label_history = names.histories(tx.conn, (le.instance_fingerprint for le in leases))
            shown = [
                le
                for le in leases
                if wanted.matches([le.label, *(h["label"] for h in label_history[le.instance_fingerprint])],
                                  le.renewed_at, now)
            ]  # fmt: skip
            rules = tx.access_rules()
            remembered = access.remembered_count(tx)
            suspended = tx.suspended()
            problem = None
            pool = None
            try:
                pool = self.pool.view(tx, lock=False)
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
            # Who may take a new seat ([] = anyone who can reach this server)
            "access": [{"kind": k, "value": "(join token)" if k == "token" else v} for k, v in rules],
            "remembered_instances": remembered,  # leased to before: admitted again after a restart
            "open": not rules,  # a pool provisioned before pools were closed by default
            "clone_policy": row.clone_policy or "flag",
            "suspended": [{"instance_fingerprint": fp, "lease_id": lid} for fp, lid in sorted(suspended.items())],
            "leases": [
                {
                    "lease_id": le.lease_id,
                    "instance_fingerprint": le.instance_fingerprint,
                    "label": le.label,  # untrusted text the instance chose: escape it wherever it is shown
                    "label_history": label_history[le.instance_fingerprint],
                    "features": list(le.features),
                    "issued_at": le.issued_at,
                    "renewed_at": le.renewed_at,
                    "expires_at": le.expires_at,
                    "cloned_at": le.cloned_at,
                    "clone_count": le.clone_count,
                }
                for le in shown
            ],
            "filter": wanted.describe(),
        }
        out["usage"] = self.usage_status()  # brokers' records held for the vendor
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


__all__ = ["DB_FILE", "DEFAULT_TTL", "KEY_NAME", "FloatingService", "PoolView", "system_clock"]
