"""The store's configuration: one YAML file (``vendor serve --shop-config FILE``).

Secrets never sit in the file: the Stripe secret key, the webhook signing secret
and the SMTP password come from environment variables or from files (Docker /
Kubernetes secrets), and they are kept out of ``repr`` so no log line can carry
them. Every mistake is one line naming the fix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ...core.errors import ErrorCode, LicensingError
from .catalogue import Catalogue
from .seller import Seller, parse_seller
from .tax import TaxRates, parse_tax

STRIPE_SECRET_ENV = "MQTT_LICENSING_STRIPE_SECRET_KEY"
STRIPE_WEBHOOK_ENV = "MQTT_LICENSING_STRIPE_WEBHOOK_SECRET"
SMTP_PASSWORD_ENV = "MQTT_LICENSING_SMTP_PASSWORD"
STRIPE_JS = "https://js.stripe.com/v3/"
SECURITY = ("starttls", "ssl", "none")


def _bad(message: str) -> LicensingError:
    return LicensingError(ErrorCode.BAD_REQUEST, message)


@dataclass(frozen=True)
class StripeSettings:
    secret_key: str = field(repr=False)
    webhook_secret: str = field(repr=False)
    publishable_key: str
    api_base: str | None = None  # None: Stripe itself; a URL: a Stripe-compatible server (localstripe)
    js_url: str = STRIPE_JS


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    sender: str
    security: str = "starttls"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None  # trust this CA for the server's certificate (a private relay)
    timeout: float = 30.0


@dataclass(frozen=True)
class InvoiceSettings:
    """Stripe Invoices: a receipt invoice for each paid order, and "pay by invoice" for large ones."""

    receipts: bool = True  # each card-paid order gets a Stripe Invoice, marked paid (its number and PDF)
    pay_by_invoice_from: int | None = None  # total (minor units) from which an order may be paid by invoice
    days_until_due: int = 30
    provisional_valid_days: int = 0  # 0: no license before the invoice is paid; else one valid this long


@dataclass(frozen=True)
class ShopConfig:
    base_url: str  # public URL of the activation server; links in e-mails point here
    stripe: StripeSettings
    smtp: SmtpSettings
    catalogue: Catalogue
    max_activations: int = 1  # of a license bought in the store
    frees_per_30_days: int = 2  # lost activations a customer may free in the portal
    worker_interval: float = 5.0  # seconds between passes of the fulfilment / reminder loop
    reconcile_after: int = 120  # ask Stripe about a payment whose webhook has not come after this long
    claim_seconds: int = 120  # a fulfilment's lease on its order; a crashed worker's is taken over after this
    reminder_days: int = 30  # support-renewal reminder this long before support ends
    seller: Seller = field(default_factory=Seller)  # who sells: on every page and e-mail
    tax: TaxRates = field(default_factory=TaxRates)  # a rate per country, added before payment
    order_ttl: int = 3600  # a pending order can be paid this long after it was made (stale.py)
    invoices: InvoiceSettings = field(default_factory=InvoiceSettings)


def _secret(section: dict[str, Any], name: str, default_env: str, where: str, *, required: bool = True) -> str | None:
    """A secret from ``<name>_file`` or the environment variable ``<name>_env`` (default ``default_env``)."""
    if name in section:
        raise _bad(f"{where}.{name}: do not put secrets in the file; use {name}_env or {name}_file")
    path = section.get(f"{name}_file")
    if path:
        try:
            value = Path(path).read_text().strip()
        except OSError as exc:
            raise _bad(f"{where}.{name}_file: cannot read {path}: {exc.strerror}") from None
        if not value:
            raise _bad(f"{where}.{name}_file: {path} is empty")
        return value
    env = section.get(f"{name}_env", default_env)
    value = os.environ.get(env, "").strip()
    if not value and required:
        raise _bad(f"{where}.{name}: set the environment variable {env} or give {name}_file")
    return value or None


def _section(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name)
    if not isinstance(value, dict):
        raise _bad(f"the shop config needs a {name}: section (see README, 'The store')")
    return value


def _int(section: dict[str, Any], name: str, where: str, default: int, minimum: int) -> int:
    value = section.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _bad(f"{where}.{name} must be a whole number, at least {minimum}")
    return value


def parse_invoices(data: Any) -> InvoiceSettings:
    if data is None:
        return InvoiceSettings()
    if not isinstance(data, dict):
        raise _bad(
            "invoices: must be a mapping (receipts, pay_by_invoice_from, days_until_due, provisional_valid_days)"
        )
    receipts = data.get("receipts", True)
    if not isinstance(receipts, bool):
        raise _bad("invoices.receipts must be true or false")
    start = data.get("pay_by_invoice_from")
    if start is not None and (isinstance(start, bool) or not isinstance(start, int) or start < 1):
        raise _bad("invoices.pay_by_invoice_from must be an amount in cents (or left out: no pay by invoice)")
    return InvoiceSettings(
        receipts=receipts,
        pay_by_invoice_from=start,
        days_until_due=_int(data, "days_until_due", "invoices", 30, 1),
        provisional_valid_days=_int(data, "provisional_valid_days", "invoices", 0, 0),
    )


def parse_config(data: Any) -> ShopConfig:
    if not isinstance(data, dict):
        raise _bad("the shop config must be a YAML mapping (see README, 'The store')")
    base_url = data.get("base_url")
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise _bad("base_url must be the store's public URL, e.g. https://licenses.example.com")
    s = _section(data, "stripe")
    publishable = s.get("publishable_key")
    if not isinstance(publishable, str) or not publishable.startswith("pk_"):
        raise _bad("stripe.publishable_key must be your Stripe publishable key (pk_...)")
    secret_key = _secret(s, "secret_key", STRIPE_SECRET_ENV, "stripe")
    webhook_secret = _secret(s, "webhook_secret", STRIPE_WEBHOOK_ENV, "stripe")
    assert secret_key is not None and webhook_secret is not None
    stripe = StripeSettings(
        secret_key=secret_key,
        webhook_secret=webhook_secret,
        publishable_key=publishable,
        api_base=s.get("api_base") or None,
        js_url=s.get("js_url")
        or (f"{s['api_base'].rstrip('/')}/js.stripe.com/v3/" if s.get("api_base") else STRIPE_JS),
    )
    m = _section(data, "smtp")
    security = m.get("security", "starttls")
    if security not in SECURITY:
        raise _bad(f"smtp.security must be one of {', '.join(SECURITY)}")
    if not isinstance(m.get("host"), str) or not isinstance(m.get("from"), str) or "@" not in m["from"]:
        raise _bad("smtp needs host and from (the sender address)")
    smtp = SmtpSettings(
        host=m["host"],
        port=_int(m, "port", "smtp", {"starttls": 587, "ssl": 465, "none": 25}[security], 1),
        sender=m["from"],
        security=security,
        username=m.get("username"),
        password=_secret(m, "password", SMTP_PASSWORD_ENV, "smtp", required=bool(m.get("username"))),
        ca_file=m.get("ca_file"),
    )
    worker = data.get("worker") or {}
    interval = worker.get("interval", 5.0)
    if isinstance(interval, bool) or not isinstance(interval, int | float) or interval <= 0:
        raise _bad("worker.interval must be a positive number of seconds")
    return ShopConfig(
        base_url=base_url.rstrip("/"),
        stripe=stripe,
        smtp=smtp,
        catalogue=Catalogue.from_config(data.get("catalogue")),
        max_activations=_int(data.get("license") or {}, "max_activations", "license", 1, 1),
        frees_per_30_days=_int(data.get("portal") or {}, "frees_per_30_days", "portal", 2, 0),
        worker_interval=float(interval),
        reconcile_after=_int(worker, "reconcile_after", "worker", 120, 1),
        claim_seconds=_int(worker, "claim_seconds", "worker", 120, 1),
        reminder_days=_int(data.get("reminders") or {}, "days_before", "reminders", 30, 1),
        seller=parse_seller(data.get("seller")),
        tax=parse_tax(data.get("tax")),
        order_ttl=_int(data.get("orders") or {}, "ttl", "orders", 3600, 60),
        invoices=parse_invoices(data.get("invoices")),
    )


def load_config(path: str | Path) -> ShopConfig:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise _bad(f"cannot read the shop config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise _bad(f"the shop config {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    return parse_config(data)
