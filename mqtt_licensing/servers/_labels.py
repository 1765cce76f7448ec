"""The history of instance labels, as both servers keep it: a table of (key, label, first_seen)
rows, the newest ``core.instance_label.HISTORY`` per key kept. The key is the activation on the
activation server and the instance fingerprint on the floating server (a lease ends; the broker
stays). Labels were checked when the signed request was decoded: only 1..64 printable characters
reach here."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from ..core.instance_label import HISTORY
from ..core.timefmt import iso

_CHUNK = 5000


class LabelHistory:
    def __init__(self, table: sa.Table, key: sa.Column[Any]) -> None:
        self.table = table
        self.key = key
        # Built once: building these statements (and their cache keys) on every call cost more
        # than running them, on every new lease and label change.
        t = table
        bound: sa.BindParameter[str] = sa.bindparam("b_key")
        self._insert = sa.insert(t)
        keep = sa.select(t.c.id).where(key == bound).order_by(t.c.id.desc()).limit(HISTORY)
        self._trim = sa.delete(t).where(key == bound, t.c.id.not_in(sa.select(keep.subquery().c.id)))
        self._last = sa.select(t.c.label).where(key == bound).order_by(t.c.id.desc()).limit(1)

    def record(self, conn: sa.Connection, key: str, label: str, now: int) -> None:
        """Add ``label`` as the newest and drop what falls out of the kept history."""
        conn.execute(self._insert, {self.key.name: key, "label": label, "first_seen": now})
        conn.execute(self._trim, {"b_key": key})

    def last(self, conn: sa.Connection, key: str) -> str | None:
        return conn.execute(self._last, {"b_key": key}).scalar_one_or_none()

    def histories(self, conn: sa.Connection, keys: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
        """Each key's labels, oldest first: ``[{"label", "first_seen"}]`` (one query)."""
        wanted = sorted(set(keys))
        out: dict[str, list[dict[str, Any]]] = {k: [] for k in wanted}
        if not wanted:
            return out
        t = self.table
        # In chunks: a list of 100,000 activations in one IN (...) passes the bound parameters a
        # statement may have (PostgreSQL's protocol: 65,535; SQLite's default build: 32,766).
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            rows = conn.execute(
                sa.select(self.key.label("key"), t.c.label, t.c.first_seen).where(self.key.in_(chunk)).order_by(t.c.id)
            )
            for row in rows:
                out[row.key].append({"label": row.label, "first_seen": iso(row.first_seen)})
        return out


__all__ = ["LabelHistory"]
