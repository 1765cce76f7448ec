"""What the store's e-mails say. Plain text; the key appears only in :func:`key`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .catalogue import Kind, format_money
from .lineup import named
from .seller import Seller
from .store import Order


def day(ts: int | None) -> str:
    """A date as people read it, "7 December 2027" (UTC), not an ISO timestamp; none is "never"."""
    if ts is None:
        return "never"
    at = datetime.fromtimestamp(int(ts), UTC)
    return f"{at.day} {at:%B %Y}"


def when(ts: int | None) -> str:
    """A moment as the store shows it, "7 December 2027, 09:30 UTC"; none is "never"."""
    return "never" if ts is None else f"{day(ts)}, {datetime.fromtimestamp(int(ts), UTC):%H:%M} UTC"


def ago(ts: int, now: int) -> str:
    """How long ago, as people say it: "just now", "25 minutes ago", "3 hours ago", "4 days ago"."""
    seconds = max(0, int(now) - int(ts))
    if seconds < 120:
        return "just now"
    if seconds < 2 * 3600:
        return f"{seconds // 60} minutes ago"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} hours ago"
    return f"{seconds // 86400} days ago"


SILENT_AFTER = 2 * 86400  # a broker checks in daily by default: two days without a word is news
EARLIER_NAMES_SHOWN = 3  # the portal's cell stays short; the vendor keeps 20


def last_seen(act: dict[str, Any], now: int) -> str:
    """When we last heard from an activation's broker, in the customer's words."""
    seen = act["last_seen_at"]
    if act["model"] == "offline":  # an offline broker never calls: what we know is its last code
        return f"Offline broker: its usage license was made {ago(seen, now)}"
    if act["active"] and now - seen >= SILENT_AFTER:
        return f"Not heard from for {(now - seen) // 86400} days"
    return ago(seen, now).capitalize()


def earlier_names(act: dict[str, Any]) -> tuple[list[str], int]:
    """(the names the broker had before its current one, newest first and at most
    ``EARLIER_NAMES_SHOWN``; how many more). Untrusted text: the template escapes them."""
    earlier: list[str] = []
    for entry in reversed(act.get("label_history", [])):
        if entry["label"] != act.get("label") and entry["label"] not in earlier:
            earlier.append(entry["label"])
    return earlier[:EARLIER_NAMES_SHOWN], max(0, len(earlier) - EARLIER_NAMES_SHOWN)


def support_text(ts: int | None) -> str:
    """A license's support: its end date, or "No support" (never "never", which reads as forever)."""
    return "No support" if ts is None else day(ts)


def apply_steps(model: str) -> str:
    """How the new terms of an upgraded license reach its broker(s), in that license model's words."""
    if model == "offline":
        return (
            "Your broker is offline, so it learns the new terms from a new usage license: run "
            "`mqtt-licensing offline-request` on it (or use its License page) to generate a new request code, "
            "then upload that code in the customer portal, or send it to us, and install the usage license "
            "you get back."
        )
    if model == "floating":
        return (
            "Your floating license server picks up the new terms at its next refresh, or at once "
            "with `mqtt-licensing floating refresh`; its brokers get them with their next lease."
        )
    return (
        "Click Reactivate on your broker's License page (or run `mqtt-licensing reactivate`) to apply "
        "the new terms now; otherwise the broker picks them up at its next check-in."
    )


def change_reaches(model: str) -> str:
    """How a change the vendor made to a license (a refund, a chargeback, a cancellation) reaches
    its broker(s), in that license model's words."""
    if model == "offline":
        return (
            "Your broker is offline: it keeps the usage license it has until that ends; the next usage "
            "license (from a new request code) carries this change."
        )
    if model == "floating":
        return (
            "Your floating license server applies this at its next refresh (or at once with "
            "`mqtt-licensing floating refresh`); its brokers follow with their next lease."
        )
    return "Your broker applies this at its next check-in (or when you click Reactivate)."


def describe_line(line: dict[str, Any], currency: str) -> str:
    years = f" x {line['quantity']} year(s)" if line["kind"] == Kind.PER_YEAR else ""
    price = "billed on usage" if line["kind"] == Kind.METERED else format_money(line["amount"], currency)
    return f"  {line['name']}{years}: {price}"


def _summary(order: Order) -> str:
    items = "\n".join(describe_line(ln, order.currency) for ln in order.lines)
    if order.tax:
        items += f"\n  Tax ({order.country}): {format_money(order.tax, order.currency)}"
    paid = f" (card ending {order.card_last4})" if order.card_last4 else ""
    if order.payment == "invoice":
        paid = f" (by invoice {order.invoice_number})" if order.invoice_number else " (by invoice)"
        paid += f"\nYour purchase order: {order.po_number}" if order.po_number else ""
    return f"{items}\nTotal: {format_money(order.amount, order.currency)}{paid}\n{invoice_links(order)}"


