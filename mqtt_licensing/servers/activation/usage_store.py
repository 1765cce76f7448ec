"""The activation server's queries on metered usage and its billing reports (``usage_records``,
``usage_flags``, ``billing_reports``): a concern of its own, reached as ``tx.usage`` inside one
:meth:`.store.ActivationStore.transaction`."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from .schema import billing_reports, usage_flags, usage_records


class UsageQueries:
    """Usage and billing queries on one open transaction's connection."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

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


__all__ = ["UsageQueries"]
