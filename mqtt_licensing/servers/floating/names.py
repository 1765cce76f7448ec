"""Instance labels on the floating server: the current label is a column of the lease (read with
the row every renewal already reads); each change adds a row to ``instance_labels``, of which the
newest ``core.instance_label.HISTORY`` per instance are kept. A renewal whose label equals the
lease's writes nothing. Labels were checked when the signed request was decoded."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from ...core.instance_label import HISTORY
from ...core.timefmt import iso
from .schema import instance_labels


def last(conn: sa.Connection, fingerprint: str) -> str | None:
    """The label this instance had last (for a new lease: a returning broker is no rename)."""
    return conn.execute(
        sa.select(instance_labels.c.label)
        .where(instance_labels.c.instance_fingerprint == fingerprint)
        .order_by(instance_labels.c.id.desc())
        .limit(1)
    ).scalar_one_or_none()


def changed(conn: sa.Connection, fingerprint: str, before: str | None, label: str | None, now: int) -> dict[str, Any]:
    """Record ``label`` when it differs from ``before``; returns the lease row's update. An
    instance that sends no label keeps the one on record."""
    if label is None or label == before:
        return {} if label is None else {"label": label}
    conn.execute(sa.insert(instance_labels).values(instance_fingerprint=fingerprint, label=label, first_seen=now))
    keep = (
        sa.select(instance_labels.c.id)
        .where(instance_labels.c.instance_fingerprint == fingerprint)
        .order_by(instance_labels.c.id.desc())
        .limit(HISTORY)
    )
    conn.execute(
        sa.delete(instance_labels).where(
            instance_labels.c.instance_fingerprint == fingerprint,
            instance_labels.c.id.not_in(sa.select(keep.subquery().c.id)),
        )
    )
    return {"label": label}


def histories(conn: sa.Connection, fingerprints: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """Each instance's labels, oldest first: ``[{"label", "first_seen"}]`` (one query)."""
    wanted = sorted(set(fingerprints))
    out: dict[str, list[dict[str, Any]]] = {f: [] for f in wanted}
    if not wanted:
        return out
    rows = conn.execute(
        sa.select(instance_labels.c.instance_fingerprint, instance_labels.c.label, instance_labels.c.first_seen)
        .where(instance_labels.c.instance_fingerprint.in_(wanted))
        .order_by(instance_labels.c.id)
    )
    for row in rows:
        out[row.instance_fingerprint].append({"label": row.label, "first_seen": iso(row.first_seen)})
    return out


__all__ = ["changed", "histories", "last"]
