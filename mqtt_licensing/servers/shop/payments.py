"""Stripe, through its official library; nothing else in the store imports ``stripe`` but :mod:`.invoicing`.

The card never touches this server: the page turns it into a token with Stripe.js,
the server attaches the token to a Customer and confirms a PaymentIntent for the
order's amount; if the bank wants 3-D Secure the page finishes the confirmation
with Stripe.js (``confirmCardPayment``). The outcome that counts arrives on the
webhook, verified with the endpoint's signing secret. ``api_base`` points the
library at a Stripe-compatible server (localstripe in tests and the demo).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import stripe

from ...core.errors import ErrorCode, LicensingError
from .catalogue import Product
from .config import StripeSettings

SIGNATURE_TOLERANCE = 300  # seconds; Stripe's own default: an older signed event is a replay
CARD_CHECK = "card_check"  # metadata purpose of the hold that proves a card for metered-only orders
CARD_CHECK_AMOUNT = 100  # in the smallest currency unit; held, then released


@dataclass(frozen=True)
class Charge:
    payment_intent: str
    status: str  # succeeded | requires_action | processing | ...
    client_secret: str


@dataclass(frozen=True)
class Intent(Charge):
    amount: int
    currency: str


def payment_error(exc: stripe.StripeError) -> LicensingError:
    """A Stripe failure as our typed error; the message is Stripe's user-facing one (never a secret)."""
    message = getattr(exc, "user_message", None) or "the payment provider refused the request"
    if isinstance(exc, stripe.CardError):
        return LicensingError(ErrorCode.PAYMENT_DECLINED, f"the card was declined: {message}")
    return LicensingError(ErrorCode.PAYMENT_PROVIDER_ERROR, f"payment provider error: {message}")


class StripeGateway:
    def __init__(self, settings: StripeSettings) -> None:
        self.settings = settings
        base = {"api": settings.api_base} if settings.api_base else None
        self.client = stripe.StripeClient(settings.secret_key, base_addresses=base, max_network_retries=2)  # type: ignore[arg-type]

    def customer_with_card(self, email: str, token: str, order_id: str) -> tuple[str, str, str | None]:
        """A Customer for the order with the tokenized card as its default source: (customer, card,
        the card's last 4 digits for the receipt)."""
        try:
            customer = self.client.v1.customers.create(params={"email": email, "metadata": {"order_id": order_id}})
            card = self.client.v1.customers.payment_sources.create(customer.id, params={"source": token})
        except stripe.StripeError as exc:
            raise payment_error(exc) from None
        last4 = getattr(card, "last4", None)  # a Card has it; other source types do not
        return customer.id, card.id, str(last4)[:4] if last4 else None

    def charge(
        self,
        order_id: str,
        amount: int,
        currency: str,
        customer: str,
        card: str,
        *,
        metadata: dict[str, str] | None = None,  # more of the PaymentIntent's metadata (Stripe Tax's calculation)
    ) -> Charge:
        try:
            intent = self.client.v1.payment_intents.create(
                params={
                    "amount": amount,
                    "currency": currency,
                    "customer": customer,
                    "payment_method": card,
                    "confirm": True,
                    "metadata": {"order_id": order_id, **(metadata or {})},
                },
                options={"idempotency_key": f"pay-{order_id}-{card}"},
            )
        except stripe.StripeError as exc:
            raise payment_error(exc) from None
        return Charge(intent.id, intent.status, intent.client_secret or "")

    def verify_card(self, order_id: str, currency: str, customer: str, card: str) -> None:
        """A card that attaches may still not be chargeable (Stripe's 4000 0000 0000 0341): hold
        CARD_CHECK_AMOUNT on it and release the hold at once. PAYMENT_DECLINED unless it held."""
        try:
            intent = self.client.v1.payment_intents.create(
                params={
                    "amount": CARD_CHECK_AMOUNT,
                    "currency": currency,
                    "customer": customer,
                    "payment_method": card,
                    "capture_method": "manual",
                    "confirm": True,
                    "metadata": {"order_id": order_id, "purpose": CARD_CHECK},
                },
                options={"idempotency_key": f"check-{order_id}-{card}"},
            )
            held = intent.status == "requires_capture"
            if intent.status in ("requires_capture", "requires_confirmation", "requires_payment_method"):
                self.client.v1.payment_intents.cancel(intent.id)
        except stripe.StripeError as exc:
            raise payment_error(exc) from None
        if not held:
            raise LicensingError(ErrorCode.PAYMENT_DECLINED, "the card was declined: it cannot be charged")

    def intent(self, payment_intent: str) -> Intent:
        """The PaymentIntent as Stripe has it now (a re-opened page, a lost webhook)."""
        try:
            pi = self.client.v1.payment_intents.retrieve(payment_intent)
        except stripe.StripeError as exc:
            raise payment_error(exc) from None
        return Intent(pi.id, pi.status, pi.client_secret or "", int(pi.amount), pi.currency)

    def subscribe_metered(self, order_id: str, customer: str, products: list[Product], currency: str) -> str:
        """A subscription with one metered price per product; usage is reported against it later."""
        try:
            plans = [self._metered_plan(p, currency) for p in products]
            sub = self.client.v1.subscriptions.create(
                params={
                    "customer": customer,
                    "items": [{"plan": p} for p in plans],
                    "metadata": {"order_id": order_id},
                },
                options={"idempotency_key": f"sub-{order_id}"},
            )
        except stripe.StripeError as exc:
            raise payment_error(exc) from None
        return sub.id

    def _metered_plan(self, product: Product, currency: str) -> str:
        """The Stripe product and metered plan for a catalogue product, created on first use.

        The plan id names the price, so a changed price in the catalogue gets a new plan
        and existing subscriptions keep the one they signed up for."""
        plan_id = f"mqttlic_{product.id}_{currency}_{product.price}"
        try:
            return self.client.v1.plans.retrieve(plan_id).id
        except stripe.InvalidRequestError:
            pass
        try:
            self.client.v1.products.retrieve(f"mqttlic_{product.id}")
        except stripe.InvalidRequestError:
            self.client.v1.products.create(params={"id": f"mqttlic_{product.id}", "name": product.name})
        params: dict[str, Any] = {
            "id": plan_id,
            "product": f"mqttlic_{product.id}",
            "currency": currency,
            "interval": "month",
            "usage_type": "metered",
            "amount": product.price,
        }
        if product.meter:
            params["meter"] = product.meter
        plan = self.client.v1.plans.create(params=params)  # type: ignore[arg-type]
        return plan.id

    def billing_portal(self, customer: str, return_url: str) -> str:
        """A Stripe billing portal session for the customer (card, invoices, cancelling the metered
        subscription); its URL is short-lived and opened at once."""
        try:
            session = self.client.v1.billing_portal.sessions.create(
                params={"customer": customer, "return_url": return_url}
            )
        except stripe.StripeError as exc:
            raise payment_error(exc) from None
        return str(session.url)

    def verify_event(self, payload: bytes, signature: str | None) -> Any:
        """The event if the Stripe-Signature header is valid and fresh, else a typed error."""
        if not signature:
            raise LicensingError(ErrorCode.INVALID_SIGNATURE, "missing Stripe-Signature header")
        try:
            return stripe.Webhook.construct_event(
                payload, signature, self.settings.webhook_secret, tolerance=SIGNATURE_TOLERANCE
            )
        except stripe.SignatureVerificationError:
            raise LicensingError(ErrorCode.INVALID_SIGNATURE, "the webhook signature is wrong or stale") from None
        except ValueError:
            raise LicensingError(ErrorCode.BAD_REQUEST, "the webhook body is not a Stripe event") from None
