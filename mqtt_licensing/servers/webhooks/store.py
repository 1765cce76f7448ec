"""Webhook endpoints and the outbox: the queries, each a short transaction of its own."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from ...core.errors import ErrorCode, LicensingError
from ...core.timefmt import iso
from .._db import migrate
from ..defaults import WEBHOOK_EVENTS as EVENT_TYPES
from .schema import SCHEMA, endpoints, outbox
from .signing import new_secret

RETRY_FOR = 24 * 3600  # an event is retried for a day, then given up (and shown so in deliveries)
CLAIM_SECONDS = 60  # a claimed row is not sent by another replica meanwhile (the Deliverer's own is 3 x its timeout)
# Never in a payload, whoever emits it: a receiver is a third party.
_SECRET_FIELDS = frozenset({"license_key", "key", "token", "secret", "password", "admin_token", "chain"})


def backoff(attempts: int) -> int:
    """Seconds before attempt ``attempts + 1``: 5 s, 15 s, 45 s, ... capped at an hour."""
    return int(min(5 * 3 ** max(attempts - 1, 0), 3600))


def _check_payload(data: Mapping[str, Any]) -> None:
    for name, value in data.items():
        if name in _SECRET_FIELDS:
            raise ValueError(f"webhook payloads never carry {name!r}")
        if isinstance(value, Mapping):
            _check_payload(value)


def emit(conn: sa.Connection, event_type: str, data: Mapping[str, Any], now: int) -> int:
    """Queue ``event_type`` for every endpoint that wants it, inside the caller's transaction.
    Returns how many deliveries were queued."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event {event_type!r}")
    _check_payload(data)
    queued = 0
    for row in conn.execute(sa.select(endpoints.c.id, endpoints.c.events)):
        if row.events and event_type not in row.events:
            continue
        msg_id = "msg_" + secrets.token_hex(12)
        body = {"type": event_type, "timestamp": iso(now), "data": dict(data)}
        conn.execute(
            sa.insert(outbox).values(
                id=msg_id,
                endpoint_id=row.id,
                event_type=event_type,
                payload=json.dumps(body, sort_keys=True, separators=(",", ":")),
                created_at=now,
                next_attempt_at=now,
                attempts=0,
            )
        )
        queued += 1
    return queued


@dataclass(frozen=True)
class Due:
    """One claimed delivery: what to send and where."""

    id: str
    url: str
    secret: str
    payload: bytes
    attempts: int
    created_at: int


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LicensingError(ErrorCode.INVALID_FIELD, f"a webhook URL is http(s)://host/...: {url!r}")
    return url


def check_events(events: Iterable[str]) -> list[str]:
    chosen = sorted(set(events))
    for name in chosen:
        if name not in EVENT_TYPES:
            raise LicensingError(
                ErrorCode.INVALID_FIELD, f"unknown webhook event {name!r} (events: {', '.join(EVENT_TYPES)})"
            )
    return chosen


class Webhooks:
    """A server's webhook state on its engine (the same database as its other tables)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def migrate(self) -> None:
        migrate(self.engine, SCHEMA)

    def add(self, url: str, events: Iterable[str], now: int) -> dict[str, Any]:
        """A new endpoint; the answer holds its signing secret, shown this once."""
        endpoint = {"id": "we_" + secrets.token_hex(8), "url": check_url(url), "events": check_events(events)}
        secret = new_secret()
        with self.engine.begin() as conn:
            conn.execute(sa.insert(endpoints).values(**endpoint, secret=secret, created_at=now))
        return {**endpoint, "secret": secret, "created_at": iso(now)}

    def list_endpoints(self) -> list[dict[str, Any]]:
        with self.engine.begin() as conn:
            rows = conn.execute(sa.select(endpoints).order_by(endpoints.c.created_at, endpoints.c.id)).all()
        return [{"id": r.id, "url": r.url, "events": list(r.events), "created_at": iso(r.created_at)} for r in rows]

    def remove(self, endpoint_id: str) -> None:
        with self.engine.begin() as conn:
            gone = conn.execute(sa.delete(endpoints).where(endpoints.c.id == endpoint_id)).rowcount
            conn.execute(sa.delete(outbox).where(outbox.c.endpoint_id == endpoint_id, outbox.c.delivered_at.is_(None)))
        if not gone:
            raise LicensingError(ErrorCode.NOT_FOUND, f"no webhook endpoint {endpoint_id!r}")

    def deliveries(self, endpoint_id: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        query = sa.select(outbox).order_by(outbox.c.created_at.desc(), outbox.c.id).limit(limit)
        if endpoint_id is not None:
            query = query.where(outbox.c.endpoint_id == endpoint_id)
        with self.engine.begin() as conn:
            rows = conn.execute(query).all()
        return [
            {
                "id": r.id,
                "endpoint_id": r.endpoint_id,
                "event_type": r.event_type,
                "attempts": r.attempts,
                "state": "delivered" if r.delivered_at else "given_up" if r.gave_up_at else "pending",
                "last_status": r.last_status,
                "last_error": r.last_error,
                "created_at": iso(r.created_at),
                "last_attempt_at": iso(r.last_attempt_at) if r.last_attempt_at else None,
            }
            for r in rows
        ]

    def emit(self, event_type: str, data: Mapping[str, Any], now: int) -> int:
        """:func:`emit` in a transaction of its own (for changes made outside a store transaction)."""
        with self.engine.begin() as conn:
            return emit(conn, event_type, data, now)

    def claim_due(self, now: int, limit: int = 20, claim_seconds: int = CLAIM_SECONDS) -> list[Due]:
        """Rows due now, each claimed for ``claim_seconds`` so that another replica skips it.

        A server killed mid-delivery leaves its claims: they are due again once the claim ends,
        under the same ``webhook-id`` (the receiver may see an id twice, never an event under two)."""
        query = (
            sa.select(outbox, endpoints.c.url, endpoints.c.secret)
            .join(endpoints, endpoints.c.id == outbox.c.endpoint_id)
            .where(outbox.c.next_attempt_at <= now)
            .order_by(outbox.c.next_attempt_at, outbox.c.id)
            .limit(limit)
        )
        claimed = []
        with self.engine.begin() as conn:
            for row in conn.execute(query).all():
                taken = conn.execute(
                    sa.update(outbox)
                    .where(outbox.c.id == row.id, outbox.c.next_attempt_at == row.next_attempt_at)
                    .values(next_attempt_at=now + claim_seconds)
                ).rowcount
                if taken:
                    claimed.append(Due(row.id, row.url, row.secret, row.payload.encode(), row.attempts, row.created_at))
        return claimed

    def record(self, due: Due, now: int, *, status: int | None, error: str | None) -> None:
        """The outcome of one attempt: delivered on a 2xx, else retried with backoff for a day."""
        attempts = due.attempts + 1
        values: dict[str, Any] = {
            "attempts": attempts,
            "last_status": status,
            "last_error": (error or "")[:200] or None,
            "last_attempt_at": now,
        }
        if status is not None and 200 <= status < 300:
            values.update(delivered_at=now, next_attempt_at=None)
        elif now + backoff(attempts) - due.created_at > RETRY_FOR:
            values.update(gave_up_at=now, next_attempt_at=None)
        else:
            values.update(next_attempt_at=now + backoff(attempts))
        with self.engine.begin() as conn:
            conn.execute(sa.update(outbox).where(outbox.c.id == due.id).values(**values))
