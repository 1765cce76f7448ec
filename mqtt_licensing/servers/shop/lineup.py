"""What the store sells right now: the config's products filled in from the vendor's catalogue
(titles, kinds, what each includes), and the rule that an order must license something a
broker can serve, checked before any payment.

Read per page and per order (one small transaction), so ``vendor feature update --title``
and ``vendor feature retire`` show in the store at once: a retired feature, or a template
removed since, is simply no longer offered."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from ...core.errors import ErrorCode, LicensingError
from ...core.features import Feature, baseline, serves_clients
from ...core.timefmt import add_years
from ..activation.catalogue import CatalogueFeature, Template, table_of
from ..activation.service import ActivationService
from .catalogue import Catalogue, Kind, Line, Product, line_features

log = logging.getLogger(__name__)

KIND_OF = {"perpetual": Kind.ONE_TIME, "term": Kind.PER_YEAR, "metered": Kind.METERED}


def _bad(message: str) -> LicensingError:
    return LicensingError(ErrorCode.BAD_REQUEST, message)


def _titles(names: Iterable[str], table: Mapping[str, Feature]) -> str:
    return ", ".join(table[n].title if n in table else n for n in sorted(names))


def named(features: Iterable[str], definitions: Iterable[Mapping[str, Any]]) -> list[str]:
    """``Title (name)`` for each feature, for people (the name alone where no title is known)."""
    titles = {d["name"]: d["title"] for d in definitions}
    return [f"{titles[n]} ({n})" if n in titles else n for n in features]


def _unlocks(feature: Feature, table: Mapping[str, Feature]) -> str:
    what = {
        "all": "lets the broker serve its clients",
        "class": f"for the broker's {feature.name} clients",
        "none": "support, for the years you choose" if feature.kind == "term" else "no clients by itself",
    }[feature.gates]
    if feature.unit:
        what += f"; billed per {feature.unit.replace('_', ' ')} used"
    if feature.requires:
        what += f"; needs {_titles(feature.requires, table)}"
    return what


def _edition(template: Template, table: Mapping[str, Feature]) -> str:
    terms = template.terms
    connections = terms.get("max_connections")
    activations = terms.get("max_activations") or 1
    years = terms.get("support_years")
    parts = [
        _titles(terms.get("features", ()), table),
        f"{connections} connections" if connections is not None else "unlimited connections",
        f"{activations} activation{'s' if activations != 1 else ''}",
        f"{years} year{'s' if years != 1 else ''} of support" if years else "no support",
    ]
    if terms.get("valid_days"):
        parts.append(f"valid {terms['valid_days']} days")
    return "; ".join(parts)


def resolve(
    catalogue: Catalogue,
    rows: Mapping[str, CatalogueFeature],
    templates: Mapping[str, Template],
    *,
    strict: bool = False,
    max_activations: int = 1,
) -> Catalogue:
    """The products with their catalogue titles, kinds and contents. ``strict`` (at start) refuses
    a product the vendor catalogue does not have; later such a product is left out."""
    table = table_of(rows)
    products: list[Product] = []
    for product in catalogue.products:
        try:
            products.extend(_resolve_one(product, rows, templates, table, max_activations))
        except LicensingError:
            if strict:
                raise
            log.warning("the store no longer offers %s: it is not in the vendor catalogue", product.id)
    return replace(catalogue, products=tuple(products), definitions=tuple(f.to_body() for f in table.values()))


def _resolve_one(
    product: Product,
    rows: Mapping[str, CatalogueFeature],
    templates: Mapping[str, Template],
    table: Mapping[str, Feature],
    max_activations: int,
) -> list[Product]:
    if product.template:
        template = templates.get(product.template)
        if template is None:
            raise _bad(f"the shop sells unknown template {product.template!r}: vendor template add it, or remove it")
        features = tuple(sorted(template.terms.get("features", ())))
        name = product.name or " + ".join(table[f].title for f in features if f in table)
        return [replace(product, name=name, features=features, includes=_edition(template, table))]
    row = rows.get(product.feature)
    if row is None:
        raise _bad(f"the shop sells unknown feature {product.feature!r}: vendor feature add it, or remove it")
    if row.retired_at is not None:
        return []  # retired: hidden from sale
    feature = row.feature
    includes = _unlocks(feature, table)
    if feature.gates == "all":
        includes += f"; a new license: {max_activations} activation{'s' if max_activations != 1 else ''}, "
        includes += "unlimited connections"
    return [
        replace(
            product,
            name=product.name or feature.title,
            kind=product.kind or KIND_OF[feature.kind],
            features=(feature.name,),
            includes=includes,
        )
    ]


def current(service: ActivationService, catalogue: Catalogue, *, strict: bool = False, **options: Any) -> Catalogue:
    """What the store offers now (one transaction: the catalogue's features and templates)."""
    rows, templates = service.catalogue.snapshot()
    return resolve(catalogue, rows, templates, strict=strict, **options)


def check_order(service: ActivationService, lines: tuple[Line, ...], owned: tuple[str, ...] | None) -> tuple[str, ...]:
    """Refuse, before payment, an order whose license would break the catalogue's rules or serve
    no client: support years alone, a bridge alone without the key of a license that has
    mqtt_server. Returns the features the license will have."""
    table = table_of(service.catalogue.rows())
    granted = set(owned or ()) | {f for line in lines for f in line.product.features}
    for name in sorted(granted):
        definition = table.get(name)
        missing = [r for r in definition.requires if r not in granted] if definition is not None else []
        if definition is None or not missing:
            continue
        need = _titles(missing, table)
        if owned is None:
            raise _bad(
                f"{definition.title} needs {need}: add it to the order, "
                "or buy it as an upgrade of a license that has it (with its key)"
            )
        raise _bad(f"{definition.title} needs {need}, which this license lacks: add it to the order")
    granted_table = {name: table[name] for name in granted if name in table}
    if not serves_clients(granted, granted_table):
        need = _titles(baseline(granted_table) - granted, table)
        raise _bad(f"this order licenses nothing a broker can serve clients with: add {need}")
    return tuple(sorted(granted))


def license_terms(
    service: ActivationService, lines: list[dict[str, Any]], years: int, max_activations: int
) -> dict[str, Any]:
    """The terms of the license a paid purchase issues: an edition's template (support years
    bought on top of its own), or the features bought with the store's activations."""
    now = service.clock()
    features = sorted({f for line in lines for f in line_features(line)})
    edition = next((line["template"] for line in lines if line.get("template")), None)
    if edition is None:
        support = add_years(now, years) if years else None  # calendar years: a leap day is not lost
        return {"features": features, "max_activations": max_activations, "support_until": support}
    terms: dict[str, Any] = {"template": edition, "features": features}
    if years:
        own = int(service.catalogue.template(edition).terms.get("support_years") or 0)
        terms["support_until"] = add_years(now, own + years)
    return terms
