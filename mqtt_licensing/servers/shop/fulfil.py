"""Fulfilment: a paid order's license issued (or updated), its receipt invoice, its e-mail.

Fulfilment is a sequence of steps, each recorded before the next one starts, so the loop that
retries paid orders (after a crash, an SMTP outage, a Stripe hiccup) resumes where it stopped
instead of repeating what was done:
issue license (or make a provisional one permanent) -> (subscribe metered) -> (Stripe Tax's
transaction) -> receipt invoice -> mail -> fulfilled (with the vendor webhook ``order.fulfilled`` in that transaction).

An order paid by invoice may get a *provisional* license while its invoice is open
(:meth:`Fulfilment.provision_due`): the license expires after ``provisional_valid_days`` unless
``invoice.paid`` arrives first, when fulfilment makes it permanent.
"""

from __future__ import annotations

import logging
from typing import Any

from ...core.errors import LicensingError
from ...core.timefmt import add_years
from ..activation.service import ActivationService
from ..webhooks import emit
from . import lineup, messages
from .catalogue import Kind, Product, line_features
from .config import ShopConfig
from .invoicing import Invoicing
from .keyvault import KEPT, KeyVault
from .mail import Mailer
from .payments import StripeGateway
from .store import Order, ShopStore
from .stripe_tax import StripeTax

log = logging.getLogger(__name__)

DAY = 86400


def line_product(line: dict[str, Any]) -> Product:
    return Product(
        line["product"], line["name"], line["feature"], Kind(line["kind"]), line["price"], meter=line.get("meter", "")
    )


def order_data(order: Order, number: str) -> dict[str, Any]:
    """What the vendor's webhooks ``order.paid`` / ``order.fulfilled`` carry (never a key)."""
    return {
        "order_id": order.id,
        "number": number,
        "kind": order.kind,
        "payment": order.payment,
        "license_id": order.license_id,
        "amount": order.amount,
        "tax": order.tax,
        "currency": order.currency,
        "products": [line["product"] for line in order.lines],
        "invoice": order.invoice_number,
    }


