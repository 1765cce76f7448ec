"""Stripe Invoices and refunds, through the official library (with :mod:`.payments`, the only
modules of the store that import ``stripe``).

* A **receipt** (card orders): invoice items for the order's lines (and its tax), an invoice
  that does not charge (``auto_advance`` off), finalized so Stripe gives it its number, its
  hosted page and its PDF, then marked ``paid_out_of_band`` since the PaymentIntent took the money.
* **Pay by invoice**: the same items, an invoice with ``collection_method=send_invoice`` and
  ``days_until_due``, finalized and sent by Stripe; ``invoice.paid`` on the webhook pays the order.
* A **refund** of an order's payment, whole or in part.

Every create carries an idempotency key derived from the order (and the line, or the amount), so
a retried step (a crash, a timeout) never makes a second invoice or a second refund; since Stripe
answers a repeated key with its first answer, the invoice is then read again for its state now.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import stripe

from .payments import StripeGateway, payment_error
from .store import Order


@dataclass(frozen=True)
class InvoiceRef:
    id: str
    number: str | None
    url: str | None  # hosted_invoice_url
    pdf: str | None  # invoice_pdf


def _ref(inv: Any) -> InvoiceRef:
    values = inv.to_dict()
    return InvoiceRef(str(inv.id), values.get("number"), values.get("hosted_invoice_url"), values.get("invoice_pdf"))


def _tax_ref(order: Order, wanted: bool = True) -> dict[str, str]:
    """Stripe Tax's calculation of the order, named on the invoice and its tax line: an invoice
    cannot take a calculation itself, and this is how the two are found from each other."""
    return {"tax_calculation": order.tax_calculation} if wanted and order.tax_calculation else {}


class Invoicing:
    def __init__(self, gateway: StripeGateway) -> None:
        self.client = gateway.client

    def customer(self, order: Order) -> str:
        """The order's Stripe Customer (pay by invoice: no card was given)."""
        if order.stripe_customer is not None:
            return order.stripe_customer
        try:
            customer = self.client.v1.customers.create(
                params={"email": order.email, "metadata": {"order_id": order.id}},
                options={"idempotency_key": f"customer-{order.id}"},
            )
        except stripe.StripeError as exc:
            raise payment_error(exc) from None
        return str(customer.id)

    def _items(self, order: Order, customer: str, describe: Any) -> None:
        items = [(f"{i}", describe(line), line["amount"]) for i, line in enumerate(order.lines) if line["amount"]]
        if order.tax:
            items.append(("tax", f"Tax ({order.country})", order.tax))
        for key, description, amount in items:
            self.client.v1.invoice_items.create(
                params={
                    "customer": customer,
                    "amount": amount,
                    "currency": order.currency,
                    "description": description,
                    "metadata": {"order_id": order.id, **_tax_ref(order, key == "tax")},
                },
                options={"idempotency_key": f"invoice-item-{order.id}-{key}"},
            )

    def receipt(self, order: Order, describe: Any) -> InvoiceRef:
        """A finalized invoice for a paid card order, marked paid out of band: Stripe's receipt."""
        assert order.stripe_customer is not None
        try:
            self._items(order, order.stripe_customer, describe)
            inv = self.client.v1.invoices.create(
                params={
                    "customer": order.stripe_customer,
                    "auto_advance": False,  # never charges: the PaymentIntent took the money
                    "collection_method": "charge_automatically",
                    "pending_invoice_items_behavior": "include",
                    "metadata": {"order_id": order.id, "purpose": "receipt", **_tax_ref(order)},
                },
                options={"idempotency_key": f"invoice-{order.id}"},
            )
            inv = self.client.v1.invoices.retrieve(str(inv.id))  # a retry replays the first answer: ask anew
            if inv.status == "draft":
                inv = self.client.v1.invoices.finalize_invoice(str(inv.id), params={"auto_advance": False})
            if inv.status == "open":
                inv = self.client.v1.invoices.pay(str(inv.id), params={"paid_out_of_band": True})
        except stripe.StripeError as exc:
            raise payment_error(exc) from None
        return _ref(inv)

    def send(self, order: Order, customer: str, days_until_due: int, describe: Any) -> InvoiceRef:
        """An invoice the customer pays by bank transfer or on Stripe's page, due in ``days_until_due``;
        the buyer's purchase order number printed on it (a custom field) when the order has one."""
        params: dict[str, Any] = {
            "customer": customer,
            "collection_method": "send_invoice",
            "days_until_due": days_until_due,
            "pending_invoice_items_behavior": "include",
            "metadata": {"order_id": order.id, "purpose": "pay_by_invoice", **_tax_ref(order)},
        }
        if order.po_number:
            params["custom_fields"] = [{"name": "PO number", "value": order.po_number}]
        try:
            self._items(order, customer, describe)
            inv = self.client.v1.invoices.create(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": f"invoice-{order.id}"},
            )
            inv = self.client.v1.invoices.retrieve(str(inv.id))
            if inv.status == "draft":
                inv = self.client.v1.invoices.finalize_invoice(str(inv.id))
            self.client.v1.invoices.send_invoice(str(inv.id), options={"idempotency_key": f"invoice-send-{order.id}"})
        except stripe.StripeError as exc:
            raise payment_error(exc) from None
        return _ref(inv)

    def state(self, invoice_id: str) -> tuple[str, int, str]:
        """(status, amount paid, currency) of an invoice as Stripe has it now."""
        try:
            inv = self.client.v1.invoices.retrieve(invoice_id)
        except stripe.StripeError as exc:
            raise payment_error(exc) from None
        return str(inv.status), int(inv.amount_paid or 0), str(inv.currency)

    def refund(self, order: Order, amount: int | None) -> dict[str, Any]:
        """Refund the order's payment (all of it without ``amount``); one refund per order and amount."""
        assert order.stripe_payment_intent is not None
        params: dict[str, Any] = {"payment_intent": order.stripe_payment_intent, "metadata": {"order_id": order.id}}
        if amount is not None:
            params["amount"] = amount
        try:
            refund = self.client.v1.refunds.create(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": refund_key(order.id, amount)},
            )
        except stripe.StripeError as exc:
            raise payment_error(exc) from None
        return {"id": refund.id, "amount": refund.amount, "status": refund.status}


def refund_key(order_id: str, amount: int | None) -> str:
    """The same refund asked twice (a retried command, two staff) is one refund at Stripe."""
    return f"refund-{order_id}-{'all' if amount is None else amount}"


__all__ = ["InvoiceRef", "Invoicing", "refund_key"]
