"""``vendor orders`` and ``vendor order ID``: the store's orders, what was paid, and what happened
to the money after the sale (refunds, disputes, ended subscriptions) and to the license."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from typing import Any

from ..core.errors import ErrorCode, LicensingError
from ..core.timefmt import iso

_NUMBER = re.compile(r"^[A-Za-z0-9]{1,8}-(\d{1,12})$")


def _open(service: Callable[[argparse.Namespace], Any], args: argparse.Namespace) -> tuple[Any, Any]:
    from ..servers.shop.app import Shop
    from ..servers.shop.config import load_config
    from ..servers.shop.seller import Seller

    svc = service(args)
    seller = load_config(args.shop_config).seller if args.shop_config else Seller()
    return Shop.store_of(svc, database_url=args.database_url), seller


def _view(order: Any, seller: Any, history: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    out = {
        "number": seller.order_number(order.number),
        "id": order.id,
        "kind": order.kind,
        "state": order.state,
        "email": order.email,
        "license_id": order.license_id,
        "amount": order.amount,
        "currency": order.currency,
        "created_at": order.created_at,
        "paid_at": order.paid_at,
        "fulfilled_at": order.fulfilled_at,
        "stripe_payment_intent": order.stripe_payment_intent,
        "stripe_subscription": order.stripe_subscription,
        "last_error": order.last_error,
    }
    if history is not None:
        out["money"] = history
    return out


def cmd_orders(service: Callable[[argparse.Namespace], Any]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        store, seller = _open(service, args)
        try:
            with store.transaction() as tx:
                views = [_view(o, seller) for o in tx.list_orders()]
        finally:
            store.close()
        if args.json:
            print(json.dumps(views, indent=2, sort_keys=True))
            return 0
        if not views:
            print("no orders")
        for v in views:
            print(
                f"{v['number'] or '-':<12} {v['id']:<30} {v['state']:<10} {v['amount'] / 100:>10.2f} "
                f"{v['currency'].upper()} {(iso(v['created_at']) or '')[:10]} {v['email']} {v['license_id'] or '-'}"
            )
        return 0

    return run


def cmd_order(service: Callable[[argparse.Namespace], Any]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from ..servers.shop import money

        store, seller = _open(service, args)
        try:
            with store.transaction() as tx:
                number = _NUMBER.match(args.id)
                order = tx.order_by_number(int(number.group(1))) if number else tx.get_order(args.id)
                if order is None:
                    raise LicensingError(ErrorCode.NOT_FOUND, f"no order {args.id!r}: see vendor orders")
                view = _view(order, seller, money.history(tx.conn, order.id))
        finally:
            store.close()
        if args.json:
            print(json.dumps(view, indent=2, sort_keys=True))
            return 0
        for name in ("number", "id", "kind", "state", "email", "license_id", "amount", "currency",
                     "stripe_payment_intent", "stripe_subscription", "last_error"):  # fmt: skip
            print(f"{name + ':':<23}{view[name] if view[name] is not None else '-'}")
        for name in ("created_at", "paid_at", "fulfilled_at"):
            print(f"{name + ':':<23}{iso(view[name]) or '-'}")
        for event in view["money"]:
            applied = iso(event["applied_at"]) or f"pending ({event['last_error'] or 'next pass'})"
            what = f"{event['kind']} {event['amount'] or ''}".strip()
            print(f"  {iso(event['received_at'])} {what} -> {event['outcome'] or '-'} [{applied}]")
        return 0

    return run


def register(verb: Callable[..., argparse.ArgumentParser], service: Callable[[argparse.Namespace], Any]) -> None:
    shop_help = "the store's shop.yaml, for order numbers with its seller.order_prefix"
    p = verb("orders", cmd_orders(service), "the store's orders, newest first")
    p.add_argument("--json", action="store_true")
    p.add_argument("--shop-config", metavar="FILE", help=shop_help)
    p = verb("order", cmd_order(service), "one order of the store: payment, refunds, disputes, license changes")
    p.add_argument("id", metavar="ORDER", help="the order id (ord_...) or its number (EXA-000042)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--shop-config", metavar="FILE", help=shop_help)
