"""Orders: pending -> paid -> fulfilled, exactly one license per paid purchase.

* ``pending``: created from the store page; a PaymentIntent is confirmed against it.
* ``paid``: set only by a verified Stripe event (or by asking Stripe directly when the
  event is late, :meth:`Orders.reconcile`), in the same transaction that records the
  event id, so a redelivered event changes nothing.
* ``fulfilled``: the license issued (purchase) or updated (upgrade) through the same
  :class:`ActivationService` methods ``vendor issue`` / ``vendor update`` use, and the
  e-mail handed to the SMTP server.

Fulfilment is a sequence of steps, each recorded before the next one starts, so the
loop that retries paid orders (after a crash, an SMTP outage, a Stripe hiccup)
resumes where it stopped instead of repeating what was done:
issue license -> (subscribe metered) -> mail -> fulfilled.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from ...core.errors import ErrorCode, LicensingError
from ...core.timefmt import add_years
from ..activation.service import ActivationService
from . import lineup, messages, money
from .catalogue import Catalogue, Kind, Product, format_money, line_features
from .config import ShopConfig
from .keyvault import KEPT, KeyVault
from .mail import Mailer, check_email
from .payments import CARD_CHECK, StripeGateway
from .stale import repriced, unpayable
from .store import Order, ShopStore, ShopTx

log = logging.getLogger(__name__)

PAY_LEASE = 120  # seconds a payment attempt holds its order (Stripe calls take a few)


def _bad(message: str) -> LicensingError:
    return LicensingError(ErrorCode.BAD_REQUEST, message)


def line_product(line: dict[str, Any]) -> Product:
    return Product(
        line["product"], line["name"], line["feature"], Kind(line["kind"]), line["price"], meter=line.get("meter", "")
    )


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
        self, *, email: Any, choice: dict[str, int], license_key: str | None = None, country: Any = None
    ) -> Order:
        email = check_email(email)
        lic = self.license_for_key(license_key) if license_key else None
        owned = tuple(lic["features"]) if lic is not None else None
        lines = self.offers_now().cart(choice, owned)
        lineup.check_order(self.service, lines, owned)  # before any payment: it must serve clients
        subtotal = sum(ln.amount for ln in lines)
        country, tax = self.config.tax.tax(country, subtotal)  # shown on the order page, before payment
        order = Order(
            id=f"ord_{secrets.token_urlsafe(18)}",  # unguessable: it is the customer's only handle
            kind="upgrade" if lic is not None else "purchase",
            state="pending",
            email=email,
            license_id=lic["id"] if lic is not None else None,
            lines=[
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
            ],
            amount=subtotal + tax,
            country=country,
            tax=tax,
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

    def _charge(self, order: Order, token: str) -> dict[str, Any]:
        customer, card = self.gateway.customer_with_card(order.email, token, order.id)
        with self.store.transaction() as tx:
            tx.update_order(order.id, stripe_customer=customer)
        if order.amount == 0:
            # Metered products only: nothing is charged now; the card pays the usage invoices, so
            # it must be chargeable (one that only attaches would get the feature for 0.00).
            self.gateway.verify_card(order.id, order.currency, customer, card)
            self._mark_paid(order.id, None, "card verified; usage is invoiced")
            return {"state": "paid", "status": "succeeded"}
        charge = self.gateway.charge(order.id, order.amount, order.currency, customer, card)
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
            if event_type in money.EVENTS:  # after the sale: the license follows the money
                return money.record(tx.conn, event_id, event_type, obj, now)
            if event_type == "invoice.payment_failed":
                return self._usage_unpaid(tx, obj)
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
            return self._paid_in(tx, order, obj.get("amount"), obj.get("currency"), now)

    @staticmethod
    def _usage_unpaid(tx: ShopTx, invoice: dict[str, Any]) -> str:
        """A usage invoice of one of our metered subscriptions failed (Stripe retries it): the order
        says so (``last_error``, `vendor` logs) so the vendor can suspend the license if it stays unpaid."""
        subscription = invoice.get("subscription")
        order_id = tx.order_of_subscription(subscription) if isinstance(subscription, str) else None
        order = tx.get_order(order_id) if order_id is not None else None
        if order is None:
            return "ignored"
        tx.update_order(order.id, last_error=f"usage invoice {str(invoice.get('id'))[:60]} could not be charged")
        log.error(
            "order %s: a usage invoice of license %s could not be charged; `vendor suspend` it if it stays unpaid",
            order.id,
            order.license_id,
        )
        return "usage_unpaid"

    def _paid_in(self, tx: ShopTx, order: Order, amount: Any, currency: Any, now: int) -> str:
        if amount != order.amount or currency != order.currency:
            log.error("order %s: Stripe reports %s %s, the order is %s", order.id, amount, currency, order.amount)
            tx.update_order(order.id, last_error="paid amount does not match the order")
            return "mismatch"
        if why := repriced(order, self.catalogue):  # paid at a price the store no longer has: held
            if tx.update_order(order.id, expect_state="pending", state="held", paid_at=now, last_error=why):
                log.error("order %s paid but held (%s): refund it in Stripe or fulfil it by hand", order.id, why)
            return "held"
        if tx.update_order(order.id, expect_state="pending", state="paid", paid_at=now):
            log.info("order %s paid", order.id)
            return "paid"
        return "already paid"

    def _mark_paid(self, order_id: str, payment_intent: str | None, why: str) -> None:
        now = self.service.clock()
        with self.store.transaction() as tx:
            order = tx.get_order(order_id)
            if order is not None and order.stripe_payment_intent == payment_intent:
                tx.update_order(order_id, expect_state="pending", state="paid", paid_at=now)
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
                    count += self._paid_in(tx, order, intent.amount, intent.currency, now) == "paid"
        return count

    # -- fulfilment ----------------------------------------------------------------------
    def fulfil_due(self) -> int:
        """One pass over paid orders; each failure is recorded and retried on the next pass."""
        now = self.service.clock()
        with self.store.transaction() as tx:
            due = tx.order_ids("paid")
        done = 0
        for order_id in due:
            with self.store.transaction() as tx:
                if not tx.claim_order(order_id, "paid", now, now + self.config.claim_seconds):
                    continue  # another worker has it
            try:
                self._fulfil(order_id)
                done += 1
            except LicensingError as exc:
                with self.store.transaction() as tx:
                    order = tx.get_order(order_id)
                    attempts = order.attempts + 1 if order else 1
                    tx.update_order(order_id, attempts=attempts, last_error=exc.message[:300], claimed_until=None)
                log.warning("order %s not fulfilled yet (attempt %d): %s", order_id, attempts, exc.message)
        return done

    def _fulfil(self, order_id: str) -> None:
        """The steps of a paid order's fulfilment; the caller holds the order's lease."""
        order = self.get(order_id)
        if order.kind == "purchase" and order.license_id is None:
            order = self._issue(order)
        elif order.kind == "upgrade":
            order = self._upgrade(order)
        metered = [line_product(ln) for ln in order.lines if ln["kind"] == Kind.METERED]
        if metered and order.stripe_subscription is None and order.stripe_customer is not None:
            sub = self.gateway.subscribe_metered(order.id, order.stripe_customer, metered, order.currency)
            with self.store.transaction() as tx:
                tx.update_order(order.id, stripe_subscription=sub)
        self._mail(order)
        with self.store.transaction() as tx:
            tx.update_order(
                order.id,
                expect_state="paid",
                state="fulfilled",
                pending_key=None,
                claimed_until=None,
                fulfilled_at=self.service.clock(),
            )
        log.info("order %s fulfilled (license %s)", order.id, order.license_id)

    def _years(self, order: Order) -> int:
        return sum(ln["quantity"] for ln in order.lines if ln["kind"] == Kind.PER_YEAR)

    def _issue(self, order: Order) -> Order:
        terms = lineup.license_terms(self.service, order.lines, self._years(order), self.config.max_activations)
        lic, key = self.service.issue_license(model="online", **terms)
        with self.store.transaction() as tx:
            # Kept sealed (shown again in the portal), the order then holds only a marker: no key in
            # plain text ever reaches the database (without a vault, the key until it is mailed).
            kept = self.vault.keep(tx, lic["id"], key, self.service.clock())
            pending = KEPT if kept else key
            tx.update_order(order.id, license_id=lic["id"], pending_key=pending, support_until=lic["support_until"])
            tx.set_contact(lic["id"], order.email, self.service.clock())
        return self.get(order.id)

    def _upgrade(self, order: Order) -> Order:
        assert order.license_id is not None
        years = self._years(order)
        if years and order.support_until is None:
            # The new end is fixed once, from the later of now and the current end (and of
            # other upgrades paid or applied meanwhile), so a retried step extends nothing twice.
            read_at = self.service.clock()
            current = self.service.get_license(order.license_id)["support_until"] or 0
            with self.store.transaction() as tx:
                tx.lock_orders_of(order.license_id)
                others = tx.other_support_ends(order, fulfilled_since=read_at - 1)
                base = max(self.service.clock(), current, *others)
                tx.update_order(order.id, support_until=add_years(base, years))  # calendar years
            order = self.get(order.id)
        assert order.license_id is not None
        changes: dict[str, Any] = {"add_features": sorted({f for ln in order.lines for f in line_features(ln)})}
        if order.support_until is not None:
            changes["support_until"] = order.support_until
        self.service.update_license(order.license_id, changes)  # what `vendor update` calls
        return order

    def _mail(self, order: Order) -> None:
        assert order.license_id is not None
        lic = self.service.get_license(order.license_id)
        seller = self.config.seller
        if order.kind == "upgrade":
            subject, body = messages.receipt(order, lic)
            self.mailer.send(order.email, *messages.from_seller(seller, order, subject, body))
        elif order.pending_key is not None:  # None: mailed before a crash; the key is gone and stays gone
            key = self.vault.kept(self.store, order.license_id) if order.pending_key == KEPT else order.pending_key
            subject, body = messages.key(order, lic, key, self.config.base_url)
            subject, body = messages.from_seller(seller, order, subject, body)
            self.mailer.send(order.email, subject, body, attachment=("license.txt", key + "\n"))
