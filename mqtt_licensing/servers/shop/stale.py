"""An order keeps the prices it was made with; the catalogue may change under it.

* A pending order expires ``orders.ttl`` seconds after it was made (default 1 h), and is
  refused at payment when a price in it is no longer the catalogue's: the customer starts a
  new order at today's price (the store page re-prices by making a new one).
* An order paid anyway at a price the catalogue no longer has (a payment started in time and
  confirmed late, e.g. after 3-D Secure) is *held*, never fulfilled silently: the money is
  with the vendor, who refunds it in Stripe or fulfils it by hand (README, "The store").
"""

from __future__ import annotations

from .catalogue import Catalogue
from .store import Order


def repriced(order: Order, catalogue: Catalogue) -> str | None:
    """Why the order's prices are not the catalogue's now, or None."""
    current = {p.id: p.price for p in catalogue.products}
    if order.currency != catalogue.currency:
        return f"the store now sells in {catalogue.currency.upper()}"
    for line in order.lines:
        if current.get(line["product"]) != line["price"]:
            return f"the price of {line['name']} changed since this order was made"
    return None


def unpayable(order: Order, catalogue: Catalogue, now: int, ttl: int) -> str | None:
    """Why a pending order may not be paid now, or None."""
    if now - order.created_at > ttl:
        return f"this order expired ({ttl // 60} min after it was made): start a new order"
    why = repriced(order, catalogue)
    return f"{why}: start a new order" if why else None


__all__ = ["repriced", "unpayable"]
