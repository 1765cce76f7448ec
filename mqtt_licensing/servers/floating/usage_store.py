"""The floating server's usage outbox (``usage_outbox``): records of leasing brokers held until
the vendor acknowledges them, reached as ``tx.usage`` inside one
:meth:`.store.FloatingStore.transaction`."""

from __future__ import annotations

import sqlalchemy as sa

from .schema import usage_outbox


class UsageOutbox:
    """The outbox's queries on one open transaction's connection."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    def insert(self, fingerprint: str, sequence: int, record: bytes, public_key: bytes, now: int) -> bool:
        """Hold one record for the vendor unless it is held already; True if new."""
        c = usage_outbox.c
        held = self.conn.execute(
            sa.select(c.sequence).where(c.instance_fingerprint == fingerprint, c.sequence == sequence)
        ).first()
        if held is not None:
            return False
        self.conn.execute(
            usage_outbox.insert().values(
                instance_fingerprint=fingerprint,
                sequence=sequence,
                record=record,
                public_key=public_key,
                received_at=now,
            )
        )
        return True

    def oldest(self, limit: int) -> list[tuple[str, int, bytes, bytes]]:
        """The oldest held records: (instance, sequence, record, public key)."""
        c = usage_outbox.c
        rows = self.conn.execute(
            sa.select(c.instance_fingerprint, c.sequence, c.record, c.public_key)
            .order_by(c.received_at, c.instance_fingerprint, c.sequence)
            .limit(limit)
        )
        return [(str(fp), int(seq), bytes(rec), bytes(key)) for fp, seq, rec, key in rows]

    def count(self) -> int:
        return int(self.conn.execute(sa.select(sa.func.count()).select_from(usage_outbox)).scalar_one())

    def drop(self, refs: list[tuple[str, int]]) -> int:
        """Delete records the vendor acknowledged; how many were held."""
        c = usage_outbox.c
        dropped = 0
        for fp, seq in refs:
            dropped += self.conn.execute(
                sa.delete(usage_outbox).where(c.instance_fingerprint == fp, c.sequence == seq)
            ).rowcount
        return dropped


__all__ = ["UsageOutbox"]
