"""Instance labels on the activation server: the current label is a column of the activation
(read with the row every request already reads); each change adds a row to ``activation_labels``
(:class:`..._labels.LabelHistory`).

A request whose label equals the one on record writes nothing, so a check-in pays for labels only
when a broker was renamed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from .._labels import LabelHistory
from .schema import activation_labels

_HISTORY = LabelHistory(activation_labels, activation_labels.c.activation_id)


def changed(conn: sa.Connection, activation_id: str, before: str | None, label: str | None, now: int) -> dict[str, Any]:
    """Record ``label`` when it differs from ``before``; returns the activation row's update
    (merged by the caller into the UPDATE it makes anyway). An instance that sends no label
    (an agent from before labels) keeps the one on record."""
    if label is None or label == before:
        return {}
    _HISTORY.record(conn, activation_id, label, now)
    return {"label": label}


def histories(conn: sa.Connection, activation_ids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """Each activation's labels, oldest first: ``[{"label", "first_seen"}]``."""
    return _HISTORY.histories(conn, activation_ids)


__all__ = ["changed", "histories"]
