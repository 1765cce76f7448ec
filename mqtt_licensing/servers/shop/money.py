"""The license follows the money after the sale.

A verified Stripe event that moves an order's money is recorded in the same transaction that
claims its event id (so a redelivery changes nothing), one row per event; the worker then
applies it to the license through ``ActivationService`` (the methods ``vendor suspend`` /
``vendor update`` use) and tells the customer, and marks it applied. A crash in between
leaves the row unapplied, and the next pass applies it.

* ``charge.refunded``, the whole charge: a purchase's license is suspended; an upgrade loses
  the features it added. A partial refund of exactly one add-on line removes that line's
  features; of support years, shortens support; any other amount is flagged for the vendor
  (:mod:`.refunds`).
* ``charge.dispute.created``: recorded; the license stays until the dispute is decided.
* ``charge.dispute.closed``, lost: the license is revoked. Won: recorded.
* ``customer.subscription.updated`` with ``cancel_at_period_end``: the metered features are
  scheduled for removal at the period end (the order's ``cancel_at``; the worker records the
  removal when it is due); withdrawn again: unscheduled.
* ``customer.subscription.deleted``: the license loses the metered features that subscription paid for.
* ``invoice.payment_failed`` (usage, or an invoice sent to be paid): recorded, the customer told.
* ``invoice.voided`` / ``marked_uncollectible`` of an invoice sent to be paid (:mod:`.by_invoice`):
  the provisional license is suspended.

Each change reaches brokers at their next check-in or ``reactivate``.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa

from ...core.errors import LicensingError
from ...core.timefmt import add_years
from ..activation.service import ActivationService
from .catalogue import Kind, line_features
from .mail import Mailer
from .messages import change_reaches, day
from .refunds import match, previous_refunds
from .schema import money_events, orders
from .store import Order, ShopStore
from .stripe_tax import StripeTax

log = logging.getLogger(__name__)

EVENTS = (
    "charge.refunded",
    "charge.dispute.created",
    "charge.dispute.closed",
    "customer.subscription.deleted",
    "customer.subscription.updated",
)
CLAIM_SECONDS = 120  # a worker's lease on one event; a crashed worker's is taken over after this
UNCHANGED = ("recorded", "flagged")  # outcomes that leave the license as it was: no e-mail
NOTICES = ("payment failed",)  # e-mails about the money only: the license is as it was


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


def add(
    conn: sa.Connection,
    event_id: str,
    order_id: str,
    kind: str,
    *,
    amount: Any,
    now: int,
    effective_at: int | None = None,
) -> str:
    """One money event of an order, to be applied by the worker."""
    conn.execute(
        money_events.insert().values(
            event_id=event_id,
            order_id=order_id,
            kind=kind,
            amount=amount if isinstance(amount, int) and not isinstance(amount, bool) else None,
            received_at=now,
            effective_at=effective_at,
        )
    )
    log.info("order %s: %s recorded (event %s)", order_id, kind, event_id)
    return "recorded"


def _period_end(sub: dict[str, Any]) -> int | None:
    """The end of the paid period (newer API versions keep it on the items)."""
    for value in (sub.get("cancel_at"), sub.get("current_period_end")):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    items = (sub.get("items") or {}).get("data") or []
    ends = [i.get("current_period_end") for i in items if isinstance(i.get("current_period_end"), int)]
    return max(ends) if ends else None


def _subscription_updated(conn: sa.Connection, event_id: str, sub: dict[str, Any], now: int) -> str:
    row = conn.execute(sa.select(orders.c.id, orders.c.cancel_at).where(orders.c.stripe_subscription == sub.get("id")))
    found = row.first() if isinstance(sub.get("id"), str) else None
    if found is None:
        return "ignored"
    order_id, cancel_at = str(found[0]), found[1]
    if sub.get("cancel_at_period_end") is True and cancel_at is None:
        end = _period_end(sub) or now
        conn.execute(orders.update().where(orders.c.id == order_id).values(cancel_at=end))
        return add(conn, event_id, order_id, "cancel_scheduled", amount=None, now=now, effective_at=end)
    if sub.get("cancel_at_period_end") is False and cancel_at is not None:
        conn.execute(orders.update().where(orders.c.id == order_id).values(cancel_at=None))
        return add(conn, event_id, order_id, "cancel_unscheduled", amount=None, now=now)
    return "ignored"  # another change of the subscription (a card, a quantity): nothing for the license


def record(conn: sa.Connection, event_id: str, event_type: str, obj: dict[str, Any], now: int) -> str:
    """Record one money event of an order of ours, inside the transaction that claimed its id."""
    if event_type == "customer.subscription.updated":
        return _subscription_updated(conn, event_id, obj, now)
    kind, key, amount = _kind(event_type, obj)
    column = orders.c.stripe_subscription if kind == "subscription_ended" else orders.c.stripe_payment_intent
    order_id = _order_where(conn, column, key)
    if order_id is None:
        log.warning("stripe event %s (%s) names no order of ours", event_id, event_type)
        return "ignored"
    if kind == "subscription_ended":  # ended now: nothing left to schedule
        conn.execute(orders.update().where(orders.c.id == order_id).values(cancel_at=None))
    return add(conn, event_id, order_id, kind, amount=amount, now=now)


def history(conn: sa.Connection, order_id: str) -> list[dict[str, Any]]:
    """What happened to an order's money, oldest first."""
    c = money_events.c
    rows = conn.execute(sa.select(money_events).where(c.order_id == order_id).order_by(c.received_at, c.event_id))
    return [dict(r._mapping) for r in rows]  # noqa: SLF001 - SQLAlchemy's public Row mapping


