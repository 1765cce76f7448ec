"""Floating server storage: the queries on the tables of :mod:`.schema`, nothing else.

This module is the storage seam. The domain code (:mod:`.service`) never writes
SQL; it opens one :meth:`FloatingStore.transaction` per change of state and calls
the methods of :class:`Tx` inside it. Every lease operation starts with
:meth:`Tx.lock_pool`: on SQLite the whole transaction is already serialized
by ``BEGIN IMMEDIATE`` (see :mod:`.._db`), on PostgreSQL the pool row is taken
``FOR UPDATE`` - either way two acquires can never both see "one seat left".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import sqlalchemy as sa

from .._batch import GroupCommit
from .._db import migrate
from ..webhooks.schema import SCHEMA as WEBHOOKS_SCHEMA
from .access import KINDS
from .lease_rows import NONCE_INSERTS, LeaseContext, LeaseRecord, PoolRecord, lease_record, pool_record, read_context
from .lease_rows import write_renewal as _write_renewal
from .schema import (
    POOL_ID,
    SCHEMA,
    leases,
    pool,
    pool_access,
    request_nonces,
    suspended_instances,
)
from .usage_store import UsageOutbox

R = TypeVar("R")

# A renewal's statements, built once (see the activation store on prebuilt statements).
_POOL_LOCKED = sa.select(pool).where(pool.c.id == POOL_ID).with_for_update()
_LEASE_BY_FINGERPRINT = sa.select(leases).where(leases.c.instance_fingerprint == sa.bindparam("b_fp"))
_UPDATE_LEASE = sa.update(leases).where(leases.c.lease_id == sa.bindparam("b_id"))
# The seat counter (migration 0009): changed in the transaction that inserts or deletes leases.
# An acquire's, built once too: building a statement and its cache key cost more than running it.
_LEASES_HELD = sa.select(pool.c.leases_held).where(pool.c.id == POOL_ID)
_DELETE_EXPIRED = sa.delete(leases).where(leases.c.expires_at <= sa.bindparam("b_now"))
_INSERT_LEASE = sa.insert(leases)
_HELD = sa.update(pool).where(pool.c.id == POOL_ID).values(leases_held=pool.c.leases_held + sa.bindparam("b_n"))
# The rule kinds by name (access.KINDS), not "kind != 'leased'": that read every instance the pool
# ever leased to on each new seat (351 µs of an acquire at 10,000); IN seeks the primary key.
_ACCESS_RULES = (
    sa.select(pool_access.c.kind, pool_access.c.value)
    .where(pool_access.c.kind.in_(KINDS))
    .order_by(pool_access.c.kind, pool_access.c.value)
)
_IS_SUSPENDED = sa.select(suspended_instances.c.fingerprint).where(
    suspended_instances.c.fingerprint == sa.bindparam("b_fp")
)


class Tx:
    """The queries available inside one transaction."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    # -- pool --------------------------------------------------------------------
    def lock_pool(self) -> PoolRecord:
        """Read the pool row, locking it until the transaction ends (FOR UPDATE where supported)."""
        row = self.conn.execute(_POOL_LOCKED).one()
        return pool_record(row)

    def read_pool(self) -> PoolRecord:
        return pool_record(self.conn.execute(sa.select(pool).where(pool.c.id == POOL_ID)).one())

    def update_pool(self, **values: Any) -> None:
        unknown = set(values) - ({c.name for c in pool.c} - {"id"})
        if unknown:
            raise ValueError(f"not writable pool columns: {sorted(unknown)}")
        self.conn.execute(sa.update(pool).where(pool.c.id == POOL_ID).values(**values))

    # -- leases ------------------------------------------------------------------
    def lease_context(self, fingerprint: str) -> LeaseContext:
        """The pool row (locked as :meth:`lock_pool`), this instance's lease and its suspension."""
        return read_context(self.conn, fingerprint)

    def write_renewal(self, lease: LeaseRecord) -> None:
        """Store a renewed lease's times, chain, clone marks and label."""
        _write_renewal(self.conn, lease)

    def lease_by_fingerprint(self, fingerprint: str) -> LeaseRecord | None:
        row = self.conn.execute(_LEASE_BY_FINGERPRINT, {"b_fp": fingerprint}).one_or_none()
        return lease_record(row) if row is not None else None

    def active_leases(self, now: int) -> list[LeaseRecord]:
        rows = self.conn.execute(
            sa.select(leases).where(leases.c.expires_at > now).order_by(leases.c.issued_at, leases.c.lease_id)
        )
        return [lease_record(r) for r in rows]

    def count_active(self, now: int) -> int:
        return int(
            self.conn.execute(
                sa.select(sa.func.count()).select_from(leases).where(leases.c.expires_at > now)
            ).scalar_one()
        )

    def lease_gauges(self, now: int) -> tuple[int, int]:
        """(active leases, active leases seen cloned): counted, no rows read."""
        query = sa.select(sa.func.count(), sa.func.count(leases.c.cloned_at)).where(leases.c.expires_at > now)
        used, cloned = self.conn.execute(query).one()
        return int(used), int(cloned)

    def count_active_before(self, now: int, issued_at: int, lease_id: str) -> int:
        """Active leases older than the given one (seat order: issued_at, then lease_id)."""
        c = leases.c
        return int(
            self.conn.execute(
                sa.select(sa.func.count())
                .select_from(leases)
                .where(
                    c.expires_at > now,
                    sa.or_(c.issued_at < issued_at, sa.and_(c.issued_at == issued_at, c.lease_id < lease_id)),
                )
            ).scalar_one()
        )

    def leases_held(self) -> int:
        """Rows in ``leases`` (the pool's counter, no scan); live ones only after :meth:`delete_expired`."""
        return int(self.conn.execute(_LEASES_HELD).scalar_one())

    def _held(self, n: int) -> None:
        if n:
            self.conn.execute(_HELD, {"b_n": n})

    def delete_expired(self, now: int) -> int:
        gone = int(self.conn.execute(_DELETE_EXPIRED, {"b_now": now}).rowcount)
        self._held(-gone)
        return gone

    def insert_lease(self, lease: LeaseRecord) -> None:
        self.conn.execute(
            _INSERT_LEASE,
            {
                "lease_id": lease.lease_id,
                "instance_fingerprint": lease.instance_fingerprint,
                "public_key": lease.public_key,
                "features": list(lease.features),
                "issued_at": lease.issued_at,
                "renewed_at": lease.renewed_at,
                "expires_at": lease.expires_at,
                "chain": lease.chain,
                "label": lease.label,
            },
        )
        self._held(1)

    def extend_lease(
        self,
        lease_id: str,
        *,
        renewed_at: int,
        expires_at: int,
        features: tuple[str, ...] | None = None,
        **chain: Any,
    ) -> None:
        """``chain``: chain, chain_prev, cloned_at, clone_count (and label) as they change."""
        values: dict[str, Any] = {"renewed_at": renewed_at, "expires_at": expires_at, **chain}
        if features is not None:
            values["features"] = list(features)
        self.conn.execute(_UPDATE_LEASE, {"b_id": lease_id, **values})

    def delete_lease(self, lease_id: str) -> bool:
        gone = int(self.conn.execute(sa.delete(leases).where(leases.c.lease_id == lease_id)).rowcount)
        self._held(-gone)
        return gone > 0

    def delete_all_leases(self) -> int:
        self.update_pool(leases_held=0)
        return int(self.conn.execute(sa.delete(leases)).rowcount)

    # -- pool access ------------------------------------------------------------------
    def access_rules(self) -> list[tuple[str, str]]:
        """The operator's rules (instances remembered as leased to are rows of their own kind)."""
        rows = self.conn.execute(_ACCESS_RULES)
        return [(str(kind), str(value)) for kind, value in rows]

    def add_access(self, kind: str, value: str, now: int) -> bool:
        """False when the rule was already there."""
        if (kind, value) in self.access_rules():
            return False
        self.conn.execute(sa.insert(pool_access).values(kind=kind, value=value, created_at=now))
        return True

    def remove_access(self, kind: str, value: str) -> bool:
        done = self.conn.execute(sa.delete(pool_access).where(pool_access.c.kind == kind, pool_access.c.value == value))
        return done.rowcount > 0

    # -- clone suspensions ------------------------------------------------------
    def suspended(self) -> dict[str, str]:
        """Suspended instance fingerprint -> the lease it cloned."""
        rows = self.conn.execute(sa.select(suspended_instances.c.fingerprint, suspended_instances.c.lease_id))
        return {str(fp): str(lease_id) for fp, lease_id in rows}

    def is_suspended(self, fingerprint: str) -> bool:
        return self.conn.execute(_IS_SUSPENDED, {"b_fp": fingerprint}).first() is not None

    def suspend(self, fingerprint: str, lease_id: str, now: int) -> None:
        if not self.is_suspended(fingerprint):
            self.conn.execute(
                sa.insert(suspended_instances).values(fingerprint=fingerprint, lease_id=lease_id, suspended_at=now)
            )

    def unsuspend(self, fingerprint: str) -> bool:
        query = sa.delete(suspended_instances).where(suspended_instances.c.fingerprint == fingerprint)
        return self.conn.execute(query).rowcount > 0

    @property
    def usage(self) -> UsageOutbox:
        """The usage outbox (:mod:`.usage_store`), in this transaction."""
        return UsageOutbox(self.conn)

    # -- replay protection ---------------------------------------------------------
    def remember_nonce(self, fingerprint: str, nonce: str, created_at: int) -> bool:
        """Record a request nonce; False when it was already seen (a replay). One statement where
        the database has ``ON CONFLICT DO NOTHING``: no row inserted is a replay."""
        query = NONCE_INSERTS.get(self.conn.dialect.name)
        if query is not None:
            return (
                query.rowcount(self.conn, {"b_fingerprint": fingerprint, "b_nonce": nonce, "b_created_at": created_at})
                == 1
            )
        values = {"fingerprint": fingerprint, "nonce": nonce, "created_at": created_at}
        seen = self.conn.execute(
            sa.select(request_nonces.c.nonce).where(
                request_nonces.c.fingerprint == fingerprint, request_nonces.c.nonce == nonce
            )
        ).first()
        if seen is None:
            self.conn.execute(sa.insert(request_nonces), values)
        return seen is None

    def prune_nonces(self, created_before: int) -> None:
        self.conn.execute(sa.delete(request_nonces).where(request_nonces.c.created_at < created_before))


