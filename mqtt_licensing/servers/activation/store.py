"""The activation server's storage seam: SQLAlchemy Core tables and queries, nothing else.

The domain code (:mod:`.service`) never sees SQL: it opens a
:meth:`ActivationStore.transaction` and calls the small query methods of
:class:`Tx`. Everything here is portable SQLAlchemy Core, so a PostgreSQL URL
(several replicas behind a load balancer) needs no change above this module:

* each transaction is one ``engine.begin()`` (``BEGIN IMMEDIATE`` on SQLite, see
  :func:`.._db.create_db_engine`);
* ``lock=True`` reads the license row with ``SELECT ... FOR UPDATE`` (a no-op on
  SQLite, where the immediate transaction already serializes writers), so counting
  activations and inserting one can never interleave between two replicas;
* the rate-limit counters live in a table so replicas share them, and the row of a client address
  is locked while a key lookup checks and counts it (:meth:`Tx.lock_rate`);
* so do the nonces of recent signed requests (``request_nonces``), per activation or per
  license key digest (the *scope*), so a captured request is accepted once, on any replica.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as sa_postgresql
from sqlalchemy.dialects import sqlite as sa_sqlite

from .._db import Schema, migrate

metadata = sa.MetaData()

SCHEMA = Schema("activation", Path(__file__).parent / "migrations", marker_table="licenses")

licenses = sa.Table(
    "licenses",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("key_digest", sa.String(64), nullable=False, unique=True),
    sa.Column("key_mask", sa.String(64), nullable=False),
    sa.Column("model", sa.String(16), nullable=False),
    sa.Column("features", sa.JSON, nullable=False),
    sa.Column("max_activations", sa.Integer, nullable=False),
    sa.Column("seats", sa.Integer, nullable=True),
    sa.Column("expires_at", sa.BigInteger, nullable=True),
    sa.Column("support_until", sa.BigInteger, nullable=True),
    sa.Column("max_connections", sa.Integer, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    # best_effort | required: refuse metered clients when usage cannot reach the vendor (issue 16)
    sa.Column("metering", sa.String(16), nullable=False, server_default="best_effort"),
    sa.Column("clone_policy", sa.String(16), nullable=False, server_default="flag"),
)

activations = sa.Table(
    "activations",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("license_id", sa.String(40), sa.ForeignKey("licenses.id"), nullable=False),
    sa.Column("instance_fingerprint", sa.String(64), nullable=False),
    sa.Column("public_key", sa.LargeBinary, nullable=False),
    sa.Column("model", sa.String(16), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("last_check_in_at", sa.BigInteger, nullable=True),
    sa.Column("request_nonce", sa.String(128), nullable=True),
    sa.Column("request_created_at", sa.BigInteger, nullable=True),
    sa.Column("freed_at", sa.BigInteger, nullable=True),
    sa.Column("freed_reason", sa.String(32), nullable=True),
    sa.Column("chain", sa.String(64), nullable=True),
    sa.Column("chain_prev", sa.String(64), nullable=True),
    sa.Column("cloned_at", sa.BigInteger, nullable=True),
    sa.Column("clone_count", sa.Integer, nullable=False, server_default="0"),
    sa.Index("ix_activations_license", "license_id", "freed_at"),
    # At most one live activation per instance and license, whatever the domain code does.
    sa.Index(
        "uq_activations_live",
        "license_id",
        "instance_fingerprint",
        unique=True,
        sqlite_where=sa.text("freed_at IS NULL"),
        postgresql_where=sa.text("freed_at IS NULL"),
    ),
)

rate_limits = sa.Table(
    "rate_limits",
    metadata,
    sa.Column("address", sa.String(128), primary_key=True),
    sa.Column("window_start", sa.BigInteger, nullable=False),
    sa.Column("failures", sa.Integer, nullable=False),
)

# Metering (issue 16): one row per usage record an instance signed; the primary key makes a
# resent record a no-op however often it arrives, on any replica.
usage_records = sa.Table(
    "usage_records",
    metadata,
    sa.Column("instance_fingerprint", sa.String(64), primary_key=True),
    sa.Column("sequence", sa.BigInteger, primary_key=True),
    sa.Column("license_id", sa.String(40), nullable=False),
    sa.Column("activation_id", sa.String(40), nullable=False),
    sa.Column("day", sa.String(10), nullable=False),  # UTC date of period_start: the billing day
    sa.Column("period_start", sa.BigInteger, nullable=False),
    sa.Column("period_end", sa.BigInteger, nullable=False),
    sa.Column("messages", sa.BigInteger, nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Column("client_seconds", sa.BigInteger, nullable=False),
    sa.Column("received_at", sa.BigInteger, nullable=False),
    sa.Column("via", sa.String(16), nullable=False),  # online | offline | floating
    sa.Index("ix_usage_license_day", "license_id", "day"),
)

# What was billed through Stripe (servers/activation/billing.py): once per license, day and unit.
billing_reports = sa.Table(
    "billing_reports",
    metadata,
    sa.Column("license_id", sa.String(40), primary_key=True),
    sa.Column("day", sa.String(10), primary_key=True),
    sa.Column("unit", sa.String(16), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
    sa.Column("idempotency_key", sa.String(64), nullable=False),
    sa.Column("reported_at", sa.BigInteger, nullable=False),
)


request_nonces = sa.Table(
    "request_nonces",
    metadata,
    sa.Column("scope", sa.String(80), primary_key=True),
    sa.Column("nonce", sa.String(128), primary_key=True),
    sa.Column("created_at", sa.BigInteger, nullable=False, index=True),
)


# Issue 10: when the vendor first saw each instance on trial (per instance fingerprint).
trials = sa.Table(
    "trials",
    metadata,
    sa.Column("instance_fingerprint", sa.String(64), primary_key=True),
    sa.Column("started_at", sa.BigInteger, nullable=False),
)


@dataclass(frozen=True)
class LicenseRecord:
    id: str
    key_digest: str
    key_mask: str
    model: str
    features: tuple[str, ...]
    max_activations: int
    seats: int | None
    expires_at: int | None
    support_until: int | None
    max_connections: int | None
    status: str
    created_at: int
    updated_at: int
    metering: str = "best_effort"
    clone_policy: str = "flag"  # "flag" | "suspend": what a second instance on one activation gets


@dataclass(frozen=True)
class ActivationRecord:
    id: str
    license_id: str
    instance_fingerprint: str
    public_key: bytes
    model: str
    created_at: int
    last_check_in_at: int | None
    request_nonce: str | None
    request_created_at: int | None
    freed_at: int | None
    freed_reason: str | None
    chain: str | None = None  # the check-in chain secret the next check-in presents
    chain_prev: str | None = None  # accepted once more while ``chain`` was never presented (a lost answer)
    cloned_at: int | None = None  # when two instances were first seen on this activation
    clone_count: int = 0

    @property
    def active(self) -> bool:
        return self.freed_at is None


def _license(row: Any) -> LicenseRecord:
    values = dict(row._mapping)  # noqa: SLF001 - SQLAlchemy's public Row API
    values["features"] = tuple(values["features"] or ())
    return LicenseRecord(**{f.name: values[f.name] for f in fields(LicenseRecord)})


def _activation(row: Any) -> ActivationRecord:
    values = dict(row._mapping)  # noqa: SLF001 - SQLAlchemy's public Row API
    values["public_key"] = bytes(values["public_key"])
    return ActivationRecord(**{f.name: values[f.name] for f in fields(ActivationRecord)})


def _license_values(values: dict[str, Any]) -> dict[str, Any]:
    if "features" in values:
        values = {**values, "features": list(values["features"])}
    return values


class Tx:
    """Queries inside one open transaction."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    # -- licenses --------------------------------------------------------------
    def insert_license(self, record: LicenseRecord) -> None:
        values = {f.name: getattr(record, f.name) for f in fields(record)}
        self.conn.execute(licenses.insert().values(**_license_values(values)))

    def _one_license(self, where: Any, lock: bool) -> LicenseRecord | None:
        query = sa.select(licenses).where(where)
        if lock:
            query = query.with_for_update()
        row = self.conn.execute(query).first()
        return _license(row) if row is not None else None

    def get_license(self, license_id: str, *, lock: bool = False) -> LicenseRecord | None:
        return self._one_license(licenses.c.id == license_id, lock)

    def get_license_by_digest(self, digest: str, *, lock: bool = False) -> LicenseRecord | None:
        return self._one_license(licenses.c.key_digest == digest, lock)

    def list_licenses(self) -> list[LicenseRecord]:
        rows = self.conn.execute(sa.select(licenses).order_by(licenses.c.created_at, licenses.c.id))
        return [_license(r) for r in rows]

    def update_license(self, license_id: str, **values: Any) -> None:
        self.conn.execute(licenses.update().where(licenses.c.id == license_id).values(**_license_values(values)))

    # -- activations -----------------------------------------------------------
    def count_active(self, license_id: str) -> int:
        query = (
            sa.select(sa.func.count())
            .select_from(activations)
            .where(activations.c.license_id == license_id, activations.c.freed_at.is_(None))
        )
        return int(self.conn.execute(query).scalar_one())

    def active_counts(self) -> dict[str, int]:
        query = (
            sa.select(activations.c.license_id, sa.func.count())
            .where(activations.c.freed_at.is_(None))
            .group_by(activations.c.license_id)
        )
        return {license_id: int(n) for license_id, n in self.conn.execute(query)}

    def get_activation(self, activation_id: str) -> ActivationRecord | None:
        row = self.conn.execute(sa.select(activations).where(activations.c.id == activation_id)).first()
        return _activation(row) if row is not None else None

    def find_live_activation(self, license_id: str, fingerprint: str) -> ActivationRecord | None:
        row = self.conn.execute(
            sa.select(activations).where(
                activations.c.license_id == license_id,
                activations.c.instance_fingerprint == fingerprint,
                activations.c.freed_at.is_(None),
            )
        ).first()
        return _activation(row) if row is not None else None

    def insert_activation(self, record: ActivationRecord) -> None:
        self.conn.execute(activations.insert().values(**{f.name: getattr(record, f.name) for f in fields(record)}))

    def update_activation(self, activation_id: str, **values: Any) -> None:
        self.conn.execute(activations.update().where(activations.c.id == activation_id).values(**values))

    def list_activations(self, license_id: str | None = None, *, include_freed: bool = False) -> list[ActivationRecord]:
        query = sa.select(activations).order_by(activations.c.created_at, activations.c.id)
        if license_id is not None:
            query = query.where(activations.c.license_id == license_id)
        if not include_freed:
            query = query.where(activations.c.freed_at.is_(None))
        return [_activation(r) for r in self.conn.execute(query)]

    # -- usage -------------------------------------------------------------------------
    def insert_usage(self, values: dict[str, Any]) -> bool:
        """Store one usage record unless its (instance, sequence) is stored already; True if new."""
        key = (usage_records.c.instance_fingerprint == values["instance_fingerprint"]) & (
            usage_records.c.sequence == values["sequence"]
        )
        if self.conn.execute(sa.select(usage_records.c.sequence).where(key)).first() is not None:
            return False
        self.conn.execute(usage_records.insert().values(**values))
        return True

    def usage_sequences(self, fingerprint: str) -> tuple[int, int]:
        """(how many records, highest sequence) stored for one instance."""
        row = self.conn.execute(
            sa.select(sa.func.count(), sa.func.max(usage_records.c.sequence)).where(
                usage_records.c.instance_fingerprint == fingerprint
            )
        ).one()
        return int(row[0]), int(row[1] or 0)

    def usage_sequence_set(self, fingerprint: str) -> set[int]:
        query = sa.select(usage_records.c.sequence).where(usage_records.c.instance_fingerprint == fingerprint)
        return {int(s) for (s,) in self.conn.execute(query)}

    def usage_by_day(self, license_id: str, first: str | None, last: str | None) -> list[dict[str, Any]]:
        c = usage_records.c
        query = (
            sa.select(
                c.day,
                sa.func.sum(c.messages),
                sa.func.sum(c.bytes),
                sa.func.sum(c.client_seconds),
                sa.func.count(),
            )
            .where(c.license_id == license_id)
            .group_by(c.day)
            .order_by(c.day)
        )
        if first:
            query = query.where(c.day >= first)
        if last:
            query = query.where(c.day <= last)
        return [
            {"day": day, "messages": int(m), "bytes": int(b), "client_seconds": int(s), "records": int(n)}
            for day, m, b, s, n in self.conn.execute(query)
        ]

    def billed(self, license_id: str, day: str, unit: str) -> dict[str, Any] | None:
        c = billing_reports.c
        row = self.conn.execute(
            sa.select(billing_reports).where(c.license_id == license_id, c.day == day, c.unit == unit)
        ).first()
        return dict(row._mapping) if row is not None else None  # noqa: SLF001 - SQLAlchemy's public Row API

    def record_billed(self, values: dict[str, Any]) -> None:
        self.conn.execute(billing_reports.insert().values(**values))

    # -- rate limiting -----------------------------------------------------------
    def get_rate(self, address: str) -> tuple[int, int] | None:
        """(window_start, failures) for a client address, if it ever failed."""
        row = self.conn.execute(
            sa.select(rate_limits.c.window_start, rate_limits.c.failures).where(rate_limits.c.address == address)
        ).first()
        return (int(row[0]), int(row[1])) if row is not None else None

    def lock_rate(self, address: str, now: int) -> tuple[int, int]:
        """(window_start, failures) for a client address, its row locked until the transaction ends.

        The row is made first if missing (``ON CONFLICT DO NOTHING`` waits for a concurrent insert of
        the same address), so on PostgreSQL concurrent guesses from one address, on any replica,
        check and count one after the other and cannot all read "9 failures" (SQLite's immediate
        transaction already serializes them)."""
        dialect = self.conn.dialect.name
        insert: Any = sa_postgresql.insert if dialect == "postgresql" else sa_sqlite.insert
        if dialect in ("postgresql", "sqlite"):
            self.conn.execute(
                insert(rate_limits).values(address=address, window_start=now, failures=0).on_conflict_do_nothing()
            )
        elif self.get_rate(address) is None:
            self.conn.execute(rate_limits.insert().values(address=address, window_start=now, failures=0))
        row = self.conn.execute(
            sa.select(rate_limits.c.window_start, rate_limits.c.failures)
            .where(rate_limits.c.address == address)
            .with_for_update()
        ).one()
        return (int(row[0]), int(row[1]))

    def put_rate(self, address: str, window_start: int, failures: int) -> None:
        updated = self.conn.execute(
            rate_limits.update()
            .where(rate_limits.c.address == address)
            .values(window_start=window_start, failures=failures)
        )
        if updated.rowcount == 0:
            self.conn.execute(
                rate_limits.insert().values(address=address, window_start=window_start, failures=failures)
            )

    def prune_rates(self, older_than: int) -> None:
        self.conn.execute(rate_limits.delete().where(rate_limits.c.window_start < older_than))

    # -- trials -------------------------------------------------------------------------
    def first_trial(self, fingerprint: str, now: int) -> int:
        """When this instance was first seen on trial (``now`` if it is the first time)."""
        row = self.conn.execute(
            sa.select(trials.c.started_at).where(trials.c.instance_fingerprint == fingerprint)
        ).first()
        if row is not None:
            return int(row[0])
        self.conn.execute(sa.insert(trials).values(instance_fingerprint=fingerprint, started_at=now))
        return now

    # -- replay protection ---------------------------------------------------------
    def remember_nonce(self, scope: str, nonce: str, created_at: int) -> bool:
        """Record a request nonce in its scope; False when it was already seen (a replay)."""
        seen = self.conn.execute(
            sa.select(request_nonces.c.nonce).where(request_nonces.c.scope == scope, request_nonces.c.nonce == nonce)
        ).first()
        if seen is not None:
            return False
        self.conn.execute(sa.insert(request_nonces).values(scope=scope, nonce=nonce, created_at=created_at))
        return True

    def prune_nonces(self, created_before: int) -> None:
        self.conn.execute(sa.delete(request_nonces).where(request_nonces.c.created_at < created_before))


class ActivationStore:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def migrate(self) -> None:
        """Bring the schema to this code's version (see :func:`.._db.migrate`)."""
        migrate(self.engine, SCHEMA)

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        with self.engine.begin() as conn:
            yield Tx(conn)

    def close(self) -> None:
        self.engine.dispose()


# The store's tables (servers/activation/shop/store.py) are part of this schema too (migration 0006);
# importing them here keeps this metadata the whole schema, as the migrations build it.
from .shop import store as _shop_tables  # noqa: E402, F401
