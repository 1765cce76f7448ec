"""The portal by account: sign in with the purchase e-mail address and a mailed one-time code or
link (no key needed), see every license of that address, see a key again, open Stripe's billing
portal.

* No account enumeration: asking for a code answers the same for any well-formed address. A row
  is stored for every request (so the hourly limits count alike), and the mail, which only a
  known address gets, is sent after the answer (:meth:`Accounts.request_code` returns it as a job).
* Codes and link tokens are stored as SHA-256 digests; a code allows ``CODE_ATTEMPTS`` wrong
  guesses (every live code of the address counts each), a link works once, both for ``CODE_TTL``.
* The key of a license sold here is kept sealed (:mod:`.keyvault`); showing it is asked for with
  a POST after a confirmation and logged (who, when, from where) on the license.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...core.errors import ErrorCode, LicensingError
from ..activation.service import ActivationService
from .account_store import AccountTx
from .catalogue import format_money
from .config import ShopConfig
from .keyvault import KeyVault
from .mail import Mailer, MailError, check_email, mask_email
from .payments import StripeGateway
from .portal import CODE_ATTEMPTS, CODE_TTL, SESSION_TTL, Portal
from .store import Order, ShopStore, ShopTx

log = logging.getLogger(__name__)

CODES_PER_ADDRESS_HOUR = 5  # no mail-bombing one customer
CODES_PER_CLIENT_HOUR = 20  # no mail-bombing many addresses from one client
NOT_KEPT = "this key was issued before keys were kept; ask the vendor to reissue it"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _denied() -> LicensingError:
    return LicensingError(ErrorCode.UNAUTHORIZED, "wrong or expired code")


@dataclass(frozen=True)
class Viewer:
    """Who a portal session is: one license (signed in with its key) or an address (all its licenses)."""

    csrf: str
    license_id: str | None = None
    email: str | None = None

    @property
    def who(self) -> str:
        return self.email or "license key sign-in"


class Accounts:
    def __init__(
        self,
        service: ActivationService,
        store: ShopStore,
        config: ShopConfig,
        mailer: Mailer,
        *,
        vault: KeyVault,
        gateway: StripeGateway,
        portal: Portal,
    ) -> None:
        self.service, self.store, self.config, self.mailer = service, store, config, mailer
        self.vault, self.gateway, self.portal = vault, gateway, portal

    # -- signing in ---------------------------------------------------------------------
    def request_code(self, email: Any, client: str) -> Callable[[], None]:
        """Record a code and a link for the address; returns the job that mails them if it owns a
        license (run it after answering). The answer never depends on whether it does."""
        address = check_email(email).lower()
        now = self.service.clock()
        code, link = f"{secrets.randbelow(10**8):08d}", secrets.token_urlsafe(32)
        with self.store.transaction() as tx:
            acc = AccountTx(tx.conn)
            acc.lock_codes(address)
            if acc.count_codes_since(now - 3600, email=address) >= CODES_PER_ADDRESS_HOUR or (
                acc.count_codes_since(now - 3600, client=client[:64]) >= CODES_PER_CLIENT_HOUR
            ):
                raise LicensingError(ErrorCode.RATE_LIMITED, "too many sign-in codes this hour; try again later")
            acc.insert_code(
                address, client[:64], code_digest=_digest(code), link_digest=_digest(link), now=now, ttl=CODE_TTL
            )
            acc.prune(now)
            tx.prune(now)  # ended sessions and old key-sign-in codes too
        return lambda: self._mail_code(address, code, link)

    def _mail_code(self, address: str, code: str, link: str) -> None:
        with self.store.transaction() as tx:
            owned = AccountTx(tx.conn).license_ids(address)
        if not owned:
            return  # nobody to tell: the page said "if the address is known"
        url = f"{self.config.base_url}/shop/portal/link?token={link}"
        try:
            self.mailer.send(
                address,
                "Your sign-in code",
                f"Your code for the customer portal:\n\n    {code}\n\nor open this link to sign in:\n\n    {url}\n\n"
                f"Both work once, for {CODE_TTL // 60} minutes. If you did not ask for them, ignore this e-mail.\n",
            )
        except MailError as exc:
            log.warning("portal code for %s not sent: %s", mask_email(address), exc.message)

    def _session(self, tx: ShopTx, address: str) -> tuple[str, str]:
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(16)
        AccountTx(tx.conn).insert_session(_digest(token), address, csrf, self.service.clock() + SESSION_TTL)
        return token, csrf

    def sign_in(self, email: Any, code: Any) -> tuple[str, str]:
        """A new session (token, csrf) for the address's mailed code; a wrong one can be retyped
        until its attempts run out."""
        address = check_email(email).lower()
        if not isinstance(code, str) or not code.strip().isdigit():
            raise _denied()
        given, now = _digest(code.strip()), self.service.clock()
        with self.store.transaction() as tx:
            acc = AccountTx(tx.conn)
            acc.lock_codes(address)  # concurrent guesses wait here, so every wrong one counts
            live = acc.live_codes(address, now)
            match = next((cid for cid, digest, _n in live if hmac.compare_digest(digest, given)), None)
            if match is None:
                for cid, _unused, attempts in live:
                    acc.update_code(cid, attempts=attempts + 1, used=attempts + 1 >= CODE_ATTEMPTS)
                session = None
            else:
                acc.update_code(match, used=True)
                session = self._session(tx, address)
        if session is None:
            raise _denied()
        log.info("portal sign-in by address %s", mask_email(address))
        return session

    def sign_in_link(self, token: Any) -> tuple[str, str]:
        """A new session for a mailed link's token; the link (and its code) then work no more."""
        if not isinstance(token, str) or not 20 <= len(token) <= 100:
            raise LicensingError(ErrorCode.UNAUTHORIZED, "this sign-in link is not valid: ask for a new one")
        with self.store.transaction() as tx:
            acc = AccountTx(tx.conn)
            found = acc.live_link(_digest(token), self.service.clock())
            if found is not None:
                acc.update_code(found[0], used=True)
                session = self._session(tx, found[1])
        if found is None:
            raise LicensingError(ErrorCode.UNAUTHORIZED, "this sign-in link was used or has expired: ask for a new one")
        log.info("portal sign-in by link for %s", mask_email(found[1]))
        return session

    def viewer(self, token: str | None) -> Viewer:
        found = None
        if token:
            with self.store.transaction() as tx:
                found = AccountTx(tx.conn).session(_digest(token), self.service.clock())
        if found is None:
            raise LicensingError(ErrorCode.UNAUTHORIZED, "sign in first")
        return Viewer(csrf=found[2], license_id=found[0], email=found[1])

    # -- what a viewer may see and do ------------------------------------------------------
    def license_ids(self, viewer: Viewer) -> list[str]:
        if viewer.email is None:
            return [viewer.license_id] if viewer.license_id else []
        with self.store.transaction() as tx:
            return AccountTx(tx.conn).license_ids(viewer.email)

    def check(self, viewer: Viewer, license_id: Any) -> str:
        """The license id if the viewer may act on it (a form names it), else NOT_FOUND."""
        if viewer.email is None and viewer.license_id is not None:
            return viewer.license_id  # a key session acts on its own license whatever a form says
        if isinstance(license_id, str) and license_id in self.license_ids(viewer):
            return license_id
        raise LicensingError(ErrorCode.NOT_FOUND, "no such license in this account")

    def license_view(self, license_id: str) -> dict[str, Any]:
        """A license as the portal shows it: terms, activations, orders, usage and key events."""
        lic = self.portal.overview(license_id)
        with self.store.transaction() as tx:
            acc = AccountTx(tx.conn)
            orders, lic["events"] = acc.orders_of(license_id), acc.events_of(license_id)
            lic["key_kept"] = acc.kept_key(license_id) is not None
        lic["orders"] = [self._order_view(o) for o in orders]
        lic["billing"] = any(o.stripe_customer for o in orders)
        days = self.service.usage_by_day(license_id)["days"][-30:]
        lic["usage"] = {
            "days": len(days),
            "messages": sum(d["messages"] for d in days),
            "client_hours": round(sum(d["client_seconds"] for d in days) / 3600, 1),
        }
        return lic

    def _order_view(self, order: Order) -> dict[str, Any]:
        # Invoice links where the order has them (the invoices work adds them to orders).
        links = [(name, url) for name in ("invoice_url", "invoice_pdf") if (url := getattr(order, name, None))]
        return {
            "number": self.config.seller.order_number(order.number) or order.id,
            "id": order.id,
            "kind": order.kind,
            "state": order.state,
            "created_at": order.created_at,
            "total": format_money(order.amount, order.currency),
            "items": ", ".join(str(line["name"]) for line in order.lines),
            "invoices": links,
        }

    def reveal_key(self, viewer: Viewer, license_id: Any, client: str) -> tuple[str, str | None]:
        """(license id, its key or None when it was issued before keys were kept); logged."""
        lid = self.check(viewer, license_id)
        now = self.service.clock()
        with self.store.transaction() as tx:
            acc = AccountTx(tx.conn)
            kept = acc.kept_key(lid)
            if kept is None:
                return lid, None
            key = self.vault.open(lid, *kept)
            order = next((o.id for o in acc.orders_of(lid) if o.kind == "purchase"), None)
            acc.log_event(lid, order, "key_shown", actor=viewer.who, client=client, now=now)
        log.info(
            "portal: key of license %s shown to %s", lid, mask_email(viewer.email) if viewer.email else "key holder"
        )
        return lid, key

    def billing_portal(self, viewer: Viewer, license_id: Any, return_url: str) -> str:
        """The URL of a Stripe billing portal session for the license's (newest) Stripe customer."""
        lid = self.check(viewer, license_id)
        with self.store.transaction() as tx:
            customers = [o.stripe_customer for o in AccountTx(tx.conn).orders_of(lid) if o.stripe_customer]
        if not customers:
            raise LicensingError(ErrorCode.NOT_FOUND, "this license was not paid through Stripe here")
        return self.gateway.billing_portal(customers[-1], return_url)


__all__ = ["NOT_KEPT", "Accounts", "Viewer"]
