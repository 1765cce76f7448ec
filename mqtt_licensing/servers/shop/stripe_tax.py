"""Stripe Tax for a custom payment flow (the store's ``tax: {stripe: true}``), as Stripe documents it
for PaymentIntents (docs.stripe.com/tax/custom):

1. :meth:`StripeTax.calculate`, when the order is made (before payment, so the page shows it):
   ``POST /v1/tax/calculations`` with the order's lines (amounts before tax, ``tax_behavior``
   exclusive, each line's ``reference``) and the buyer's address (country, postal code); the
   calculation's id, tax and total go on the order, and the PaymentIntent charges that total with
   the id in its ``metadata[tax_calculation]``.
2. :meth:`StripeTax.record`, once the order is paid (fulfilment):
   ``POST /v1/tax/transactions/create_from_calculation`` with the order id as ``reference``, so the
   sale is in Stripe's tax reports. The receipt invoice carries the tax as its own line with the
   calculation's id in the line's and the invoice's metadata (:mod:`.invoicing`).
3. :meth:`StripeTax.reverse`, when money goes back (a refund, a lost dispute; :mod:`.money`):
   ``POST /v1/tax/transactions/create_reversal``, partial, for the amount given back.

Each call carries an idempotency key named after the order: a retry is the same calculation, transaction or
reversal at Stripe. With :mod:`.payments` and :mod:`.invoicing`, the only modules of the
store that import ``stripe``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import stripe

from ...core.errors import ErrorCode, LicensingError
from .payments import StripeGateway, payment_error

# Stripe's error code when it cannot place the address in a tax jurisdiction (a US address
# without a postal code, a country it does not know).
LOCATION_INVALID = "customer_tax_location_invalid"


@dataclass(frozen=True)
class TaxQuote:
    calculation: str  # Stripe's taxcalc_... id
    country: str
    tax: int  # minor units, added to the lines
    total: int  # what the PaymentIntent charges


def check_country(country: Any) -> str:
    code = str(country or "").strip().upper()
    if len(code) != 2 or not code.isalpha():
        raise LicensingError(ErrorCode.BAD_REQUEST, "enter your country as two letters, e.g. DE (it sets the tax)")
    return code


class StripeTax:
    def __init__(self, gateway: StripeGateway) -> None:
        self.client = gateway.client

    def calculate(
        self, order_id: str, currency: str, lines: list[dict[str, Any]], country: Any, postal_code: Any
    ) -> TaxQuote | None:
        """The tax of the order's lines for the buyer's address; None when nothing is charged now
        (metered lines only: their usage invoices are another matter)."""
        code = check_country(country)
        items = [
            {
                "amount": line["amount"],
                "quantity": line["quantity"],
                "reference": f"{i}-{line['product']}",  # unique per calculation, as Stripe asks
                "tax_behavior": "exclusive",
            }
            for i, line in enumerate(lines)
            if line["amount"] > 0
        ]
        if not items:
            return None
        address: dict[str, str] = {"country": code}
        postal = str(postal_code or "").strip()[:20]
        if postal:
            address["postal_code"] = postal
        try:
            calc = self.client.v1.tax.calculations.create(
                params={
                    "currency": currency,
                    "line_items": items,  # type: ignore[typeddict-item]
                    "customer_details": {"address": address, "address_source": "billing"},  # type: ignore[typeddict-item]
                },
                options={"idempotency_key": f"tax-{order_id}"},
            )
        except stripe.InvalidRequestError as exc:
            if exc.code == LOCATION_INVALID:
                raise LicensingError(
                    ErrorCode.BAD_REQUEST, "we cannot place that address for tax: check the country and postal code"
                ) from None
            raise payment_error(exc) from None
        except stripe.StripeError as exc:
            raise payment_error(exc) from None
        return TaxQuote(str(calc.id), code, int(calc.tax_amount_exclusive), int(calc.amount_total))

    def record(self, order_id: str, calculation: str) -> str:
        """The paid order's tax transaction (Stripe's record of the sale for tax reports): its id."""
        try:
            tx = self.client.v1.tax.transactions.create_from_calculation(
                params={"calculation": calculation, "reference": order_id, "metadata": {"order_id": order_id}},
                options={"idempotency_key": f"tax-transaction-{order_id}"},
            )
        except stripe.StripeError as exc:
            raise payment_error(exc) from None
        return str(tx.id)

    def reverse(self, transaction: str, reference: str, amount: int) -> str:
        """Money given back (a refund, a lost dispute) taken out of the tax reports: a partial
        reversal of ``amount`` (tax included, as Stripe's refunds are) of the order's transaction."""
        try:
            rev = self.client.v1.tax.transactions.create_reversal(
                params={
                    "mode": "partial",
                    "original_transaction": transaction,
                    "flat_amount": -amount,  # Stripe wants what is given back as a negative amount
                    "reference": reference,
                },
                options={"idempotency_key": f"tax-reversal-{reference}"},
            )
        except stripe.StripeError as exc:
            raise payment_error(exc) from None
        return str(rev.id)


__all__ = ["LOCATION_INVALID", "StripeTax", "TaxQuote", "check_country"]
