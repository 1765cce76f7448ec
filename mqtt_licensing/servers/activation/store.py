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

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import fields
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as sa_postgresql
from sqlalchemy.dialects import sqlite as sa_sqlite

from .._batch import GroupCommit
from .._db import migrate, writer_lock
from .._prepared import Prepared
from ..webhooks.schema import SCHEMA as WEBHOOKS_SCHEMA
from .rows import (
    ActivationRecord,
    LicenseRecord,
    activation_from,
    activation_row,
    license_from,
    license_row,
    license_values,
)
from .schema import (
    SCHEMA,
    activations,
    licenses,
    rate_limits,
    request_nonces,
    trials,
)
from .usage_store import UsageQueries

R = TypeVar("R")

_NONCE_VALUES: dict[str, Any] = {name: sa.bindparam(name) for name in ("scope", "nonce", "created_at")}
# The nonce check of every signed request, built once per dialect that has ON CONFLICT ... RETURNING,
# run on the driver's cursor (servers/_prepared.py: SQLAlchemy's execution cost more than SQLite's).
_NONCE_INSERTS: dict[str, Prepared] = {
    name: Prepared(
        insert(request_nonces).values(_NONCE_VALUES).on_conflict_do_nothing().returning(request_nonces.c.nonce)
    )
    for name, insert in (("sqlite", sa_sqlite.insert), ("postgresql", sa_postgresql.insert))
}

# The check-in's and the heartbeat's lookups, built once and run on the driver's cursor: building
# a Core statement per call (coercions, cache key) cost more than running it, and so did
# SQLAlchemy's execution of it (servers/_prepared.py).
_ACTIVATION_BY_ID = Prepared(sa.select(activations).where(activations.c.id == sa.bindparam("b_id")))
_LICENSE_SELECT = sa.select(licenses).where(licenses.c.id == sa.bindparam("b_id"))
_LICENSE_BY_ID = Prepared(_LICENSE_SELECT)
_LICENSE_BY_ID_LOCKED = Prepared(_LICENSE_SELECT.with_for_update())
_UPDATE_ACTIVATION = activations.update().where(activations.c.id == sa.bindparam("b_id"))


class Tx:
    """Queries inside one open transaction."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    # -- licenses --------------------------------------------------------------
    def insert_license(self, record: LicenseRecord) -> None:
        values = {f.name: getattr(record, f.name) for f in fields(record)}
        self.conn.execute(licenses.insert().values(**license_values(values)))

    def _one_license(self, where: Any, lock: bool) -> LicenseRecord | None:
        query = sa.select(licenses).where(where)
        if lock:
            query = query.with_for_update()
        row = self.conn.execute(query).first()
        return license_row(row) if row is not None else None

    def get_license(self, license_id: str, *, lock: bool = False) -> LicenseRecord | None:
        values = (_LICENSE_BY_ID_LOCKED if lock else _LICENSE_BY_ID).first(self.conn, {"b_id": license_id})
        return license_from(values) if values is not None else None

    def get_license_by_digest(self, digest: str, *, lock: bool = False) -> LicenseRecord | None:
        return self._one_license(licenses.c.key_digest == digest, lock)

    def list_licenses(self) -> list[LicenseRecord]:
        rows = self.conn.execute(sa.select(licenses).order_by(licenses.c.created_at, licenses.c.id))
        return [license_row(r) for r in rows]

    def support_ending(self, start: int, end: int) -> list[tuple[str, int]]:
        """(id, support end) of active licenses whose support ends in [start, end)."""
        c = licenses.c
        query = sa.select(c.id, c.support_until).where(
            c.support_until >= start, c.support_until < end, c.status == "active"
        )
        return [(r[0], int(r[1])) for r in self.conn.execute(query.order_by(c.support_until, c.id))]

    def update_license(self, license_id: str, **values: Any) -> None:
        self.conn.execute(licenses.update().where(licenses.c.id == license_id).values(**license_values(values)))

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
        values = _ACTIVATION_BY_ID.first(self.conn, {"b_id": activation_id})
        return activation_from(values) if values is not None else None

    def find_live_activation(self, license_id: str, fingerprint: str) -> ActivationRecord | None:
        row = self.conn.execute(
            sa.select(activations).where(
                activations.c.license_id == license_id,
                activations.c.instance_fingerprint == fingerprint,
                activations.c.freed_at.is_(None),
            )
        ).first()
        return activation_row(row) if row is not None else None

    def insert_activation(self, record: ActivationRecord) -> None:
        self.conn.execute(activations.insert().values(**{f.name: getattr(record, f.name) for f in fields(record)}))

    def update_activation(self, activation_id: str, **values: Any) -> None:
        self.conn.execute(_UPDATE_ACTIVATION, {"b_id": activation_id, **values})

    def list_activations(self, license_id: str | None = None, *, include_freed: bool = False) -> list[ActivationRecord]:
        query = sa.select(activations).order_by(activations.c.created_at, activations.c.id)
        if license_id is not None:
            query = query.where(activations.c.license_id == license_id)
        if not include_freed:
            query = query.where(activations.c.freed_at.is_(None))
        return [activation_row(r) for r in self.conn.execute(query)]

    @property
    def usage(self) -> UsageQueries:
        """The usage and billing queries (:mod:`.usage_store`), in this transaction."""
        return UsageQueries(self.conn)

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
        """Record a request nonce in its scope; False when it was already seen (a replay).

        One ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` (SQLite and PostgreSQL; psycopg
        reports no row count for it): a row back means it was new, and a concurrent insert of the
        same nonce on another replica waits for that one's commit and then counts as seen."""
        values = {"scope": scope, "nonce": nonce, "created_at": created_at}
        query = _NONCE_INSERTS.get(self.conn.dialect.name)
        if query is not None:
            return query.first(self.conn, values) is not None
        seen = self.conn.execute(
            sa.select(request_nonces.c.nonce).where(request_nonces.c.scope == scope, request_nonces.c.nonce == nonce)
        ).first()
        if seen is None:
            self.conn.execute(sa.insert(request_nonces), values)
        return seen is None

    def prune_nonces(self, created_before: int) -> None:
        self.conn.execute(sa.delete(request_nonces).where(request_nonces.c.created_at < created_before))


class ActivationStore:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.writer = writer_lock(engine)  # SQLite: processes on one file take turns (servers/_db.py)
        # Group commit on SQLite only (see servers/_batch.py for why not on PostgreSQL).
        self.group = GroupCommit(self.transaction, lambda tx: tx.conn, batching=engine.dialect.name == "sqlite")

    def migrate(self) -> None:
        """Bring the schema to this code's version (see :func:`.._db.migrate`), the webhook tables too."""
        migrate(self.engine, SCHEMA)
        migrate(self.engine, WEBHOOKS_SCHEMA)

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        # The connection first, then the turn among processes: a thread waiting for this
        # process's one pooled connection (held by a read, servers/_db.py: reading) does not
        # keep the other processes from writing meanwhile.
        with self.engine.connect() as conn, self.writer.held(), conn.begin():
            yield Tx(conn)

    def write(self, work: Callable[[Tx], R]) -> R:
        """``work(tx)`` in a transaction shared with the writes waiting at the same time, returned
        (or raised) once that transaction committed (:mod:`.._batch`). ``work`` must use only
        ``tx``: opening another transaction inside it would wait for the connection it holds."""
        return self.group.run(work)

    def close(self) -> None:
        self.engine.dispose()


__all__ = ["ActivationRecord", "ActivationStore", "LicenseRecord", "Tx"]
