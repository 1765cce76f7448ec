"""The store as one object: its pages (mounted at /shop) and its fulfilment loop.

shop = Shop(service, load_config("shop.yaml"))
app = create_app(service, admin_token, **shop.hooks())
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
from ..activation.service import ActivationService
from .config import ShopConfig
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
        self.store = ShopStore(service.store.engine)  # its tables: migration 0006 of the activation schema
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


__all__ = ["MOUNT", "Shop"]
