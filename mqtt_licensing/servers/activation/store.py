"""The activation server's storage seam: the queries on the tables of :mod:`.schema`, nothing else.

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
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as sa_postgresql
from sqlalchemy.dialects import sqlite as sa_sqlite

from .._db import migrate
from ..webhooks.schema import SCHEMA as WEBHOOKS_SCHEMA
from .schema import (
    SCHEMA,
    activations,
    billing_reports,
    licenses,
    rate_limits,
    request_nonces,
    trials,
    usage_flags,
    usage_records,
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
    overage: float = 0.0  # connections allowed past max_connections, as a fraction of it
    heartbeat_interval: int | None = None  # seconds between an online instance's heartbeats
    release_after: int | None = None  # an activation silent this long is released


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
    label: str | None = None  # untrusted text the instance sent (core/instance_label.py)
    last_heartbeat_at: int | None = None

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

    def support_ending(self, start: int, end: int) -> list[tuple[str, int]]:
        """(id, support end) of active licenses whose support ends in [start, end)."""
        c = licenses.c
        query = sa.select(c.id, c.support_until).where(
            c.support_until >= start, c.support_until < end, c.status == "active"
        )
        return [(r[0], int(r[1])) for r in self.conn.execute(query.order_by(c.support_until, c.id))]

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

    def activation_gauges(self) -> tuple[int, int, int, int]:
        """(licenses, active activations, freed ones, active ones seen cloned): counted, no rows read."""
        live = activations.c.freed_at.is_(None)
        query = sa.select(live.label("live"), sa.func.count(), sa.func.count(activations.c.cloned_at)).group_by(live)
        active = freed = cloned = 0
        for is_live, n, n_cloned in self.conn.execute(query):
            if is_live:
                active, cloned = int(n), int(n_cloned)
            else:
                freed = int(n)
        count = self.conn.execute(sa.select(sa.func.count()).select_from(licenses)).scalar_one()
        return int(count), active, freed, cloned

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
    def insert_usage(self, values: dict[str, Any]) -> dict[str, Any] | None:
        """Store one usage record unless its (instance, sequence) is stored already: None if it is
        new, else the row stored before (the caller compares the content)."""
        key = (usage_records.c.instance_fingerprint == values["instance_fingerprint"]) & (
            usage_records.c.sequence == values["sequence"]
        )
        row = self.conn.execute(sa.select(usage_records).where(key)).first()
        if row is not None:
            return dict(row._mapping)  # noqa: SLF001 - SQLAlchemy's public Row API
        self.conn.execute(usage_records.insert().values(**values))
        return None

    def flag_usage(self, values: dict[str, Any]) -> bool:
        """Record a usage flag once per (instance, kind, sequence); True if it is new."""
        c = usage_flags.c
        key = (c.instance_fingerprint == values["instance_fingerprint"]) & (c.kind == values["kind"])
        if self.conn.execute(sa.select(c.kind).where(key & (c.sequence == values["sequence"]))).first():
            return False
        self.conn.execute(usage_flags.insert().values(**values))
        return True

    def usage_flag_list(self, license_id: str) -> list[dict[str, Any]]:
        c = usage_flags.c
        rows = self.conn.execute(sa.select(usage_flags).where(c.license_id == license_id).order_by(c.flagged_at))
        return [dict(r._mapping) for r in rows]  # noqa: SLF001

    def usage_sequences(self, fingerprint: str) -> tuple[int, int]:
        """(how many records, highest sequence) stored for one instance."""
        row = self.conn.execute(
            sa.select(sa.func.count(), sa.func.max(usage_records.c.sequence)).where(
                usage_records.c.instance_fingerprint == fingerprint
            )
        ).one()
        return int(row[0]), int(row[1] or 0)

    def usage_high_water(self, fingerprint: str) -> int:
        """The highest sequence stored for one instance (0: none); one index lookup."""
        query = sa.select(sa.func.max(usage_records.c.sequence)).where(
            usage_records.c.instance_fingerprint == fingerprint
        )
        return int(self.conn.execute(query).scalar_one() or 0)

    def usage_instances(self, license_id: str) -> set[str]:
        """Every instance with usage billed to the license (a floating server's brokers have no activation)."""
        c = usage_records.c
        return {
            str(fp)
            for (fp,) in self.conn.execute(
                sa.select(c.instance_fingerprint).distinct().where(c.license_id == license_id)
            )
        }

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
    def trial_started(self, fingerprint: str) -> int | None:
        """When this instance was first seen on trial, if ever."""
        row = self.conn.execute(
            sa.select(trials.c.started_at).where(trials.c.instance_fingerprint == fingerprint)
        ).first()
        return int(row[0]) if row is not None else None

    def insert_trial(self, fingerprint: str, now: int, source: str) -> None:
        self.conn.execute(sa.insert(trials).values(instance_fingerprint=fingerprint, started_at=now, source=source))

    def count_trials_from(self, source: str) -> int:
        return int(self.conn.execute(sa.select(sa.func.count()).where(trials.c.source == source)).scalar_one())

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
        """Bring the schema to this code's version (see :func:`.._db.migrate`), the webhook tables too."""
        migrate(self.engine, SCHEMA)
        migrate(self.engine, WEBHOOKS_SCHEMA)

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        with self.engine.begin() as conn:
            yield Tx(conn)

    def close(self) -> None:
        self.engine.dispose()