def _metered(order: Order) -> list[str]:
    return sorted({f for line in order.lines if line["kind"] == Kind.METERED for f in line_features(line)})


def given_back(event: dict[str, Any], order: Order, earlier: list[dict[str, Any]]) -> int:
    """What this event gives back of the order's payment: a refund's own part (Stripe's
    ``amount_refunded`` is a running total), or all not refunded yet for a lost dispute."""
    if event["kind"] in ("refund_full", "refund_partial") and event["amount"]:
        return int(event["amount"]) - previous_refunds(earlier, int(event["amount"]))
    if event["kind"] == "dispute_lost":
        return order.amount - previous_refunds(earlier, order.amount + 1)
    return 0


class Money:
    def __init__(self, service: ActivationService, store: ShopStore, mailer: Mailer, tax: StripeTax) -> None:
        self.service, self.store, self.mailer, self.tax = service, store, mailer, tax

    def schedule_due(self) -> int:
        """Removals scheduled for a subscription's period end that are now due, recorded as its end."""
        now = self.service.clock()
        with self.store.transaction() as tx:
            due = tx.due_cancellations(now)
            for order_id, at in due:
                tx.update_order(order_id, cancel_at=None)
                add(tx.conn, f"period_end:{order_id}:{at}", order_id, "subscription_ended", amount=None, now=now)
        return len(due)

    def apply_due(self) -> int:
        """Apply every recorded, unapplied money event; each failure is kept for the next pass."""
        self.schedule_due()
        with self.store.transaction() as tx:
            c = money_events.c
            due = [dict(r._mapping) for r in tx.conn.execute(sa.select(money_events).where(c.applied_at.is_(None)))]  # noqa: SLF001
        done = 0
        for event in sorted(due, key=lambda e: (e["received_at"], e["event_id"])):
            if not self._claim(event["event_id"]):
                continue  # another worker (thread, replica) applies it, and tells the customer
            with self.store.transaction() as tx:
                order = tx.get_order(event["order_id"])
                earlier = history(tx.conn, event["order_id"])
            assert order is not None
            try:
                back = given_back(event, order, earlier)
                if order.tax_transaction is not None and back > 0:  # Stripe Tax: first, so a failure changes nothing
                    self.tax.reverse(order.tax_transaction, f"{order.id}-{event['event_id']}"[:200], back)
                outcome = self._apply(event, order, earlier)
            except LicensingError as exc:
                self._mark(event["event_id"], last_error=exc.message[:300], claimed_until=None)
                log.warning("order %s: %s not applied yet: %s", order.id, event["kind"], exc.message)
                continue
            self._mark(event["event_id"], applied_at=self.service.clock(), outcome=outcome[:200], last_error=None)
            done += 1
            if order.license_id is not None and not outcome.startswith(UNCHANGED):
                self._tell(order, outcome)
        return done

    def _claim(self, event_id: str) -> bool:
        now = self.service.clock()
        c = money_events.c
        with self.store.transaction() as tx:
            query = (
                money_events.update()
                .where(c.event_id == event_id, c.applied_at.is_(None))
                .where(sa.or_(c.claimed_until.is_(None), c.claimed_until <= now))
                .values(claimed_until=now + CLAIM_SECONDS)
            )
            return bool(tx.conn.execute(query).rowcount)

    def _mark(self, event_id: str, **values: Any) -> None:
        with self.store.transaction() as tx:
            tx.conn.execute(money_events.update().where(money_events.c.event_id == event_id).values(**values))

    def _apply(self, event: dict[str, Any], order: Order, earlier: list[dict[str, Any]]) -> str:
        """Change the license as the money moved; returns what was done, in words."""
        kind, license_id = event["kind"], order.license_id
        if license_id is None:
            return "recorded"  # paid, never fulfilled: nothing was licensed
        if kind == "refund_full" and order.kind == "purchase":
            return self._status(license_id, "suspended", "suspended: the payment was refunded")
        if kind == "refund_full":
            added = sorted({f for line in order.lines if line["kind"] != Kind.PER_YEAR for f in line_features(line)})
            return self._remove(license_id, added, "the upgrade was refunded")
        if kind == "refund_partial":
            total = event["amount"] or 0
            return self._partial(order, license_id, total - previous_refunds(earlier, total))
        if kind == "dispute_lost":
            return self._status(license_id, "revoked", "revoked: the payment was charged back")
        if kind == "subscription_ended":
            return self._remove(license_id, _metered(order), "the subscription ended")
        if kind == "cancel_scheduled":
            end = day(event["effective_at"])
            return f"{', '.join(_metered(order))} will be removed on {end}: the subscription was cancelled"
        if kind == "cancel_unscheduled":
            return f"{', '.join(_metered(order))} stays: the subscription's cancellation was withdrawn"
        if kind == "invoice_unpaid":
            return (
                "payment failed: the invoice could not be paid; Stripe tries again, please check your payment details"
            )
        if kind == "invoice_void":
            return self._status(license_id, "suspended", "suspended: the invoice was not paid")
        return "recorded"  # an open or won dispute: on the order, for the vendor

    def _partial(self, order: Order, license_id: str, refunded: int) -> str:
        found = match(order, refunded)
        if found is None:
            log.warning(
                "order %s: a partial refund of %d matches no line; check license %s", order.id, refunded, license_id
            )
            return f"flagged: {refunded} refunded matches no line of the order; the license is unchanged"
        if found.years:
            current = self.service.get_license(license_id)["support_until"]
            if current is None:
                return "recorded"
            shorter = add_years(int(current), -found.years)  # calendar years, as they were sold
            self.service.update_license(license_id, {"support_until": shorter})
            return f"support shortened by {found.years} year(s) to {day(shorter)}: support was refunded"
        return self._remove(license_id, list(found.features), f"{found.line['name']} was refunded")

    def _remove(self, license_id: str, features: list[str], why: str) -> str:
        if not features:
            return "recorded"
        held = set(self.service.get_license(license_id)["features"])
        features = sorted(held & set(features))
        if not features:  # removed already (the period's end came before Stripe's event): say nothing twice
            return "recorded: nothing left to remove"
        if held <= set(features):  # nothing would be left: the license stops instead
            return self._status(license_id, "suspended", f"suspended: {why}")
        self.service.update_license(license_id, {"remove_features": features})
        return f"{', '.join(features)} removed: {why}"

    def _status(self, license_id: str, status: str, said: str) -> str:
        if self.service.get_license(license_id)["status"] in (status, "revoked"):
            return said  # already so (a replay after a crash, or the vendor did it)
        self.service.set_status(license_id, status)
        return said

    def _tell(self, order: Order, outcome: str) -> None:
        try:
            assert order.license_id is not None
            reaches = change_reaches(self.service.get_license(order.license_id)["model"])  # in its model's words
            self.mailer.send(
                order.email,
                f"License {order.license_id} changed",
                f"License {order.license_id}: {outcome}.\n\n"
                + ("" if outcome.startswith(NOTICES) else reaches + "\n")
                + "If this is a mistake, reply to this e-mail.\n",
            )
        except LicensingError as exc:  # the change stands; the e-mail is not worth undoing it
            log.warning("order %s: could not tell %s about %s: %s", order.id, order.email, outcome, exc.message)


__all__ = ["EVENTS", "Money", "add", "history", "record"]
