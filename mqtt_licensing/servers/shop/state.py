"""What the store's pages read: one frozen :class:`ShopState` on the store app's ``state``, so the
endpoints are plain module-level functions (:mod:`.web`, :mod:`.portal_web`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import Request

from .accounts import Accounts
from .catalogue import Catalogue
from .config import StripeSettings
from .orders import Orders
from .portal import Portal
from .seller import Seller


@dataclass(frozen=True)
class ShopState:
    orders: Orders
    portal: Portal
    accounts: Accounts
    wake: Callable[[], None]  # run the fulfilment loop now: a payment just arrived
    secure_cookie: bool  # the portal's cookie only over HTTPS (base_url says which)
    content_policy: str  # Content-Security-Policy with a ``{nonce}`` slot

    @property
    def catalogue(self) -> Catalogue:
        return self.orders.catalogue

    @property
    def seller(self) -> Seller:
        return self.orders.config.seller

    @property
    def stripe(self) -> StripeSettings:
        return self.orders.gateway.settings


def shop_state(request: Request) -> ShopState:
    state = request.app.state.shop
    assert isinstance(state, ShopState), "the store's pages run only inside Shop.app"
    return state


__all__ = ["ShopState", "shop_state"]
