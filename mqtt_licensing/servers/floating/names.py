"""Instance labels on the floating server: the current label is a column of the lease (read with
the row every renewal already reads); each change adds a row to ``instance_labels``, kept per
instance (:class:`..._labels.LabelHistory`), so a label outlives the lease. A renewal whose label
equals the lease's writes nothing."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from .._labels import LabelHistory
from .schema import instance_labels

_HISTORY = LabelHistory(instance_labels, instance_labels.c.instance_fingerprint)


def last(conn: sa.Connection, fingerprint: str) -> str | None:
    """The label this instance had last (for a new lease: a returning broker is no rename)."""
    return _HISTORY.last(conn, fingerprint)


def changed(conn: sa.Connection, fingerprint: str, before: str | None, label: str | None, now: int) -> dict[str, Any]:
    """Record ``label`` when it differs from ``before``; returns the lease row's update. An
    instance that sends no label keeps the one on record."""
    if label is None or label == before:
        return {} if label is None else {"label": label}
    _HISTORY.record(conn, fingerprint, label, now)
    return {"label": label}


def histories(conn: sa.Connection, fingerprints: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """Each instance's labels, oldest first: ``[{"label", "first_seen"}]``."""
    return _HISTORY.histories(conn, fingerprints)


__all__ = ["changed", "histories", "last"]
