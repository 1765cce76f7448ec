"""The vendor's list of activations, filtered (:class:`...core.listing.ActivationFilter`): by
license, by a piece of a label (current or earlier), by silence, by status, a page at a time in
one stable order (created, then id), with the count of all that match.

Read-only and beside the store's queries (as the heartbeat and catalogue queries are): nothing on
the instances' paths (activation, check-in, heartbeat) reads or writes differently because of it,
and it reads in a read-only transaction (:func:`.._db.reading`), so on SQLite a long search never
holds the write lock the instances' requests wait for.
The order has its own index, ``ix_activations_created`` (migration 0012), so a page is read in
index order and stops after ``limit`` rows instead of sorting every activation; the count reads
no row it can skip. A label is matched case-insensitively (every letter on PostgreSQL, ASCII
letters on SQLite), its wildcards escaped.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from ...core.errors import ErrorCode, LicensingError
from ...core.listing import STATUSES, ActivationFilter
from .._db import reading
from . import names
from .instances import RELEASED_REASON
from .records import ServiceContext, activation_to_dict
from .rows import ActivationRecord, activation_row
from .schema import activation_labels, activations
from .store import Tx


def _last_seen_column() -> Any:
    """``ActivationRecord.last_seen_at`` in SQL, portable (SQLite has no GREATEST, PostgreSQL no
    two-argument max()). No index: one on it would cost every heartbeat an index update."""
    a = activations.c
    checked = sa.func.coalesce(a.last_check_in_at, a.created_at)
    beat = sa.func.coalesce(a.last_heartbeat_at, 0)
    return sa.case((beat > checked, beat), else_=checked)


def _status_condition(statuses: tuple[str, ...]) -> Any:
    a = activations.c
    parts = {
        "active": a.freed_at.is_(None),
        "released": sa.and_(a.freed_at.is_not(None), a.freed_reason == RELEASED_REASON),
        "freed": sa.and_(a.freed_at.is_not(None), sa.or_(a.freed_reason.is_(None), a.freed_reason != RELEASED_REASON)),
    }
    if set(statuses) >= set(STATUSES):
        return sa.true()
    return sa.or_(*(parts[s] for s in statuses))


def _label_condition(piece: str, dialect: str) -> Any:
    """The label, or one it had: the history holds every label an activation took (the current
    one too), so one pass over it finds the ids - not a lookup per activation (1.6x slower at
    100,000). The current label is matched as well, for a row whose history a writer other than
    this server's requests left out.

    In any case: SQLite's ``LIKE`` already ignores the case of ASCII letters (``lower()`` on both
    sides cost 2.5x the scan); on PostgreSQL ``lower()`` folds every letter."""
    a, h = activations.c, activation_labels.c

    def match(column: Any) -> Any:
        if dialect == "sqlite":
            return column.contains(piece, autoescape=True)
        return sa.func.lower(column).contains(piece.lower(), autoescape=True)  # ILIKE: 1.45x slower

    earlier = sa.select(h.activation_id).where(match(h.label))
    return sa.or_(match(a.label), a.id.in_(earlier))


class ActivationListing:
    """The queries of the filtered list, inside one open transaction."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    def conditions(self, wanted: ActivationFilter, now: int) -> list[Any]:
        a = activations.c
        where = [_status_condition(wanted.statuses)]
        if wanted.license_id is not None:
            where.append(a.license_id == wanted.license_id)
        if wanted.label is not None:
            where.append(_label_condition(wanted.label, self.conn.dialect.name))
        if wanted.silent_for is not None:
            where.append(_last_seen_column() < now - wanted.silent_for)
        return where

    def find(self, wanted: ActivationFilter, now: int) -> tuple[list[ActivationRecord], int, bool]:
        """(the page of activations, how many match in all, whether more follow the page)."""
        a = activations.c
        where = self.conditions(wanted, now)
        total = int(self.conn.execute(sa.select(sa.func.count()).select_from(activations).where(*where)).scalar_one())
        page = sa.select(activations).where(*where)
        if wanted.after is not None:
            mark = self.conn.execute(sa.select(a.created_at).where(a.id == wanted.after)).first()
            if mark is None:
                raise LicensingError(ErrorCode.INVALID_FIELD, f"after names no activation ({wanted.after})")
            created = mark[0]
            page = page.where(sa.or_(a.created_at > created, sa.and_(a.created_at == created, a.id > wanted.after)))
        page = page.order_by(a.created_at, a.id)
        if wanted.limit is not None:
            page = page.limit(wanted.limit + 1)  # one more tells whether another page follows
        rows = [activation_row(r) for r in self.conn.execute(page)]
        more = wanted.limit is not None and len(rows) > wanted.limit
        return rows[: wanted.limit] if more else rows, total, more


def find_activations(ctx: ServiceContext, wanted: ActivationFilter) -> dict[str, Any]:
    """``{"activations": [...], "total", "shown", "limit", "next", "filter", "now"}``: the page,
    each activation with its label history; ``next`` is the ``after`` of the
    following page (None on the last one). The license named must exist (``not_found`` otherwise)."""
    now = ctx.clock()
    with reading(ctx.store.engine) as conn:  # never the write lock: check-ins go on meanwhile
        if wanted.license_id is not None:
            ctx.license(Tx(conn), wanted.license_id)
        acts, total, more = ActivationListing(conn).find(wanted, now)
        history = names.histories(conn, (a.id for a in acts))
    return {
        "activations": [activation_to_dict(a) | {"label_history": history[a.id]} for a in acts],
        "total": total,
        "shown": len(acts),
        "limit": wanted.limit,
        "next": acts[-1].id if more else None,
        "filter": wanted.describe(),
        "now": now,
    }


__all__ = ["ActivationListing", "find_activations"]
