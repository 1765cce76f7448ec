"""The store's queries (SQLAlchemy Core) on its own tables (:mod:`.schema`).

The store has its own engine on the activation server's database and never opens a
transaction that reads the activation tables: licenses are read and changed only through
``ActivationService``, outside the store's transactions (so neither waits on the other's).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from typing import Any

import sqlalchemy as sa

from .._db import create_db_engine, migrate
from .schema import SCHEMA, contacts, frees, orders, portal_codes, portal_sessions, reminders, webhook_events


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
    number: int | None = None  # given when the order is stored (insert_order)
    country: str | None = None
    tax: int = 0  # minor units, included in amount
    payment: str = "card"  # card | invoice (pay by invoice, Stripe's send_invoice)
    card_last4: str | None = None
    stripe_invoice: str | None = None
    invoice_number: str | None = None
    invoice_url: str | None = None  # Stripe's hosted invoice page
    invoice_pdf: str | None = None
    provisional_until: int | None = None  # a provisional license's end while its invoice is unpaid
    cancel_at: int | None = None  # the subscription's metered features are removed then
    invoice_checked_at: int | None = None
    tax_calculation: str | None = None  # Stripe Tax's taxcalc_..., made before payment
    tax_transaction: str | None = None  # Stripe Tax's record of the paid sale
    po_number: str | None = None  # the buyer's purchase order number, on the invoice (pay by invoice)


def order_of_row(row: Any) -> Order:
    values = dict(row._mapping)  # noqa: SLF001 - SQLAlchemy's public Row mapping
    return Order(**{f.name: values[f.name] for f in fields(Order)})


class ShopTx:
    """Queries inside one open transaction."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    # -- orders ------------------------------------------------------------------
    def insert_order(self, order: Order) -> Order:
        """Store a new order with the next order number; returns it with its number."""
        if self.conn.dialect.name == "postgresql":  # two new orders at once never take one number
            self.conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('shop_order_number'))"))
        number = int(self.conn.execute(sa.select(sa.func.coalesce(sa.func.max(orders.c.number), 0))).scalar_one()) + 1
        order = replace(order, number=number)
        self.conn.execute(orders.insert().values(**{f.name: getattr(order, f.name) for f in fields(order)}))
        return order

    def get_order(self, order_id: str) -> Order | None:
        row = self.conn.execute(sa.select(orders).where(orders.c.id == order_id).with_for_update()).first()
        return order_of_row(row) if row is not None else None

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

    def order_of_invoice(self, invoice: str) -> Order | None:
        row = self.conn.execute(sa.select(orders).where(orders.c.stripe_invoice == invoice).with_for_update()).first()
        return order_of_row(row) if row is not None else None

    def awaiting_provision(self) -> list[str]:
        """Orders paid by invoice, not yet paid, whose provisional license is not issued or not mailed."""
        query = sa.select(orders.c.id).where(
            orders.c.state == "invoiced",
            orders.c.kind == "purchase",
            sa.or_(orders.c.license_id.is_(None), orders.c.pending_key.is_not(None)),
        )
        return [str(r[0]) for r in self.conn.execute(query.order_by(orders.c.created_at))]

    def invoices_to_check(self, before: int) -> list[str]:
        """Invoiced orders not asked about since ``before`` (their ``invoice.paid`` may be lost)."""
        c = orders.c
        query = sa.select(c.id).where(
            c.state == "invoiced",
            c.stripe_invoice.is_not(None),
            sa.or_(c.invoice_checked_at.is_(None), c.invoice_checked_at <= before),
        )
        return [str(r[0]) for r in self.conn.execute(query.order_by(c.created_at))]

    def due_cancellations(self, now: int) -> list[tuple[str, int]]:
        """(order, when) of feature removals scheduled for a subscription's period end, now due."""
        query = sa.select(orders.c.id, orders.c.cancel_at).where(orders.c.cancel_at <= now)
        return [(str(r[0]), int(r[1])) for r in self.conn.execute(query)]

    def order_of_subscription(self, subscription: str) -> str | None:
        found = sa.select(orders.c.id).where(orders.c.stripe_subscription == subscription)
        row = self.conn.execute(found).first()
        return str(row[0]) if row is not None else None

    def list_orders(self) -> list[Order]:
        """Every order, newest first (the vendor's `vendor orders`)."""
        query = sa.select(orders).order_by(orders.c.created_at.desc(), orders.c.id)
        return [order_of_row(r) for r in self.conn.execute(query)]

    def order_by_number(self, number: int) -> Order | None:
        row = self.conn.execute(sa.select(orders).where(orders.c.number == number)).first()
        return order_of_row(row) if row is not None else None

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

    def lock_orders_of(self, license_id: str) -> None:
        """Lock every order of the license for this transaction: two fulfilments of upgrades of
        one license (threads, replicas) then fix their support end dates one after the other."""
        self.conn.execute(sa.select(orders.c.id).where(orders.c.license_id == license_id).with_for_update()).all()

    def other_support_ends(self, order: Order, fulfilled_since: int) -> list[int]:
        """Support end dates fixed by other upgrades of the same license: paid and not yet applied,
        or applied since ``fulfilled_since`` (the license read before may not show them yet)."""
        query = sa.select(orders.c.support_until).where(
            orders.c.license_id == order.license_id,
            orders.c.id != order.id,
            orders.c.support_until.is_not(None),
            sa.or_(
                orders.c.state == "paid",
                sa.and_(orders.c.state == "fulfilled", orders.c.fulfilled_at >= fulfilled_since),
            ),
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

    def contacts_of(self, license_ids: list[str]) -> dict[str, str]:
        """The purchase address of each of these licenses that has one."""
        query = sa.select(contacts.c.license_id, contacts.c.email).where(contacts.c.license_id.in_(license_ids))
        return {r[0]: r[1] for r in self.conn.execute(query)}

    def lock_contact(self, license_id: str) -> str | None:
        """The license's address, its row locked for this transaction: portal work on one license
        (sign-ins counting wrong codes, frees counting the limit) runs one at a time."""
        query = sa.select(contacts.c.email).where(contacts.c.license_id == license_id).with_for_update()
        row = self.conn.execute(query).first()
        return row[0] if row is not None else None

    def reminded(self, license_id: str, support_until: int) -> bool:
        key = sa.and_(reminders.c.license_id == license_id, reminders.c.support_until == support_until)
        return self.conn.execute(sa.select(reminders.c.sent_at).where(key)).first() is not None

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

    @classmethod
    def open(cls, database_url: str) -> ShopStore:
        """The store's tables in the database at ``database_url``, brought to this code's version."""
        store = cls(create_db_engine(database_url))
        try:
            store.migrate()
        except BaseException:
            store.close()
            raise
        return store

    def migrate(self) -> None:
        migrate(self.engine, SCHEMA)

    @contextmanager
    def transaction(self) -> Iterator[ShopTx]:
        with self.engine.begin() as conn:
            yield ShopTx(conn)

    def close(self) -> None:
        self.engine.dispose()


__all__ = ["Order", "ShopStore", "ShopTx", "order_of_row"]
