"""Tax on an order, added before payment and shown on the order page and the receipt; the shop
config's ``tax:`` says how:

* ``tax: {rates: {DE: 19, ...}, label: VAT}``: a configured rate per country (the buyer chooses it);
* ``tax: {stripe: true}``: Stripe Tax computes it from the buyer's country and postal code and the
  lines (:mod:`.stripe_tax`); the calculation's id is kept on the order;
* no ``tax:``: the store adds nothing and asks no country."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...core.errors import ErrorCode, LicensingError


def _bad(message: str) -> LicensingError:
    return LicensingError(ErrorCode.BAD_REQUEST, message)


@dataclass(frozen=True)
class TaxRates:
    label: str = "VAT"
    rates: dict[str, float] = field(default_factory=dict)  # ISO 3166 alpha-2 country -> percent
    stripe: bool = False  # Stripe Tax computes the tax (stripe_tax.py); no rates then

    @property
    def asks_address(self) -> bool:
        """Does the store page ask the buyer's country (and, for Stripe Tax, postal code)?"""
        return self.stripe or bool(self.rates)

    def tax(self, country: Any, subtotal: int) -> tuple[str | None, int]:
        """(country, tax in minor units) of an order at the configured rates; none configured
        (or Stripe Tax, which :mod:`.stripe_tax` asks): (None, 0)."""
        if not self.rates:
            return None, 0
        code = str(country or "").strip().upper()
        if code not in self.rates:
            raise _bad("choose your country (it sets the tax on the order)")
        return code, round(subtotal * self.rates[code] / 100)

    def describe(self, country: str | None) -> str:
        if self.stripe:
            return f"{self.label} ({country})"
        rate = self.rates.get(country or "")
        return f"{self.label} {rate:g}% ({country})" if rate is not None else self.label


def parse_tax(data: Any) -> TaxRates:
    if data is None:
        return TaxRates()
    if isinstance(data, dict) and "stripe" in data:
        if data["stripe"] is not True or "rates" in data:
            raise _bad("tax: either stripe: true (Stripe Tax computes it) or rates: {COUNTRY: percent}, not both")
        label = data.get("label", "Tax")
        if not isinstance(label, str) or not label:
            raise _bad("tax.label must be text, e.g. VAT or Sales tax")
        return TaxRates(label, {}, stripe=True)
    if not isinstance(data, dict) or not isinstance(data.get("rates"), dict) or not data["rates"]:
        raise _bad("tax needs rates: {COUNTRY: percent, ...}, e.g. {DE: 19, FR: 20, US: 0}")
    rates: dict[str, float] = {}
    for country, rate in data["rates"].items():
        if not (isinstance(country, str) and len(country) == 2 and country.isalpha()):
            raise _bad(f"tax.rates: {country!r} is not a two-letter country code")
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate < 100:
            raise _bad(f"tax.rates.{country} must be a percent from 0 to 100")
        rates[country.upper()] = float(rate)
    label = data.get("label", "VAT")
    if not isinstance(label, str) or not label:
        raise _bad("tax.label must be text, e.g. VAT or Sales tax")
    return TaxRates(label, rates)


__all__ = ["TaxRates", "parse_tax"]
