"""Instance labels on the activation server: the current label is a column of the activation
(read with the row every request already reads); each change adds a row to ``activation_labels``,
of which the newest ``core.instance_label.HISTORY`` per activation are kept.

A request whose label equals the one on record writes nothing, so a check-in pays for labels only
when a broker was renamed. The label was checked when the signed request was decoded
(``InstanceRequest.check``): only 1..64 printable characters reach this module.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from ...core.instance_label import HISTORY
from ...core.timefmt import iso
from .schema import activation_labels


def changed(conn: sa.Connection, activation_id: str, before: str | None, label: str | None, now: int) -> dict[str, Any]:
    """Record ``label`` when it differs from ``before``; returns the activation row's update
    (merged by the caller into the UPDATE it makes anyway). An instance that sends no label
    (an agent from before labels) keeps the one on record."""
    if label is None or label == before:
        return {}
    conn.execute(sa.insert(activation_labels).values(activation_id=activation_id, label=label, first_seen=now))
    keep = (
        sa.select(activation_labels.c.id)
        .where(activation_labels.c.activation_id == activation_id)
        .order_by(activation_labels.c.id.desc())
        .limit(HISTORY)
    )
    conn.execute(
        sa.delete(activation_labels).where(
            activation_labels.c.activation_id == activation_id,
            activation_labels.c.id.not_in(sa.select(keep.subquery().c.id)),
        )
    )
    return {"label": label}


def histories(conn: sa.Connection, activation_ids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """Each activation's labels, oldest first: ``[{"label", "first_seen"}]`` (one query)."""
    ids = sorted(set(activation_ids))
    out: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    if not ids:
        return out
    rows = conn.execute(
        sa.select(activation_labels.c.activation_id, activation_labels.c.label, activation_labels.c.first_seen)
        .where(activation_labels.c.activation_id.in_(ids))
        .order_by(activation_labels.c.id)
    )
    for row in rows:
        out[row.activation_id].append({"label": row.label, "first_seen": iso(row.first_seen)})
    return out


__all__ = ["changed", "histories"]
