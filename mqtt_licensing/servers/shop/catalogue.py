"""What the store sells: products from the vendor's config, and what a cart costs.

A product is a feature of the vendor's catalogue or a license template (an edition) with
its price; its title, kind and rules come from the catalogue (:mod:`.lineup` fills them in),
so they are not written twice. Prices are integers in the currency's minor unit (cents), as
Stripe takes them. One currency per catalogue: a PaymentIntent has exactly one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ...core.errors import ErrorCode, LicensingError
from ...core.features import check_name

YEAR = 365 * 86400
MAX_YEARS = 10


class Kind(StrEnum):
    ONE_TIME = "one_time"  # bought once; the feature is added for good
    PER_YEAR = "per_year"  # N years; extends support_until
    METERED = "metered"  # a Stripe subscription on a metered price; usage is billed later


@dataclass(frozen=True)
class Product:
    id: str
    name: str  # "" in the config: the catalogue's title
    feature: str  # "" for a template
    kind: Kind | None  # None in the config: from the feature's kind (perpetual, term, metered)
    price: int  # minor units; per year for PER_YEAR, per unit of usage for METERED
    description: str = ""
    unit: str = ""  # what one unit of a METERED product is, for the page ("1,000 messages")
    # The Stripe Billing Meter (mtr_...) a METERED price is backed by: required by Stripe's API since
    # 2025-03-31; the meter's event name is the one `vendor bill --event-name` reports usage to.
    meter: str = ""
    template: str = ""  # a new license from this template (an edition), bought once
    features: tuple[str, ...] = field(default_factory=tuple)  # what it grants (filled from the catalogue)
    includes: str = ""  # what it includes, for the page (filled from the catalogue)

    @property
    def sold_as(self) -> Kind:
        """The kind, once filled in from the catalogue (:func:`.lineup.resolve`)."""
        if self.kind is None:
            raise LicensingError(ErrorCode.INTERNAL_ERROR, f"product {self.id} was not resolved against the catalogue")
        return self.kind


@dataclass(frozen=True)
class Line:
    product: Product
    quantity: int  # years for PER_YEAR, else 1

    @property
    def amount(self) -> int:
        """What is charged now: metered lines are billed on usage, not at purchase."""
        return 0 if self.product.kind is Kind.METERED else self.product.price * self.quantity


def _bad(message: str) -> LicensingError:
    return LicensingError(ErrorCode.BAD_REQUEST, message)


@dataclass(frozen=True)
class Catalogue:
    currency: str
    products: tuple[Product, ...]
    # The vendor catalogue's feature definitions (filled by :func:`.lineup.resolve`): titles for pages.
    definitions: tuple[dict[str, Any], ...] = ()

    @classmethod
    def from_config(cls, data: Any) -> Catalogue:
        """Parse the ``catalogue:`` section; mistakes are one line naming the fix."""
        if not isinstance(data, dict):
            raise _bad("catalogue: must be a mapping with currency and products")
        currency = data.get("currency", "usd")
        if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
            raise _bad("catalogue.currency must be a three-letter ISO code such as usd or eur")
        raw = data.get("products")
        if not isinstance(raw, list) or not raw:
            raise _bad("catalogue.products must be a non-empty list")
        products = []
        for i, item in enumerate(raw):
            where = f"catalogue.products[{i}]"
            if not isinstance(item, dict):
                raise _bad(f"{where} must be a mapping with a feature or a template, and a price")
            products.append(_product(item, where))
        ids = [p.id for p in products]
        if len(set(ids)) != len(ids):
            raise _bad("catalogue.products: each id must be unique")
        return cls(currency=currency.lower(), products=tuple(products))

    def get(self, product_id: str) -> Product:
        for product in self.products:
            if product.id == product_id:
                return product
        raise _bad(f"no product {product_id!r} in the catalogue")

    def offers(self, owned: tuple[str, ...] | None) -> tuple[Product, ...]:
        """What can be bought: everything for a new license; for an upgrade, the features the
        license lacks, plus per-year products (support years can always be added); an edition is
        a new license, never an upgrade."""
        if owned is None:
            return self.products
        return tuple(p for p in self.products if not p.template and (p.kind is Kind.PER_YEAR or p.feature not in owned))

    def cart(self, choice: dict[str, int], owned: tuple[str, ...] | None) -> tuple[Line, ...]:
        """Validate a chosen {product id: quantity} against what may be bought."""
        offers = {p.id: p for p in self.offers(owned)}
        lines = []
        for pid, quantity in choice.items():
            if pid not in offers:
                if any(p.id == pid for p in self.products):
                    product = self.get(pid)
                    if product.template:
                        raise _bad(f"{product.name} is a new license: buy it without a key")
                    raise _bad(f"the license already has {product.name}")
                raise _bad(f"no product {pid!r} in the catalogue")
            product = offers[pid]
            if product.kind is Kind.PER_YEAR:
                if not 1 <= quantity <= MAX_YEARS:
                    raise _bad(f"{product.name}: choose 1 to {MAX_YEARS} years")
            elif quantity != 1:
                raise _bad(f"{product.name} is bought once")
            lines.append(Line(product, quantity))
        if not lines:
            raise _bad("choose at least one product")
        if sum(1 for line in lines if line.product.template) > 1:
            raise _bad("choose one edition per license")
        return tuple(sorted(lines, key=lambda line: line.product.id))


_FIELDS = {"id", "name", "feature", "template", "kind", "price", "description", "unit", "meter"}


def _product(item: dict[str, Any], where: str) -> Product:
    unknown = sorted(set(item) - _FIELDS)
    if unknown:
        raise _bad(f"{where}: unknown field(s) {', '.join(unknown)}")
    if ("feature" in item) == ("template" in item):
        raise _bad(f"{where} names either a catalogue feature or a template (vendor feature|template list)")
    kind: Kind | None = None
    if item.get("kind") is not None:
        try:
            kind = Kind(str(item.get("kind")))
        except ValueError:
            raise _bad(f"{where}.kind must be one of {', '.join(k.value for k in Kind)}") from None
    price = item.get("price")
    if isinstance(price, bool) or not isinstance(price, int) or price < 0:
        raise _bad(f"{where}.price must be a whole number of minor units (cents), 0 or more")
    feature, template = (check_name(item["feature"]), "") if "feature" in item else ("", check_name(item["template"]))
    if template and kind not in (None, Kind.ONE_TIME):
        raise _bad(f"{where}: a template is bought once (kind one_time)")
    pid = item.get("id", feature or template)
    name = item.get("name", "")
    if not isinstance(pid, str) or not pid or not isinstance(name, str):
        raise _bad(f"{where} needs a text id (and name, if given)")
    return Product(
        id=pid,
        name=name,
        feature=feature,
        template=template,
        kind=Kind.ONE_TIME if template else kind,
        price=price,
        description=str(item.get("description", "")),
        unit=str(item.get("unit", "")),
        meter=str(item.get("meter", "")),
    )


def line_features(line: dict[str, Any]) -> list[str]:
    """What an order line grants (orders from before templates name one feature)."""
    return list(line.get("features") or [line["feature"]])


def format_money(amount: int, currency: str) -> str:
    return f"{amount / 100:,.2f} {currency.upper()}"
