"""Orders: pending -> paid -> fulfilled, exactly one license per paid purchase.

* ``pending``: created from the store page; a PaymentIntent is confirmed against it.
* ``paid``: set only by a verified Stripe event (or by asking Stripe directly when the
  event is late, :meth:`Orders.reconcile`), in the same transaction that records the
  event id, so a redelivered event changes nothing.
* ``fulfilled``: the license issued (purchase) or updated (upgrade) through the same
  :class:`ActivationService` methods ``vendor issue`` / ``vendor update`` use, and the
  e-mail handed to the SMTP server.

* ``invoiced`` (pay by invoice, :mod:`.by_invoice`): a Stripe Invoice was sent; ``invoice.paid``
  makes the order paid.

Fulfilment is in :mod:`.fulfil`.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from ...core.errors import ErrorCode, LicensingError
from ..activation.service import ActivationService
from ..webhooks import emit
from . import by_invoice, lineup, money
from .catalogue import Catalogue, format_money
from .config import ShopConfig
from .fulfil import Fulfilment, order_data
from .keyvault import KeyVault
from .mail import Mailer, check_email
from .payments import CARD_CHECK, StripeGateway
from .stale import repriced, unpayable
from .store import Order, ShopStore, ShopTx
from .stripe_tax import StripeTax, check_country

log = logging.getLogger(__name__)

PAY_LEASE = 120  # seconds a payment attempt holds its order (Stripe calls take a few)


def _bad(message: str) -> LicensingError:
    return LicensingError(ErrorCode.BAD_REQUEST, message)


class Orders:
    def __init__(
        self,
        service: ActivationService,
        store: ShopStore,
        config: ShopConfig,
        gateway: StripeGateway,
        mailer: Mailer,
        *,
        vault: KeyVault | None = None,
    ) -> None:
        self.service, self.store, self.config = service, store, config
        self.gateway, self.mailer, self.vault = gateway, mailer, vault or KeyVault(None)
        self.catalogue = config.catalogue
        self.fulfilment = Fulfilment(service, store, config, gateway, mailer, vault=self.vault)
        self.by_invoice = by_invoice.ByInvoice(store, config, gateway, mailer, service.clock)
        self.stripe_tax = StripeTax(gateway)

    def offers_now(self, *, strict: bool = False) -> Catalogue:
        """The products with the catalogue's current titles and contents (one small read)."""
        return lineup.current(
            self.service, self.config.catalogue, strict=strict, max_activations=self.config.max_activations
        )

    # -- the store page ------------------------------------------------------------
    def license_for_key(self, license_key: Any) -> dict[str, Any]:
        """The license a key belongs to (an upgrade must prove it holds the key)."""
        lic = self.service.license_for_key(license_key)  # a typo is caught before any lookup
        if lic["status"] == "revoked":
            raise LicensingError(ErrorCode.REVOKED, f"license {lic['id']} has been revoked")
        return lic

    def create(
        self,
        *,
        email: Any,
        choice: dict[str, int],
        license_key: str | None = None,
        country: Any = None,
        postal_code: Any = None,
    ) -> Order:
        email = check_email(email)
        lic = self.license_for_key(license_key) if license_key else None
        owned = tuple(lic["features"]) if lic is not None else None
        lines = self.offers_now().cart(choice, owned)
        lineup.check_order(self.service, lines, owned)  # before any payment: it must serve clients
        subtotal = sum(ln.amount for ln in lines)
        order_id = f"ord_{secrets.token_urlsafe(18)}"  # unguessable: it is the customer's only handle
        line_values = [
            {
                "product": ln.product.id,
                "name": ln.product.name,
                "feature": ln.product.feature,
                "template": ln.product.template,
                "features": list(ln.product.features),
                "kind": ln.product.sold_as.value,
                "price": ln.product.price,
                "quantity": ln.quantity,
                "amount": ln.amount,
                "meter": ln.product.meter,
            }
            for ln in lines
        ]
        calculation = None
        if self.config.tax.stripe:  # Stripe Tax: asked now, so the order page shows it before payment
            quote = self.stripe_tax.calculate(order_id, self.catalogue.currency, line_values, country, postal_code)
            country, tax = (quote.country, quote.tax) if quote else (check_country(country), 0)
            calculation = quote.calculation if quote else None
        else:
            country, tax = self.config.tax.tax(country, subtotal)  # shown on the order page, before payment
        order = Order(
            id=order_id,
            kind="upgrade" if lic is not None else "purchase",
            state="pending",
            email=email,
            license_id=lic["id"] if lic is not None else None,
            lines=line_values,
            amount=subtotal + tax,
            country=country,
            tax=tax,
            tax_calculation=calculation,
            currency=self.catalogue.currency,
            stripe_customer=None,
            stripe_payment_intent=None,
            stripe_subscription=None,
            support_until=None,
            pending_key=None,
            claimed_until=None,
            attempts=0,
            last_error=None,
            created_at=self.service.clock(),
            paid_at=None,
            fulfilled_at=None,
        )
        with self.store.transaction() as tx:
            order = tx.insert_order(order)
        log.info("order %s created (%s, %s)", order.id, order.kind, format_money(order.amount, order.currency))
        return order

    def get(self, order_id: Any) -> Order:
        order = None
        if isinstance(order_id, str):
            with self.store.transaction() as tx:
                order = tx.get_order(order_id)
        if order is None:
            raise LicensingError(ErrorCode.NOT_FOUND, "no such order")
        return order

    def pay(self, order_id: str, token: Any) -> dict[str, Any]:
        """Charge the order with a Stripe.js card token. The order becomes paid on the webhook."""
        order = self.get(order_id)
        if order.state != "pending":
            return {"state": order.state, "status": "succeeded"}
        if order.stripe_payment_intent is not None:
            intent = self.gateway.intent(order.stripe_payment_intent)
            if intent.status in ("succeeded", "processing", "requires_action"):
                return {"state": order.state, "status": intent.status, "client_secret": intent.client_secret}
        if not isinstance(token, str) or not token.startswith("tok_"):
            raise _bad("the payment form sent no card token")
        now = self.service.clock()
        if why := unpayable(order, self.catalogue, now, self.config.order_ttl):
            raise LicensingError(ErrorCode.EXPIRED, why)
        with self.store.transaction() as tx:
            claimed = tx.claim_order(order.id, "pending", now, now + PAY_LEASE)
        if not claimed:  # a second click, a second tab: one charge only
            raise _bad("a payment for this order is in progress; reload the page in a moment")
        try:
            return self._charge(order, token)
        finally:
            with self.store.transaction() as tx:
                tx.update_order(order.id, claimed_until=None)

    def pay_by_invoice(self, order_id: str, po_number: Any = None) -> Order:
        """Send the order's Stripe Invoice instead of taking a card (orders from a configured amount),
        with the buyer's purchase order number on it if one is given."""
        order = self.get(order_id)
        if order.state == "invoiced":
            return order  # a second click: the invoice is out
        if order.stripe_payment_intent is not None:
            raise _bad("a card payment was started for this order: finish it, or start a new order")
        if not by_invoice.offered(self.config, order):
            return self.by_invoice.start(order)  # refuses, with the reason
        now = self.service.clock()
        if why := unpayable(order, self.catalogue, now, self.config.order_ttl):
            raise LicensingError(ErrorCode.EXPIRED, why)
        with self.store.transaction() as tx:
            if not tx.claim_order(order.id, "pending", now, now + PAY_LEASE):
                raise _bad("a payment for this order is in progress; reload the page in a moment")
        try:
            if order.po_number is None and (po := by_invoice.clean_po(po_number)):
                # Kept on the first try: a retried invoice must send what the first one sent.
                with self.store.transaction() as tx:
                    tx.update_order(order.id, po_number=po)
                order = self.get(order.id)
            return self.by_invoice.start(order)
        except LicensingError as exc:  # said on the order page, where the buyer can try again
            with self.store.transaction() as tx:
                tx.update_order(order.id, last_error=exc.message[:300])
            raise
        finally:
            with self.store.transaction() as tx:
                tx.update_order(order.id, claimed_until=None)

    def _charge(self, order: Order, token: str) -> dict[str, Any]:
        customer, card, last4 = self.gateway.customer_with_card(order.email, token, order.id)
        with self.store.transaction() as tx:
            tx.update_order(order.id, stripe_customer=customer, card_last4=last4)
        if order.amount == 0:
            # Metered products only: nothing is charged now; the card pays the usage invoices, so
            # it must be chargeable (one that only attaches would get the feature for 0.00).
            self.gateway.verify_card(order.id, order.currency, customer, card)
            self._mark_paid(order.id, None, "card verified; usage is invoiced")
            return {"state": "paid", "status": "succeeded"}
        tax = {"tax_calculation": order.tax_calculation} if order.tax_calculation else {}  # as Stripe Tax asks
        charge = self.gateway.charge(order.id, order.amount, order.currency, customer, card, metadata=tax)
        with self.store.transaction() as tx:
            tx.update_order(order.id, stripe_payment_intent=charge.payment_intent, last_error=None)
        return {"state": "pending", "status": charge.status, "client_secret": charge.client_secret}

    # -- payment outcomes ------------------------------------------------------------
    def apply_event(self, event_id: str, event_type: str, obj: dict[str, Any]) -> str:
        """Apply one verified Stripe event, exactly once per event id."""
        now = self.service.clock()
        with self.store.transaction() as tx:
            if not tx.claim_event(event_id, event_type, now):
                return "duplicate"
            if event_type in by_invoice.EVENTS:  # an invoice we sent: paid, or not
                return by_invoice.on_event(tx, event_id, event_type, obj, now=now, paid_in=self._paid_in)
            if event_type in money.EVENTS:  # after the sale: the license follows the money
                return money.record(tx.conn, event_id, event_type, obj, now)
            if event_type not in ("payment_intent.succeeded", "payment_intent.payment_failed"):
                return "ignored"
            if (obj.get("metadata") or {}).get("purpose") == CARD_CHECK:
                return "ignored"  # the hold that proved a card (payments.verify_card), never the order's payment
            order_id = (obj.get("metadata") or {}).get("order_id")
            order = tx.get_order(order_id) if isinstance(order_id, str) else None
            intent = obj.get("id")
            if order is None or not isinstance(intent, str) or order.stripe_payment_intent not in (None, intent):
                log.warning("stripe event %s names no order of ours", event_id)
                return "ignored"
            if order.stripe_payment_intent is None:
                # The event overtook our own record of the charge (Stripe can be that fast); it is
                # ours if no other order holds this payment.
                if tx.intent_taken(intent):
                    log.warning("stripe event %s: payment %s belongs to another order", event_id, intent)
                    return "ignored"
                tx.update_order(order.id, stripe_payment_intent=intent)
            if event_type == "payment_intent.payment_failed":
                error = (obj.get("last_payment_error") or {}).get("message") or "the payment failed"
                tx.update_order(order.id, last_error=str(error)[:300])
                return "failed"
            return self._paid_in(tx, order, obj.get("amount"), obj.get("currency"), now=now)

    def _paid_in(
        self, tx: ShopTx, order: Order, amount: Any, currency: Any, *, now: int, state: str = "pending"
    ) -> str:
        if amount != order.amount or currency != order.currency:
            log.error("order %s: Stripe reports %s %s, the order is %s", order.id, amount, currency, order.amount)
            tx.update_order(order.id, last_error="paid amount does not match the order")
            return "mismatch"
        if why := repriced(order, self.catalogue):  # paid at a price the store no longer has: held
            if tx.update_order(order.id, expect_state=state, state="held", paid_at=now, last_error=why):
                log.error("order %s paid but held (%s): refund it in Stripe or fulfil it by hand", order.id, why)
            return "held"
        if tx.update_order(order.id, expect_state=state, state="paid", paid_at=now):
            self._tell_paid(tx, order, now)
            log.info("order %s paid", order.id)
            return "paid"
        return "already paid"

    def _tell_paid(self, tx: ShopTx, order: Order, now: int) -> None:
        """The vendor webhook ``order.paid``, queued in the transaction that marks the order paid."""
        emit(tx.conn, "order.paid", order_data(order, self.config.seller.order_number(order.number)), now)

    def _mark_paid(self, order_id: str, payment_intent: str | None, why: str) -> None:
        now = self.service.clock()
        with self.store.transaction() as tx:
            order = tx.get_order(order_id)
            paid = order is not None and order.stripe_payment_intent == payment_intent
            if paid and tx.update_order(order_id, expect_state="pending", state="paid", paid_at=now):
                assert order is not None
                self._tell_paid(tx, order, now)
        log.info("order %s paid (%s)", order_id, why)

    def reconcile(self) -> int:
        """Ask Stripe about pending payments whose webhook is overdue; a lost event still gets fulfilled."""
        now = self.service.clock()
        with self.store.transaction() as tx:
            # Abandoned payments are not asked about for ever: a day after the order, they stay pending.
            overdue = tx.order_ids("pending", created=(now - 86400, now - self.config.reconcile_after))
        count = 0
        for order_id in overdue:
            order = self.get(order_id)
            assert order.stripe_payment_intent is not None
            intent = self.gateway.intent(order.stripe_payment_intent)
            if intent.status == "succeeded":
                with self.store.transaction() as tx:
                    count += self._paid_in(tx, order, intent.amount, intent.currency, now=now) == "paid"
        return count + self.by_invoice.reconcile(self._paid_in)

    # -- fulfilment (fulfil.py) ------------------------------------------------------------
    def fulfil_due(self) -> int:
        return self.fulfilment.fulfil_due()
