"""The store on the activation server: purchase, upgrade and support renewal through
Stripe, keys by e-mail, and the customer self-service portal.

    shop = Shop(service, load_config("shop.yaml"))
    app = create_app(service, admin_token, shop=shop)   # mounts shop.app at /shop, runs shop.worker

Modules: catalogue (what is sold), config, store (tables), payments (Stripe), orders
(pending -> paid -> fulfilled), mail (SMTP), portal, web / portal_web (pages).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ....core.errors import LicensingError
from ..service import ActivationService
from .config import ShopConfig, load_config, parse_config
from .mail import Mailer
from .orders import Orders
from .payments import StripeGateway
from .portal import Portal
from .portal_web import portal_routes
from .store import ShopStore
from .web import content_policy, error_page, store_routes

log = logging.getLogger(__name__)

MOUNT = "/shop"


class Shop:
    def __init__(self, service: ActivationService, config: ShopConfig) -> None:
        self.config = config
        self.store = ShopStore(service.store.engine)
        self.store.create_schema()
        mailer = Mailer(config.smtp)
        self.orders = Orders(service, self.store, config, StripeGateway(config.stripe), mailer)
        self.portal = Portal(service, self.store, config, mailer)
        self._wake: asyncio.Event | None = None
        routes = store_routes(self.orders, self.wake) + portal_routes(
            self.portal, secure_cookie=config.base_url.startswith("https://")
        )

        async def licensing_error(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, LicensingError)
            return error_page(request, exc)

        self.app = Starlette(routes=routes, exception_handlers={LicensingError: licensing_error})
        self.app.state.content_policy = content_policy(config.stripe)

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
            ("reminders", self.orders.send_reminders),
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

    @contextlib.asynccontextmanager
    async def running_lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        """The server's lifespan: the fulfilment loop runs while the server does."""
        task = asyncio.create_task(self.worker(), name="shop-worker")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


__all__ = ["MOUNT", "Shop", "ShopConfig", "load_config", "parse_config"]
