"""The store's tables and queries (SQLAlchemy Core), beside the activation server's own.

Same database and engine as :mod:`..store`, so a fulfilment step and the license
row it reads can share one transaction. What each table is for:

* ``shop_orders``: pending -> paid -> fulfilled; a paid order is worked on by the
  fulfilment loop until it is fulfilled, whatever crashed in between;
* ``shop_webhook_events``: Stripe event ids already applied (idempotency);
* ``shop_contacts``: the purchase e-mail of each license sold here (portal codes,
  receipts, reminders go there);
* ``shop_portal_codes`` / ``shop_portal_sessions``: one-time sign-in codes and
  sessions, stored as digests only;
* ``shop_frees``: activations freed in the portal (the per-30-days limit);
* ``shop_reminders``: which support end date a reminder was sent for.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any

import sqlalchemy as sa

# Declared on the activation server's metadata: these tables are part of its schema
# (migrations/versions/0006_shop.py creates them), whether or not the store is configured.
from ..activation.schema import licenses, metadata

orders = sa.Table(
    "shop_orders",
    metadata,
    sa.Column("id", sa.String(48), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),  # purchase | upgrade
    sa.Column("state", sa.String(16), nullable=False),  # pending | paid | fulfilled
    sa.Column("email", sa.String(254), nullable=False),
    sa.Column("license_id", sa.String(40), nullable=True),  # the upgraded one, or the one issued
    sa.Column("lines", sa.JSON, nullable=False),  # [{product, name, feature, kind, price, quantity, amount}]
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("stripe_customer", sa.String(64), nullable=True),
    sa.Column("stripe_payment_intent", sa.String(64), nullable=True, unique=True),
    sa.Column("stripe_subscription", sa.String(64), nullable=True),
    sa.Column("support_until", sa.BigInteger, nullable=True),  # the end date this order sets, fixed once
    # The key of a license issued for this order, held only until the e-mail carrying it is
    # accepted by the SMTP server, then erased: a crash in between re-sends the same key
    # instead of issuing a second license.
    sa.Column("pending_key", sa.String(64), nullable=True),
    # Who works on the order: a lease, so two workers (threads, replicas) never fulfil or charge
    # one order at once, and the work of a crashed one is taken over when its lease runs out.
    sa.Column("claimed_until", sa.BigInteger, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("last_error", sa.String(300), nullable=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("paid_at", sa.BigInteger, nullable=True),
    sa.Column("fulfilled_at", sa.BigInteger, nullable=True),
    sa.Index("ix_shop_orders_state", "state"),
)

webhook_events = sa.Table(
    "shop_webhook_events",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("received_at", sa.BigInteger, nullable=False),
)

contacts = sa.Table(
    "shop_contacts",
    metadata,
    sa.Column("license_id", sa.String(40), primary_key=True),
    sa.Column("email", sa.String(254), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

portal_codes = sa.Table(
    "shop_portal_codes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("license_id", sa.String(40), nullable=False),
    sa.Column("code_digest", sa.String(64), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("used", sa.Boolean, nullable=False),
    sa.Index("ix_shop_portal_codes_license", "license_id", "created_at"),
)

portal_sessions = sa.Table(
    "shop_portal_sessions",
    metadata,
    sa.Column("token_digest", sa.String(64), primary_key=True),
    sa.Column("license_id", sa.String(40), nullable=False),
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
)

frees = sa.Table(
    "shop_frees",
    metadata,
    sa.Column("activation_id", sa.String(40), primary_key=True),
    sa.Column("license_id", sa.String(40), nullable=False),
    sa.Column("freed_at", sa.BigInteger, nullable=False),
    sa.Index("ix_shop_frees_license", "license_id", "freed_at"),
)

reminders = sa.Table(
    "shop_reminders",
    metadata,
    sa.Column("license_id", sa.String(40), primary_key=True),
    sa.Column("support_until", sa.BigInteger, primary_key=True),
    sa.Column("sent_at", sa.BigInteger, nullable=False),
)


@dataclass(frozen=True)
class Order:
    id: str
    kind: str
    state: str
    email: str
    license_id: str | None
    lines: list[dict[str, Any]]
    amount: int
    currency: str
    stripe_customer: str | None
    stripe_payment_intent: str | None
    stripe_subscription: str | None
    support_until: int | None
    pending_key: str | None
    claimed_until: int | None
    attempts: int
    last_error: str | None
    created_at: int
    paid_at: int | None
    fulfilled_at: int | None


def _order(row: Any) -> Order:
    values = dict(row._mapping)  # noqa: SLF001 - SQLAlchemy's public Row mapping
    return Order(**{f.name: values[f.name] for f in fields(Order)})


class ShopTx:
    """Queries inside one open transaction."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    # -- orders ------------------------------------------------------------------
    def insert_order(self, order: Order) -> None:
        self.conn.execute(orders.insert().values(**{f.name: getattr(order, f.name) for f in fields(order)}))

    def get_order(self, order_id: str) -> Order | None:
        row = self.conn.execute(sa.select(orders).where(orders.c.id == order_id).with_for_update()).first()
        return _order(row) if row is not None else None

    def order_ids(self, state: str, *, created: tuple[int, int] | None = None) -> list[str]:
        """Orders in ``state``; with ``created=(after, before)`` only those with a payment, created then."""
        query = sa.select(orders.c.id).where(orders.c.state == state).order_by(orders.c.created_at)
        if created is not None:
            query = query.where(
                orders.c.created_at >= created[0],
                orders.c.created_at < created[1],
                orders.c.stripe_payment_intent.is_not(None),
            )
        return [r[0] for r in self.conn.execute(query)]

    def intent_taken(self, payment_intent: str) -> bool:
        found = sa.select(orders.c.id).where(orders.c.stripe_payment_intent == payment_intent)
        return self.conn.execute(found).first() is not None

    def update_order(self, order_id: str, *, expect_state: str | None = None, **values: Any) -> bool:
        """Change an order; with ``expect_state`` only if it is still in that state (a compare-and-set)."""
        query = orders.update().where(orders.c.id == order_id)
        if expect_state is not None:
            query = query.where(orders.c.state == expect_state)
        return bool(self.conn.execute(query.values(**values)).rowcount)

    def claim_order(self, order_id: str, state: str, now: int, until: int) -> bool:
        """Take the order's lease if it is in ``state`` and nobody holds a live lease."""
        query = (
            orders.update()
            .where(orders.c.id == order_id, orders.c.state == state)
            .where(sa.or_(orders.c.claimed_until.is_(None), orders.c.claimed_until <= now))
            .values(claimed_until=until)
        )
        return bool(self.conn.execute(query).rowcount)

    def pending_support_ends(self, order: Order) -> list[int]:
        """Support end dates fixed by other paid, not yet applied upgrades of the same license."""
        query = sa.select(orders.c.support_until).where(
            orders.c.license_id == order.license_id,
            orders.c.state == "paid",
            orders.c.id != order.id,
            orders.c.support_until.is_not(None),
        )
        return [int(r[0]) for r in self.conn.execute(query)]

    # -- webhook events --------------------------------------------------------------
    def claim_event(self, event_id: str, event_type: str, now: int) -> bool:
        """Record an event id; False if it was recorded before (a redelivery)."""
        seen = self.conn.execute(sa.select(webhook_events.c.id).where(webhook_events.c.id == event_id)).first()
        if seen is not None:
            return False
        self.conn.execute(webhook_events.insert().values(id=event_id, type=event_type, received_at=now))
        return True

    # -- licenses (read-only here) -------------------------------------------------
    def lock_license(self, license_id: str) -> Any:
        """The license row, locked for this transaction (serializes work on one license)."""
        return self.conn.execute(sa.select(licenses).where(licenses.c.id == license_id).with_for_update()).first()

    def license_by_digest(self, digest: str) -> Any:
        return self.conn.execute(sa.select(licenses).where(licenses.c.key_digest == digest)).first()

    # -- contacts ------------------------------------------------------------------
    def set_contact(self, license_id: str, email: str, now: int) -> None:
        if self.contact(license_id) is None:
            self.conn.execute(contacts.insert().values(license_id=license_id, email=email, created_at=now))

    def replace_contact(self, license_id: str, email: str, now: int) -> None:
        self.conn.execute(contacts.delete().where(contacts.c.license_id == license_id))
        self.conn.execute(contacts.insert().values(license_id=license_id, email=email, created_at=now))

    def contact(self, license_id: str) -> str | None:
        row = self.conn.execute(sa.select(contacts.c.email).where(contacts.c.license_id == license_id)).first()
        return row[0] if row is not None else None

    def support_ending(self, start: int, end: int) -> list[tuple[str, str, int]]:
        """(license id, e-mail, support end) of sold licenses whose support ends in [start, end)
        and for whose end date no reminder was sent yet."""
        query = (
            sa.select(licenses.c.id, contacts.c.email, licenses.c.support_until)
            .join(contacts, contacts.c.license_id == licenses.c.id)
            .outerjoin(
                reminders,
                sa.and_(reminders.c.license_id == licenses.c.id, reminders.c.support_until == licenses.c.support_until),
            )
            .where(
                licenses.c.support_until >= start,
                licenses.c.support_until < end,
                licenses.c.status == "active",
                reminders.c.sent_at.is_(None),
            )
        )
        return [(r[0], r[1], int(r[2])) for r in self.conn.execute(query)]

    def claim_reminder(self, license_id: str, support_until: int, now: int) -> bool:
        """Record the reminder for this end date; False if one was recorded already (another pass)."""
        key = sa.and_(reminders.c.license_id == license_id, reminders.c.support_until == support_until)
        if self.conn.execute(sa.select(reminders.c.sent_at).where(key)).first() is not None:
            return False
        self.conn.execute(reminders.insert().values(license_id=license_id, support_until=support_until, sent_at=now))
        return True

    def unclaim_reminder(self, license_id: str, support_until: int) -> None:
        self.conn.execute(
            reminders.delete().where(reminders.c.license_id == license_id, reminders.c.support_until == support_until)
        )

    # -- portal ----------------------------------------------------------------------
    def count_codes_since(self, license_id: str, since: int) -> int:
        query = sa.select(sa.func.count()).where(
            portal_codes.c.license_id == license_id, portal_codes.c.created_at >= since
        )
        return int(self.conn.execute(query).scalar_one())

    def insert_code(self, license_id: str, digest: str, now: int, expires_at: int) -> None:
        self.conn.execute(
            portal_codes.insert().values(
                license_id=license_id, code_digest=digest, created_at=now, expires_at=expires_at, attempts=0, used=False
            )
        )

    def live_codes(self, license_id: str, now: int) -> list[tuple[int, str, int]]:
        """(id, digest, attempts) of unused, unexpired codes."""
        query = sa.select(portal_codes.c.id, portal_codes.c.code_digest, portal_codes.c.attempts).where(
            portal_codes.c.license_id == license_id,
            portal_codes.c.used.is_(False),
            portal_codes.c.expires_at > now,
        )
        return [(int(r[0]), r[1], int(r[2])) for r in self.conn.execute(query)]

    def update_code(self, code_id: int, **values: Any) -> None:
        self.conn.execute(portal_codes.update().where(portal_codes.c.id == code_id).values(**values))

    def insert_session(self, digest: str, license_id: str, csrf: str, expires_at: int) -> None:
        self.conn.execute(
            portal_sessions.insert().values(
                token_digest=digest, license_id=license_id, csrf=csrf, expires_at=expires_at
            )
        )

    def session(self, digest: str, now: int) -> tuple[str, str] | None:
        """(license id, csrf token) of a live session."""
        row = self.conn.execute(
            sa.select(portal_sessions.c.license_id, portal_sessions.c.csrf).where(
                portal_sessions.c.token_digest == digest, portal_sessions.c.expires_at > now
            )
        ).first()
        return (row[0], row[1]) if row is not None else None

    def delete_session(self, digest: str) -> None:
        self.conn.execute(portal_sessions.delete().where(portal_sessions.c.token_digest == digest))

    def prune(self, now: int) -> None:
        self.conn.execute(portal_sessions.delete().where(portal_sessions.c.expires_at <= now))
        self.conn.execute(portal_codes.delete().where(portal_codes.c.expires_at <= now - 86400))

    def count_frees_since(self, license_id: str, since: int) -> int:
        query = sa.select(sa.func.count()).where(frees.c.license_id == license_id, frees.c.freed_at >= since)
        return int(self.conn.execute(query).scalar_one())

    def insert_free(self, activation_id: str, license_id: str, now: int) -> None:
        self.conn.execute(frees.insert().values(activation_id=activation_id, license_id=license_id, freed_at=now))

    def delete_free(self, activation_id: str) -> None:
        self.conn.execute(frees.delete().where(frees.c.activation_id == activation_id))


class ShopStore:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    @contextmanager
    def transaction(self) -> Iterator[ShopTx]:
        with self.engine.begin() as conn:
            yield ShopTx(conn)
