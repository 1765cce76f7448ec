"""``vendor orders``, ``vendor order [show] ID`` and ``vendor order refund ID [--amount CENTS]``: the
store's orders, what was paid, what happened to the money after the sale (refunds, disputes, ended
subscriptions, invoices) and to the license; a refund through Stripe with an idempotency key."""

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
        "tax": order.tax,  # included in amount
        "country": order.country,
        "tax_calculation": order.tax_calculation,  # Stripe Tax's, where configured
        "tax_transaction": order.tax_transaction,
        "po_number": order.po_number,
        "created_at": order.created_at,
        "paid_at": order.paid_at,
        "fulfilled_at": order.fulfilled_at,
        "stripe_payment_intent": order.stripe_payment_intent,
        "stripe_subscription": order.stripe_subscription,
        "payment": order.payment,
        "card_last4": order.card_last4,
        "invoice": order.invoice_number or order.stripe_invoice,
        "invoice_url": order.invoice_url,
        "provisional_until": order.provisional_until,
        "cancel_at": order.cancel_at,
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


def _find(tx: Any, wanted: str) -> Any:
    number = _NUMBER.match(wanted)
    order = tx.order_by_number(int(number.group(1))) if number else tx.get_order(wanted)
    if order is None:
        raise LicensingError(ErrorCode.NOT_FOUND, f"no order {wanted!r}: see vendor orders")
    return order


def _target(args: argparse.Namespace) -> tuple[str, str]:
    """(action, order) from ``order ID``, ``order show ID`` or ``order refund ID``."""
    words = list(args.words)
    action = words.pop(0) if len(words) == 2 and words[0] in ("show", "refund") else "show"
    if len(words) != 1:
        raise LicensingError(ErrorCode.BAD_REQUEST, "usage: vendor order [show|refund] ORDER")
    if args.amount is not None and action != "refund":
        raise LicensingError(ErrorCode.BAD_REQUEST, "--amount goes with vendor order refund")
    return action, words[0]


def _refund(service: Callable[[argparse.Namespace], Any], args: argparse.Namespace, wanted: str) -> int:
    from ..servers.shop.app import Shop
    from ..servers.shop.config import load_config
    from ..servers.shop.invoicing import Invoicing
    from ..servers.shop.payments import StripeGateway

    if not args.shop_config:
        raise LicensingError(ErrorCode.BAD_REQUEST, "a refund needs --shop-config (its Stripe secret key)")
    if args.amount is not None and args.amount < 1:
        raise LicensingError(ErrorCode.BAD_REQUEST, "--amount must be a positive number of cents")
    config = load_config(args.shop_config)
    store = Shop.store_of(service(args), database_url=args.database_url)
    try:
        with store.transaction() as tx:
            order = _find(tx, wanted)
    finally:
        store.close()
    if order.stripe_payment_intent is None:
        raise LicensingError(ErrorCode.BAD_REQUEST, f"order {order.id} has no card payment to refund")
    if args.amount is not None and args.amount > order.amount:
        raise LicensingError(ErrorCode.BAD_REQUEST, f"--amount is more than the order's {order.amount}")
    refund = Invoicing(StripeGateway(config.stripe)).refund(order, args.amount)
    # The license changes when Stripe's charge.refunded arrives on the webhook, as for a refund
    # made in Stripe's dashboard: one path, recorded on the order.
    print(f"refund {refund['id']} of {refund['amount']} {order.currency.upper()}: {refund['status']}")
    print("the license changes when Stripe's charge.refunded event reaches the store")
    return 0


def cmd_order(service: Callable[[argparse.Namespace], Any]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from ..servers.shop import money

        action, wanted = _target(args)
        if action == "refund":
            return _refund(service, args, wanted)
        store, seller = _open(service, args)
        try:
            with store.transaction() as tx:
                order = _find(tx, wanted)
                view = _view(order, seller, money.history(tx.conn, order.id))
        finally:
            store.close()
        if args.json:
            print(json.dumps(view, indent=2, sort_keys=True))
            return 0
        for name in ("number", "id", "kind", "state", "email", "license_id", "amount", "currency", "payment",
                     "card_last4", "invoice", "invoice_url", "stripe_payment_intent", "stripe_subscription",
                     "last_error"):  # fmt: skip
            print(f"{name + ':':<23}{view[name] if view[name] is not None else '-'}")
        for name in ("created_at", "paid_at", "fulfilled_at", "provisional_until", "cancel_at"):
            print(f"{name + ':':<23}{iso(view[name]) or '-'}")
        for event in view["money"]:
            applied = iso(event["applied_at"]) or f"pending ({event['last_error'] or 'next pass'})"
            what = f"{event['kind']} {event['amount'] or ''}".strip()
            if event.get("effective_at"):
                what += f" (effective {iso(event['effective_at'])})"
            print(f"  {iso(event['received_at'])} {what} -> {event['outcome'] or '-'} [{applied}]")
        return 0

    return run


def register(verb: Callable[..., argparse.ArgumentParser], service: Callable[[argparse.Namespace], Any]) -> None:
    shop_help = "the store's shop.yaml, for order numbers with its seller.order_prefix"
    p = verb("orders", cmd_orders(service), "the store's orders, newest first")
    p.add_argument("--json", action="store_true")
    p.add_argument("--shop-config", metavar="FILE", help=shop_help)
    p = verb("order", cmd_order(service), "one order of the store: show it, or refund it through Stripe")
    p.add_argument(
        "words",
        nargs="+",
        metavar="[show|refund] ORDER",
        help="the order id (ord_...) or its number (EXA-000042); refund: all of it, or --amount",
    )
    p.add_argument("--amount", type=int, metavar="CENTS", help="refund: this much (in cents), not all of it")
    p.add_argument("--json", action="store_true")
    p.add_argument("--shop-config", metavar="FILE", help=shop_help + "; a refund needs it for the Stripe key")