def invoice_links(order: Order) -> str:
    """The order's Stripe Invoice: its number, its page and its PDF (none: no invoice was made)."""
    if order.stripe_invoice is None:
        return ""
    lines = [f"Invoice {order.invoice_number or order.stripe_invoice}"]
    lines += [f"  {label}: {url}" for label, url in (("View", order.invoice_url), ("PDF", order.invoice_pdf)) if url]
    return "\n".join(lines) + "\n"


def portal_line(base_url: str) -> str:
    if not base_url:
        return ""
    return f"Your licenses, activations and invoices: {base_url}/shop/portal\n"


def _terms(lic: dict[str, Any]) -> str:
    return (
        f"License id:    {lic['id']}\nFeatures:      {', '.join(named(lic['features'], lic.get('definitions', ())))}\n"
        f"Support until: {support_text(lic['support_until'])}\n"
    )


def key(order: Order, lic: dict[str, Any], license_key: str, base_url: str) -> tuple[str, str]:
    return "Your MQTT license key", (
        f"Thank you for your purchase.\n\n{_summary(order)}\n"
        f"Your license key (also attached as license.txt):\n\n    {license_key}\n\n{_terms(lic)}\n"
        "Activate it on your broker's License page (Online), or with\n"
        "    mqtt-licensing activate --key-file license.txt\n\n"
        f"See all your licenses, activations, orders and this key again in the customer portal\n"
        f"(sign in with this e-mail address): {base_url}/shop/portal\n"
        "Keep this key safe, like a password: anyone with it can activate the license.\n"
    )


def provisional(order: Order, lic: dict[str, Any], license_key: str, base_url: str) -> tuple[str, str]:
    """The key of a license issued before its invoice is paid: valid until a date, then permanent once paid."""
    return "Your MQTT license key (provisional until the invoice is paid)", (
        f"Thank you for your order.\n\n{_summary(order)}\n"
        f"Your license key (also attached as license.txt):\n\n    {license_key}\n\n{_terms(lic)}\n"
        f"This license is provisional: it works until {when(order.provisional_until)}. When the invoice\n"
        "is paid it becomes permanent, with the same key; nothing to do on your broker but its next check-in.\n\n"
        f"{portal_line(base_url)}Keep this key safe, like a password: anyone with it can activate the license.\n"
    )


def invoice_sent(order: Order, days_until_due: int, base_url: str) -> tuple[str, str]:
    """An order to be paid by invoice, no license yet: what was ordered, where the invoice is, what follows."""
    what = "the license key is e-mailed to you" if order.kind == "purchase" else "the upgrade is applied"
    return "Your order: invoice to pay", (
        f"Thank you for your order.\n\n{_summary(order)}\n"
        f"The invoice is due in {days_until_due} days. When it is paid, {what}.\n\n{portal_line(base_url)}"
    )


def receipt(order: Order, lic: dict[str, Any], base_url: str = "") -> tuple[str, str]:
    if order.kind == "purchase":  # paid by invoice: the license exists already (provisional)
        return f"Receipt: license {lic['id']} is paid", (
            f"Your invoice is paid: license {lic['id']} is now permanent.\n\n{_summary(order)}\n{_terms(lic)}\n"
            f"{apply_steps(lic['model'])}\n\n{portal_line(base_url)}"
        )
    return f"Receipt: license {lic['id']} upgraded", (
        f"Your license {lic['id']} was upgraded.\n\n{_summary(order)}\n{_terms(lic)}\n{apply_steps(lic['model'])}\n"
        f"\n{portal_line(base_url)}"
    )


def reminder(license_id: str, support_until: int, base_url: str) -> tuple[str, str]:
    return f"Support for license {license_id} ends soon", (
        f"Support for license {license_id} ends on {day(support_until)}.\n\n"
        f"Renew it in the store: {base_url}/shop/upgrade?license={license_id}\n"
        "(you will need the license key)\n"
    )


def from_seller(seller: Seller, order: Order, subject: str, body: str) -> tuple[str, str]:
    """An order's e-mail as the seller sends it: its order number and date on top, the seller's
    name, address and contact at the end (the subject stays what mail filters already match)."""
    number = seller.order_number(order.number)
    if not number:
        return subject, f"{body}\n{seller.signature()}"
    head = f"Order {number} of {day(order.paid_at or order.created_at)}, {seller.name}\n\n"
    return subject, f"{head}{body}\n{seller.signature()}"
