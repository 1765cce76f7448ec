"""Who sells: the seller's name, logo, contact and policies, shown on every page and in every
e-mail (the shop config's ``seller:`` section), and the order numbers customers quote."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...core.errors import ErrorCode, LicensingError

_LINKS = ("terms_url", "privacy_url", "refund_url")


def _bad(message: str) -> LicensingError:
    return LicensingError(ErrorCode.BAD_REQUEST, message)


@dataclass(frozen=True)
class Seller:
    name: str = "License store"
    email: str = ""  # where customers write; shown on every page and e-mail
    address: str = ""  # the seller's postal address (invoices and many countries' law want it)
    logo_url: str = ""
    terms_url: str = ""
    privacy_url: str = ""
    refund_url: str = ""
    order_prefix: str = "ORD"  # order numbers read PREFIX-000123

    def order_number(self, number: int | None) -> str:
        """The number a customer quotes; an order from before numbers has none."""
        return f"{self.order_prefix}-{number:06d}" if number is not None else ""

    def signature(self) -> str:
        """The e-mails' last lines: who sent them and how to reach them."""
        lines = [f"-- \n{self.name}"]
        lines += [value for value in (self.address, self.email) if value]
        lines += [f"{label}: {url}" for label, url in (("Terms", self.terms_url), ("Refunds", self.refund_url)) if url]
        return "\n".join(lines) + "\n"


def parse_seller(data: Any) -> Seller:
    if data is None:
        return Seller()
    if not isinstance(data, dict):
        raise _bad("seller must be a mapping (name, email, address, logo_url, terms_url, privacy_url, refund_url)")
    fields = {"name", "email", "address", "logo_url", "order_prefix", *_LINKS}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise _bad(f"seller: unknown field(s) {', '.join(unknown)}")
    values = {k: v for k, v in data.items() if v is not None}
    for name, value in values.items():
        if not isinstance(value, str) or not value.strip():
            raise _bad(f"seller.{name} must be text")
    for name in ("logo_url", *_LINKS):
        if name in values and not values[name].startswith(("https://", "http://", "/")):
            raise _bad(f"seller.{name} must be a URL (https://...)")
    if "email" in values and "@" not in values["email"]:
        raise _bad("seller.email must be an e-mail address")
    prefix = values.get("order_prefix", "ORD")
    if not prefix.isalnum() or len(prefix) > 8:
        raise _bad("seller.order_prefix must be up to 8 letters or digits")
    return Seller(**values)


__all__ = ["Seller", "parse_seller"]