class FloatingStore:
    """Owns the engine; hands out transactions. SQLite by default, any SQLAlchemy URL."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        # Group commit on SQLite only (see servers/_batch.py for why not on PostgreSQL).
        self.group = GroupCommit(self.transaction, lambda tx: tx.conn, batching=engine.dialect.name == "sqlite")

    def migrate(self) -> None:
        """Bring the schema to this code's version (see :func:`.._db.migrate`), then make sure the one
        pool row exists (and the webhook tables are there)."""
        migrate(self.engine, SCHEMA)
        migrate(self.engine, WEBHOOKS_SCHEMA)
        try:
            with self.transaction() as tx:
                exists = tx.conn.execute(sa.select(pool.c.id).where(pool.c.id == POOL_ID)).first()
                if exists is None:
                    held = sa.select(sa.func.count()).select_from(leases).scalar_subquery()
                    tx.conn.execute(sa.insert(pool).values(id=POOL_ID, leases_held=held))
        except sa.exc.IntegrityError:
            pass  # another replica created the row first

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """One atomic unit of work: committed on normal exit, rolled back on any exception."""
        with self.engine.begin() as conn:
            yield Tx(conn)

    def write(self, work: Callable[[Tx], R]) -> R:
        """``work(tx)`` in a transaction shared with the writes waiting at the same time, returned
        (or raised) once that transaction committed (:mod:`.._batch`). ``work`` must use only
        ``tx``: opening another transaction inside it would wait for the connection it holds."""
        return self.group.run(work)

    def close(self) -> None:
        self.engine.dispose()