class Fulfilment:
    def __init__(
        self,
        service: ActivationService,
        store: ShopStore,
        config: ShopConfig,
        gateway: StripeGateway,
        mailer: Mailer,
        *,
        vault: KeyVault,
    ) -> None:
        self.service, self.store, self.config = service, store, config
        self.gateway, self.mailer, self.vault = gateway, mailer, vault
        self.invoicing = Invoicing(gateway)
        self.stripe_tax = StripeTax(gateway)

    def get(self, order_id: str) -> Order:
        with self.store.transaction() as tx:
            order = tx.get_order(order_id)
        assert order is not None
        return order

    def _each(self, state: str, step: Any, due: list[str]) -> int:
        """Run ``step`` on each order under its lease; a failure is recorded and retried next pass."""
        now = self.service.clock()
        done = 0
        for order_id in due:
            with self.store.transaction() as tx:
                if not tx.claim_order(order_id, state, now, now + self.config.claim_seconds):
                    continue  # another worker has it
            try:
                step(order_id)
                done += 1
            except LicensingError as exc:
                with self.store.transaction() as tx:
                    order = tx.get_order(order_id)
                    attempts = order.attempts + 1 if order else 1
                    tx.update_order(order_id, attempts=attempts, last_error=exc.message[:300], claimed_until=None)
                log.warning("order %s not done yet (attempt %d): %s", order_id, attempts, exc.message)
        return done

    def fulfil_due(self) -> int:
        """One pass over paid orders."""
        with self.store.transaction() as tx:
            due = tx.order_ids("paid")
        return self._each("paid", self._fulfil, due)

    def provision_due(self) -> int:
        """One pass over orders awaiting their invoice: a provisional license where configured."""
        if not self.config.invoices.provisional_valid_days:
            return 0
        with self.store.transaction() as tx:
            due = tx.awaiting_provision()
        return self._each("invoiced", self._provision, due)

    def _provision(self, order_id: str) -> None:
        order = self.get(order_id)
        if order.kind == "purchase" and order.license_id is None:
            until = self.service.clock() + self.config.invoices.provisional_valid_days * DAY
            order = self._issue(order, expires_at=until)
        if order.pending_key is not None:
            assert order.license_id is not None
            lic = self.service.get_license(order.license_id)
            key = self._key(order)
            subject, body = messages.provisional(order, lic, key, self.config.base_url)
            subject, body = messages.from_seller(self.config.seller, order, subject, body)
            self.mailer.send(order.email, subject, body, attachment=("license.txt", key + "\n"))
        with self.store.transaction() as tx:
            tx.update_order(order.id, pending_key=None, claimed_until=None)
        log.info("order %s: provisional license %s until the invoice is paid", order.id, order.license_id)

    def _fulfil(self, order_id: str) -> None:
        """The steps of a paid order's fulfilment; the caller holds the order's lease."""
        order = self.get(order_id)
        if order.kind == "purchase" and order.license_id is None:
            order = self._issue(order)
        elif order.kind == "purchase" and order.provisional_until is not None:
            order = self._make_permanent(order)
        elif order.kind == "upgrade":
            order = self._upgrade(order)
        metered = [line_product(ln) for ln in order.lines if ln["kind"] == Kind.METERED]
        if metered and order.stripe_subscription is None and order.stripe_customer is not None:
            sub = self.gateway.subscribe_metered(order.id, order.stripe_customer, metered, order.currency)
            with self.store.transaction() as tx:
                tx.update_order(order.id, stripe_subscription=sub)
        if order.tax_calculation is not None and order.tax_transaction is None:
            # Stripe Tax: the paid sale recorded for the tax reports (stripe_tax.py).
            tax_tx = self.stripe_tax.record(order.id, order.tax_calculation)
            with self.store.transaction() as tx:
                tx.update_order(order.id, tax_transaction=tax_tx)
        if self._wants_receipt(order):
            ref = self.invoicing.receipt(order, lambda line: messages.describe_line(line, order.currency).strip())
            with self.store.transaction() as tx:
                tx.update_order(
                    order.id, stripe_invoice=ref.id, invoice_number=ref.number, invoice_url=ref.url, invoice_pdf=ref.pdf
                )
            order = self.get(order.id)
        self._mail(order)
        now = self.service.clock()
        with self.store.transaction() as tx:
            done = tx.update_order(
                order.id, expect_state="paid", state="fulfilled", pending_key=None, claimed_until=None, fulfilled_at=now
            )
            if done:  # the vendor hears of it with the change itself (the outbox is in this database)
                emit(tx.conn, "order.fulfilled", order_data(order, self.config.seller.order_number(order.number)), now)
        log.info("order %s fulfilled (license %s)", order.id, order.license_id)

    def _wants_receipt(self, order: Order) -> bool:
        return (
            self.config.invoices.receipts
            and order.payment == "card"
            and order.amount > 0
            and order.stripe_invoice is None
            and order.stripe_customer is not None
        )

    def _years(self, order: Order) -> int:
        return sum(ln["quantity"] for ln in order.lines if ln["kind"] == Kind.PER_YEAR)

    def _issue(self, order: Order, *, expires_at: int | None = None) -> Order:
        terms = lineup.license_terms(self.service, order.lines, self._years(order), self.config.max_activations)
        if expires_at is not None:
            terms["expires_at"] = expires_at
        lic, key = self.service.issue_license(model="online", **terms)
        with self.store.transaction() as tx:
            # Kept sealed (shown again in the portal), the order then holds only a marker: no key in
            # plain text ever reaches the database (without a vault, the key until it is mailed).
            kept = self.vault.keep(tx, lic["id"], key, self.service.clock())
            tx.update_order(
                order.id,
                license_id=lic["id"],
                pending_key=KEPT if kept else key,
                support_until=lic["support_until"],
                provisional_until=expires_at,
            )
            tx.set_contact(lic["id"], order.email, self.service.clock())
        return self.get(order.id)

    def _make_permanent(self, order: Order) -> Order:
        """The invoice is paid: the provisional license keeps its key and loses its end date."""
        assert order.license_id is not None
        lic = self.service.get_license(order.license_id)
        if lic["status"] == "suspended":  # suspended as unpaid (voided), then paid after all
            self.service.set_status(order.license_id, "active")
        self.service.update_license(order.license_id, {"expires_at": None})
        with self.store.transaction() as tx:
            tx.update_order(order.id, provisional_until=None)
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
        seller, base = self.config.seller, self.config.base_url
        if order.kind == "upgrade" or (order.payment == "invoice" and order.pending_key is None):
            subject, body = messages.receipt(order, lic, base)
            self.mailer.send(order.email, *messages.from_seller(seller, order, subject, body))
        elif order.pending_key is not None:  # None: mailed before a crash; the key is gone and stays gone
            key = self._key(order)
            subject, body = messages.key(order, lic, key, base)
            subject, body = messages.from_seller(seller, order, subject, body)
            self.mailer.send(order.email, subject, body, attachment=("license.txt", key + "\n"))

    def _key(self, order: Order) -> str:
        """The key to mail: unsealed from the vault, or (without one) held on the order until mailed."""
        assert order.license_id is not None and order.pending_key is not None
        return self.vault.kept(self.store, order.license_id) if order.pending_key == KEPT else order.pending_key


__all__ = ["Fulfilment", "line_product", "order_data"]
