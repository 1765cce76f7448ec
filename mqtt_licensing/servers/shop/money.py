"""The license follows the money after the sale.

A verified Stripe event that moves an order's money is recorded in the same transaction that
claims its event id (so a redelivery changes nothing), one row per event; the worker then
applies it to the license through ``ActivationService`` (the methods ``vendor suspend`` /
``vendor update`` use) and tells the customer, and marks it applied. A crash in between
leaves the row unapplied, and the next pass applies it.

* ``charge.refunded``, the whole charge: a purchase's license is suspended; an upgrade loses
  the features it added. A partial refund is recorded on the order (the vendor decides).
* ``charge.dispute.created``: recorded; the license stays until the dispute is decided.
* ``charge.dispute.closed``, lost: the license is revoked. Won: recorded.
* ``customer.subscription.deleted`` (Stripe sends it when a cancelled subscription's paid
  period ends): the license loses the metered features that subscription paid for.

Each change reaches brokers at their next check-in or ``reactivate``.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa

from ...core.errors import LicensingError
from ..activation.service import ActivationService
from .catalogue import Kind, line_features
from .mail import Mailer
from .schema import money_events, orders
from .store import Order, ShopStore

log = logging.getLogger(__name__)

EVENTS = ("charge.refunded", "charge.dispute.created", "charge.dispute.closed", "customer.subscription.deleted")


def _order_where(conn: sa.Connection, column: sa.Column[Any], value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    row = conn.execute(sa.select(orders.c.id).where(column == value)).first()
    return str(row[0]) if row is not None else None


def _kind(event_type: str, obj: dict[str, Any]) -> tuple[str, str | None, Any]:
    """(kind, the key naming the order's payment or subscription, the amount) of one event."""
    if event_type == "charge.refunded":
        amount, refunded = obj.get("amount"), obj.get("amount_refunded")
        whole = obj.get("refunded") is True or (isinstance(amount, int) and refunded == amount)
        return ("refund_full" if whole else "refund_partial"), obj.get("payment_intent"), refunded
    if event_type == "charge.dispute.created":
        return "dispute_opened", obj.get("payment_intent"), obj.get("amount")
    if event_type == "charge.dispute.closed":
        status = obj.get("status")
        kind = "dispute_lost" if status == "lost" else "dispute_won" if status == "won" else "dispute_closed"
        return kind, obj.get("payment_intent"), obj.get("amount")
    return "subscription_ended", obj.get("id"), None


def record(conn: sa.Connection, event_id: str, event_type: str, obj: dict[str, Any], now: int) -> str:
    """Record one money event of an order of ours, inside the transaction that claimed its id."""
    kind, key, amount = _kind(event_type, obj)
    column = orders.c.stripe_subscription if kind == "subscription_ended" else orders.c.stripe_payment_intent
    order_id = _order_where(conn, column, key)
    if order_id is None:
        log.warning("stripe event %s (%s) names no order of ours", event_id, event_type)
        return "ignored"
    conn.execute(
        money_events.insert().values(
            event_id=event_id,
            order_id=order_id,
            kind=kind,
            amount=amount if isinstance(amount, int) else None,
            received_at=now,
        )
    )
    log.info("order %s: %s recorded (event %s)", order_id, kind, event_id)
    return "recorded"


def history(conn: sa.Connection, order_id: str) -> list[dict[str, Any]]:
    """What happened to an order's money, oldest first."""
    c = money_events.c
    rows = conn.execute(sa.select(money_events).where(c.order_id == order_id).order_by(c.received_at, c.event_id))
    return [dict(r._mapping) for r in rows]  # noqa: SLF001 - SQLAlchemy's public Row mapping


class Money:
    def __init__(self, service: ActivationService, store: ShopStore, mailer: Mailer) -> None:
        self.service, self.store, self.mailer = service, store, mailer

    def apply_due(self) -> int:
        """Apply every recorded, unapplied money event; each failure is kept for the next pass."""
        with self.store.transaction() as tx:
            c = money_events.c
            due = [dict(r._mapping) for r in tx.conn.execute(sa.select(money_events).where(c.applied_at.is_(None)))]  # noqa: SLF001
        done = 0
        for event in sorted(due, key=lambda e: (e["received_at"], e["event_id"])):
            with self.store.transaction() as tx:
                order = tx.get_order(event["order_id"])
            assert order is not None
            try:
                outcome = self._apply(event["kind"], order)
            except LicensingError as exc:
                self._mark(event["event_id"], last_error=exc.message[:300])
                log.warning("order %s: %s not applied yet: %s", order.id, event["kind"], exc.message)
                continue
            self._mark(event["event_id"], applied_at=self.service.clock(), outcome=outcome[:200], last_error=None)
            done += 1
            if order.license_id is not None and outcome != "recorded":
                self._tell(order, outcome)
        return done

    def _mark(self, event_id: str, **values: Any) -> None:
        with self.store.transaction() as tx:
            tx.conn.execute(money_events.update().where(money_events.c.event_id == event_id).values(**values))

    def _apply(self, kind: str, order: Order) -> str:
        """Change the license as the money moved; returns what was done, in words."""
        license_id = order.license_id
        if license_id is None:
            return "recorded"  # paid, never fulfilled: nothing was licensed
        if kind == "refund_full" and order.kind == "purchase":
            return self._status(license_id, "suspended", "suspended: the payment was refunded")
        if kind == "refund_full":
            added = sorted({f for line in order.lines if line["kind"] != Kind.PER_YEAR for f in line_features(line)})
            if not added:
                return "recorded"
            self.service.update_license(license_id, {"remove_features": added})
            return f"{', '.join(added)} removed: the upgrade was refunded"
        if kind == "dispute_lost":
            return self._status(license_id, "revoked", "revoked: the payment was charged back")
        if kind == "subscription_ended":
            metered = sorted({f for line in order.lines if line["kind"] == Kind.METERED for f in line_features(line)})
            if not metered:
                return "recorded"
            self.service.update_license(license_id, {"remove_features": metered})
            return f"{', '.join(metered)} removed: the subscription ended"
        return "recorded"  # a partial refund, an open or won dispute: on the order, for the vendor

    def _status(self, license_id: str, status: str, said: str) -> str:
        if self.service.get_license(license_id)["status"] in (status, "revoked"):
            return said  # already so (a replay after a crash, or the vendor did it)
        self.service.set_status(license_id, status)
        return said

    def _tell(self, order: Order, outcome: str) -> None:
        try:
            self.mailer.send(
                order.email,
                f"License {order.license_id} changed",
                f"License {order.license_id}: {outcome}.\n\n"
                "Your broker applies this at its next check-in (or when you click Reactivate).\n"
                "If this is a mistake, reply to this e-mail.\n",
            )
        except LicensingError as exc:  # the change stands; the e-mail is not worth undoing it
            log.warning("order %s: could not tell %s about %s: %s", order.id, order.email, outcome, exc.message)


__all__ = ["EVENTS", "Money", "history", "record"]
