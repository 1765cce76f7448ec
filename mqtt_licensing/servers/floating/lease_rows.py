"""The rows a lease request reads and writes, and the statements of its hot path.

A renewal used to run five statements through SQLAlchemy (the pool row, the suspension, the
lease, the nonce, the update), each 25-45 µs of Python around a few µs of SQLite. It now runs
three on the driver's connection (:mod:`.._prepared`): one read of the pool row (locked on
PostgreSQL), the instance's lease and its suspension, joined; the nonce insert; and one update
writing every column a renewal may change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as sa_postgresql
from sqlalchemy.dialects import sqlite as sa_sqlite

from .._prepared import Prepared
from .schema import POOL_ID, leases, pool, request_nonces, suspended_instances


@dataclass(frozen=True)
class PoolRecord:
    certificate: bytes | None
    installed_at: int | None
    vendor_url: str | None
    pending_nonce: str | None
    pending_at: int | None
    deactivated_at: int | None
    deactivated_activation_id: str | None
    seat_check_before: int | None = None
    clone_policy: str | None = None  # None: "flag"


@dataclass(frozen=True)
class LeaseRecord:
    lease_id: str
    instance_fingerprint: str
    public_key: bytes
    features: tuple[str, ...]
    issued_at: int
    renewed_at: int
    expires_at: int
    chain: str | None = None  # the renewal chain (see .._requests.chain_step)
    chain_prev: str | None = None
    cloned_at: int | None = None  # when two instances were first seen renewing this lease
    clone_count: int = 0
    label: str | None = None  # untrusted text the instance sent (core/instance_label.py)


_POOL_COLUMNS = tuple(c for c in pool.c if c.name in PoolRecord.__dataclass_fields__)
_LEASE_COLUMNS = tuple(leases.c[name] for name in LeaseRecord.__dataclass_fields__)


def pool_record(row: Any) -> PoolRecord:
    return PoolRecord(**{c.name: getattr(row, c.name) for c in _POOL_COLUMNS})


def lease_record(row: Any) -> LeaseRecord:
    return _lease_of(tuple(getattr(row, c.name) for c in _LEASE_COLUMNS))


def _lease_of(v: tuple[Any, ...]) -> LeaseRecord:
    # in _LEASE_COLUMNS' order; bytes and a tuple whatever the driver gave (memoryview, a JSON list)
    return LeaseRecord(v[0], v[1], bytes(v[2]), tuple(v[3]), *v[4:])


@dataclass(frozen=True)
class LeaseContext:
    """What every lease request reads first, in one statement."""

    pool: PoolRecord
    lease: LeaseRecord | None  # the instance's lease, expired or not
    suspended: str | None  # the lease id a suspended instance cloned


# The pool row, the instance's lease and its suspension in one statement. On PostgreSQL the pool
# row is locked first by a statement of its own: a read committed SELECT ... FOR UPDATE that
# waited for the lock sees the locked row anew but the rows joined to it as they were when it
# started, so two acquires of one instance both read "no lease" (tests/servers/floating/
# test_concurrency.py); a statement begun once the lock is held reads what its holder committed.
# On SQLite the transaction's BEGIN IMMEDIATE already serializes the writers.
_FP: sa.BindParameter[str] = sa.bindparam("b_fp")
_POOL: sa.BindParameter[int] = sa.bindparam("b_pool")
_CONTEXT = Prepared(
    sa.select(*_POOL_COLUMNS, *_LEASE_COLUMNS, suspended_instances.c.lease_id.label("suspended_lease"))
    .select_from(
        pool.outerjoin(leases, leases.c.instance_fingerprint == _FP).outerjoin(
            suspended_instances, suspended_instances.c.fingerprint == _FP
        )
    )
    .where(pool.c.id == _POOL)
)
_LOCK = Prepared(sa.select(pool.c.id).where(pool.c.id == _POOL).with_for_update())


def read_context(conn: sa.Connection, fingerprint: str) -> LeaseContext:
    if conn.dialect.name != "sqlite":
        _LOCK.first(conn, {"b_pool": POOL_ID})
    row = _CONTEXT.first(conn, {"b_fp": fingerprint, "b_pool": POOL_ID})
    assert row is not None, "the pool row is made at migration"
    certificate = row["certificate"]
    pool_row = PoolRecord(
        bytes(certificate) if certificate is not None else None, *(row[c.key] for c in _POOL_COLUMNS[1:])
    )
    lease = _lease_of(tuple(row[c.key] for c in _LEASE_COLUMNS)) if row["lease_id"] is not None else None
    return LeaseContext(pool_row, lease, row["suspended_lease"])


_WRITE = Prepared(
    sa.update(leases)
    .where(leases.c.lease_id == sa.bindparam("b_lease_id"))
    .values({name: sa.bindparam("b_" + name) for name in ("renewed_at", "expires_at", "chain", "chain_prev",
                                                          "cloned_at", "clone_count", "label")})
)  # fmt: skip


def write_renewal(conn: sa.Connection, lease: LeaseRecord) -> None:
    """Store what a renewal changes (times, chain, clone marks, label) from the renewed record."""
    _WRITE.rowcount(
        conn,
        {
            "b_lease_id": lease.lease_id,
            "b_renewed_at": lease.renewed_at,
            "b_expires_at": lease.expires_at,
            "b_chain": lease.chain,
            "b_chain_prev": lease.chain_prev,
            "b_cloned_at": lease.cloned_at,
            "b_clone_count": lease.clone_count,
            "b_label": lease.label,
        },
    )


# The nonce check of every signed request: a conflict is a replay (no row inserted).
_NONCE_VALUES: dict[str, Any] = {c: sa.bindparam("b_" + c) for c in ("fingerprint", "nonce", "created_at")}
NONCE_INSERTS = {
    "sqlite": Prepared(sa_sqlite.insert(request_nonces).values(_NONCE_VALUES).on_conflict_do_nothing()),
    "postgresql": Prepared(sa_postgresql.insert(request_nonces).values(_NONCE_VALUES).on_conflict_do_nothing()),
}


__all__ = ["NONCE_INSERTS", "LeaseContext", "LeaseRecord", "PoolRecord", "lease_record", "pool_record",
           "read_context", "write_renewal"]  # fmt: skip
