"""The store as one object: its pages (mounted at /shop) and its fulfilment loop.

shop = Shop.open(service, load_config("shop.yaml"))   # its own tables in the vendor's database
app = create_app(service, admin_token, **shop.hooks())
...
shop.close()

It reaches the activation server only through ``ActivationService``'s public methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount

from ...core.errors import LicensingError
from .._files import database_url as resolve_database_url
from ..activation.service import DB_FILE, ActivationService
from . import account_web, portal_web, web
from .accounts import Accounts
from .config import ShopConfig
from .keyvault import KeyVault, load_or_create_secret
from .mail import Mailer
from .money import Money
from .orders import Orders
from .payments import StripeGateway
from .portal import Portal
from .reminders import Reminders
from .state import ShopState
from .store import ShopStore
from .stripe_tax import StripeTax

log = logging.getLogger(__name__)

MOUNT = "/shop"


class Shop:
    def __init__(self, service: ActivationService, config: ShopConfig, store: ShopStore) -> None:
        self.config, self.store = config, store
        mailer, gateway = Mailer(config.smtp), StripeGateway(config.stripe)
        # Keys are kept sealed under a secret in the data folder; without a folder none are kept.
        vault = KeyVault(load_or_create_secret(service.data_dir) if service.data_dir is not None else None)
        self.orders = Orders(service, store, config, gateway, mailer, vault=vault)
        self.orders.offers_now(strict=True)  # a product the vendor catalogue lacks stops the start: one line
        self.portal = Portal(service, store, config, mailer)
        self.accounts = Accounts(service, store, config, mailer, vault=vault, gateway=gateway, portal=self.portal)
        self.money = Money(service, store, mailer, StripeTax(gateway))
        self.reminders = Reminders(service, store, config, mailer)
        self._wake: asyncio.Event | None = None
        routes = web.ROUTES + portal_web.ROUTES + account_web.ROUTES
        self.app = Starlette(routes=routes, exception_handlers={LicensingError: _error_page})
        self.app.state.shop = ShopState(
            orders=self.orders,
            portal=self.portal,
            accounts=self.accounts,
            wake=self.wake,
            secure_cookie=config.base_url.startswith("https://"),
            content_policy=web.content_policy(config.stripe),
        )

    @classmethod
    def open(cls, service: ActivationService, config: ShopConfig, *, database_url: str | None = None) -> Shop:
        """The store over the vendor data folder's database (``database_url`` if given, as for
        the service), its own schema brought to this code's version."""
        return cls(service, config, cls.store_of(service, database_url=database_url))

    @staticmethod
    def store_of(service: ActivationService, *, database_url: str | None = None) -> ShopStore:
        """The store's tables in the database of the service's data folder."""
        if service.data_dir is None:
            raise ValueError("the store needs a service opened on a data folder; else give Shop a ShopStore")
        return ShopStore.open(resolve_database_url(service.data_dir, DB_FILE, database_url))

    def close(self) -> None:
        self.store.close()

    def hooks(self) -> dict[str, Any]:
        """What ``create_app`` takes to serve the store: its pages under /shop, its loop as a
        background duty (each pass logs its own failures and the loop goes on)."""
        return {"routes": [Mount(MOUNT, app=self.app)], "background": [self.worker]}

    def wake(self) -> None:
        """Run the fulfilment loop now (a payment just arrived) instead of at its next tick."""
        if self._wake is not None:
            self._wake.set()

    def run_once(self) -> None:
        """One pass: ask Stripe about overdue payments, fulfil what is paid, send reminders.

        Each part fails on its own (Stripe down does not stop mail going out)."""
        for name, step in (
            ("reconcile", self.orders.reconcile),
            ("fulfil", self.orders.fulfil_due),
            ("provision", self.orders.fulfilment.provision_due),
            ("reminders", self.reminders.send_reminders),
            ("money", self.money.apply_due),
        ):
            try:
                step()
            except LicensingError as exc:
                log.warning("shop %s pass failed: %s", name, exc.message)
            except Exception:
                log.exception("shop %s pass failed", name)

    async def worker(self) -> None:
        self._wake = asyncio.Event()
        while True:
            await run_in_threadpool(self.run_once)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.worker_interval)
            self._wake.clear()


async def _error_page(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LicensingError)
    return web.error_page(request, exc)


__all__ = ["MOUNT", "Shop"]
