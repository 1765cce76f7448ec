"""Pay by invoice: for orders from ``invoices.pay_by_invoice_from`` up, Stripe's ``send_invoice``
collection (due in ``days_until_due``) in place of a card.

* :meth:`ByInvoice.start`: the pending order gets a Stripe Invoice, finalized and sent by Stripe
  (its number, page and PDF kept on the order), and becomes ``invoiced``; a provisional license
  follows if the vendor configured one (:meth:`.fulfil.Fulfilment.provision_due`).
* :func:`on_event`: ``invoice.paid`` pays the order (fulfilment issues the license, or makes the
  provisional one permanent); ``invoice.voided`` / ``invoice.marked_uncollectible`` end it (the
  provisional license is suspended); ``invoice.payment_failed`` is recorded. Each is a money event
  of the order (:mod:`.money`), applied by the worker and told to the customer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ...core.errors import ErrorCode, LicensingError
from . import messages, money
from .catalogue import format_money
from .config import ShopConfig
from .invoicing import Invoicing
from .mail import Mailer
from .payments import StripeGateway
from .store import Order, ShopStore, ShopTx

log = logging.getLogger(__name__)

CHECK_EVERY = 3600  # an unpaid invoice is asked about hourly: a lost invoice.paid costs an hour at most
EVENTS = ("invoice.paid", "invoice.voided", "invoice.marked_uncollectible", "invoice.payment_failed")


PaidIn = Callable[..., str]  # Orders._paid_in: the order paid, in the caller's transaction


PO_MAX = 40  # characters of a purchase order number (Stripe allows 140 in an invoice's custom field)


def clean_po(value: Any) -> str | None:
    """The buyer's purchase order number as it goes on the invoice: one line, printable, short."""
    text = "".join(ch for ch in " ".join(str(value or "").split()) if ch.isprintable())
    return text[:PO_MAX] or None


def offered(config: ShopConfig, order: Order) -> bool:
    """May this order be paid by invoice?"""
    start = config.invoices.pay_by_invoice_from
    return start is not None and order.state == "pending" and order.amount >= start


class ByInvoice:
    def __init__(
        self, store: ShopStore, config: ShopConfig, gateway: StripeGateway, mailer: Mailer, clock: Callable[[], int]
    ) -> None:
        self.store, self.config, self.mailer, self.clock = store, config, mailer, clock
        self.invoicing = Invoicing(gateway)

    def start(self, order: Order) -> Order:
        """Send the order's invoice; the caller holds the order's lease."""
        if not offered(self.config, order):
            start = self.config.invoices.pay_by_invoice_from
            if start is None:
                raise LicensingError(ErrorCode.BAD_REQUEST, "this store takes cards only")
            raise LicensingError(
                ErrorCode.BAD_REQUEST, f"pay by invoice is for orders from {format_money(start, order.currency)}"
            )
        customer = self.invoicing.customer(order)
        with self.store.transaction() as tx:
            tx.update_order(order.id, stripe_customer=customer, payment="invoice")
        describe = lambda line: messages.describe_line(line, order.currency).strip()  # noqa: E731
        ref = self.invoicing.send(order, customer, self.config.invoices.days_until_due, describe)
        with self.store.transaction() as tx:
            tx.update_order(
                order.id,
                expect_state="pending",
                state="invoiced",
                stripe_invoice=ref.id,
                invoice_number=ref.number,
                invoice_url=ref.url,
                invoice_pdf=ref.pdf,
                last_error=None,
            )
            found = tx.get_order(order.id)
        assert found is not None
        log.info("order %s: invoice %s sent", order.id, ref.number or ref.id)
        if not (self.config.invoices.provisional_valid_days and order.kind == "purchase"):
            self._tell_sent(found)  # else the provisional key's e-mail says it
        return found

    def _tell_sent(self, order: Order) -> None:
        """Our own word beside Stripe's invoice e-mail: what happens when it is paid."""
        subject, body = messages.invoice_sent(order, self.config.invoices.days_until_due, self.config.base_url)
        try:
            self.mailer.send(order.email, *messages.from_seller(self.config.seller, order, subject, body))
        except LicensingError as exc:  # the invoice is out and Stripe mails it: this e-mail is a courtesy
            log.warning("order %s: could not send the invoice notice: %s", order.id, exc.message)

    def reconcile(self, paid_in: PaidIn) -> int:
        """Ask Stripe about invoiced orders not heard of for CHECK_EVERY: a lost ``invoice.paid``
        (or ``voided``) is applied as if it had come, under an event id of its own (once)."""
        now = self.clock()
        with self.store.transaction() as tx:
            due = tx.invoices_to_check(now - CHECK_EVERY)
        count = 0
        for order_id in due:
            with self.store.transaction() as tx:
                tx.update_order(order_id, invoice_checked_at=now)
                order = tx.get_order(order_id)
            assert order is not None and order.stripe_invoice is not None
            status, paid, currency = self.invoicing.state(order.stripe_invoice)
            kind = {"paid": "invoice.paid", "void": "invoice.voided", "uncollectible": "invoice.marked_uncollectible"}
            if status not in kind:
                continue  # open: not paid yet
            invoice = {"id": order.stripe_invoice, "amount_paid": paid, "currency": currency}
            with self.store.transaction() as tx:
                event_id = f"reconciled:{order.stripe_invoice}:{status}"
                if tx.claim_event(event_id, kind[status], now):
                    count += on_event(tx, event_id, kind[status], invoice, now=now, paid_in=paid_in) == "paid"
        return count


def on_event(tx: ShopTx, event_id: str, event_type: str, invoice: dict[str, Any], *, now: int, paid_in: PaidIn) -> str:
    """One verified invoice event, inside the transaction that claimed its id."""
    invoice_id = invoice.get("id")
    order = tx.order_of_invoice(invoice_id) if isinstance(invoice_id, str) else None
    if order is None:
        if event_type == "invoice.payment_failed":  # a usage invoice of a metered subscription
            subscription = invoice.get("subscription")
            order_id = tx.order_of_subscription(subscription) if isinstance(subscription, str) else None
            if order_id is not None:
                tx.update_order(order_id, last_error=f"usage invoice {str(invoice_id)[:60]} could not be charged")
                return money.add(
                    tx.conn, event_id, order_id, "invoice_unpaid", amount=invoice.get("amount_due"), now=now
                )
        return "ignored"
    if order.payment != "invoice":
        return "ignored"  # a receipt (paid out of band when it was made): nothing to do
    if event_type == "invoice.paid":
        if order.state not in ("invoiced", "void"):  # void: marked uncollectible, and paid after all
            return "already paid"
        return paid_in(tx, order, invoice.get("amount_paid"), invoice.get("currency"), now=now, state=order.state)
    if event_type == "invoice.payment_failed":
        return money.add(tx.conn, event_id, order.id, "invoice_unpaid", amount=invoice.get("amount_due"), now=now)
    if order.state in ("paid", "fulfilled"):
        log.warning("order %s: invoice %s %s after it was paid", order.id, invoice_id, event_type)
    tx.update_order(order.id, expect_state="invoiced", state="void")
    return money.add(tx.conn, event_id, order.id, "invoice_void", amount=invoice.get("amount_due"), now=now)


__all__ = ["EVENTS", "ByInvoice", "offered", "on_event"]
