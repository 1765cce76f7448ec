"""What a partial refund means for the license: the refunded amount matched to the order's lines.

* exactly an add-on line (its amount, with or without its share of the tax): that line's
  features are removed;
* a whole number of support years of a per-year line: support ends that many calendar years sooner;
* anything else: recorded and flagged for the vendor, the license unchanged (a goodwill credit,
  a price correction: only a person knows).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .catalogue import Kind, line_features
from .store import Order


@dataclass(frozen=True)
class Refunded:
    line: dict[str, Any]
    years: int  # per-year lines: how many years were refunded; 0 for other lines
    features: tuple[str, ...]  # other lines: the features it added


def _tax_share(order: Order, amount: int) -> int:
    subtotal = order.amount - order.tax
    return round(order.tax * amount / subtotal) if subtotal > 0 else 0


def match(order: Order, refunded: int) -> Refunded | None:
    """The line (or the support years) a refund of ``refunded`` pays back, if it is exactly one."""
    for line in order.lines:
        if not line["amount"]:
            continue  # metered: nothing was paid up front
        if line["kind"] == Kind.PER_YEAR:
            for years in range(1, int(line["quantity"]) + 1):
                part = line["amount"] * years // line["quantity"]
                if refunded in (part, part + _tax_share(order, part)):
                    return Refunded(line, years, ())
        elif refunded in (line["amount"], line["amount"] + _tax_share(order, line["amount"])):
            return Refunded(line, 0, tuple(sorted(line_features(line))))
    return None


def previous_refunds(history: list[dict[str, Any]], total: int) -> int:
    """What was refunded before a refund that brought the total to ``total``: Stripe's
    ``amount_refunded`` is a running total, so the earlier ones are the smaller totals (whatever
    order their events arrived in)."""
    totals = [int(e["amount"]) for e in history if e["kind"].startswith("refund") and e["amount"]]
    return max((t for t in totals if t < total), default=0)


__all__ = ["Refunded", "match", "previous_refunds"]
