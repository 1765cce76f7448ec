"""The store's tables (SQLAlchemy Core): its own schema and version table (``alembic_version_shop``)
in the activation server's database, beside the activation schema but never joined to it; what
:mod:`.store` queries and ``migrations/`` must match (``tests/shop/test_schema.py``).

What each table is for:

* ``shop_orders``: pending (-> invoiced) -> paid -> fulfilled; a paid order is worked on by the
  fulfilment loop until it is fulfilled, whatever crashed in between;
* ``shop_webhook_events``: Stripe event ids already applied (idempotency);
* ``shop_contacts``: the purchase e-mail of each license sold here (portal codes,
  receipts, reminders go there);
* ``shop_portal_codes`` / ``shop_portal_sessions``: one-time sign-in codes and
  sessions, stored as digests only;
* ``shop_account_codes`` / ``shop_license_keys`` / ``shop_portal_events``: the portal by
  e-mail address (codes and links as digests), license keys sealed with the data folder's secret,
  and what was done with them (a key shown again);
* ``shop_frees``: activations freed in the portal (the per-30-days limit);
* ``shop_reminders``: which support end date a reminder was sent for.

Licenses are named by id only: the store reads and changes them through ``ActivationService``.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from .._db import Schema

metadata = sa.MetaData()

# Databases made before the store had its own schema got these tables from the activation
# schema's migration 0006: found without this schema's version table, they are its revision 0001.
SCHEMA = Schema("shop", Path(__file__).parent / "migrations", marker_table="shop_orders")

orders = sa.Table(
    "shop_orders",
    metadata,
    sa.Column("id", sa.String(48), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),  # purchase | upgrade
    sa.Column("state", sa.String(16), nullable=False),  # pending | invoiced | paid | fulfilled | held | void
    sa.Column("email", sa.String(254), nullable=False),
    sa.Column("license_id", sa.String(40), nullable=True),  # the upgraded one, or the one issued
    sa.Column("lines", sa.JSON, nullable=False),  # [{product, name, feature, kind, price, quantity, amount}]
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("stripe_customer", sa.String(64), nullable=True),
    sa.Column("stripe_payment_intent", sa.String(64), nullable=True, unique=True),
    sa.Column("stripe_subscription", sa.String(64), nullable=True),
    sa.Column("support_until", sa.BigInteger, nullable=True),  # the end date this order sets, fixed once
    # The key of a license issued for this order, held only until the e-mail carrying it is
    # accepted by the SMTP server, then erased: a crash in between re-sends the same key
    # instead of issuing a second license.
    sa.Column("pending_key", sa.String(64), nullable=True),
    # Who works on the order: a lease, so two workers (threads, replicas) never fulfil or charge
    # one order at once, and the work of a crashed one is taken over when its lease runs out.
    sa.Column("claimed_until", sa.BigInteger, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("last_error", sa.String(300), nullable=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("paid_at", sa.BigInteger, nullable=True),
    sa.Column("fulfilled_at", sa.BigInteger, nullable=True),
    sa.Column("number", sa.BigInteger, nullable=True),  # what the customer quotes (seller.order_number)
    sa.Column("country", sa.String(2), nullable=True),  # the buyer's, where tax is configured
    sa.Column("tax", sa.BigInteger, nullable=False, server_default="0"),  # included in amount
    sa.Column("payment", sa.String(16), nullable=False, server_default="card"),  # card | invoice
    sa.Column("card_last4", sa.String(4), nullable=True),  # on the receipt: "card ending 4242"
    # The order's Stripe Invoice: a receipt (card orders, paid out of band) or the one the
    # customer pays (pay by invoice); Stripe numbers it and renders its page and PDF.
    sa.Column("stripe_invoice", sa.String(64), nullable=True),
    sa.Column("invoice_number", sa.String(64), nullable=True),
    sa.Column("invoice_url", sa.String(500), nullable=True),
    sa.Column("invoice_pdf", sa.String(500), nullable=True),
    sa.Column("provisional_until", sa.BigInteger, nullable=True),  # a provisional license's end, until paid
    sa.Column("cancel_at", sa.BigInteger, nullable=True),  # metered features removed then (period end)
    sa.Column("invoice_checked_at", sa.BigInteger, nullable=True),  # last asked Stripe about an unpaid invoice
    # Stripe Tax (tax: {stripe: true}): the calculation made before payment, the transaction after.
    sa.Column("tax_calculation", sa.String(64), nullable=True),
    sa.Column("tax_transaction", sa.String(64), nullable=True),
    sa.Column("po_number", sa.String(40), nullable=True),  # the buyer's purchase order (pay by invoice)
    sa.Index("ix_shop_orders_state", "state"),
    sa.Index("uq_shop_orders_number", "number", unique=True),
    sa.Index("ix_shop_orders_invoice", "stripe_invoice"),
)

webhook_events = sa.Table(
    "shop_webhook_events",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("received_at", sa.BigInteger, nullable=False),
)

contacts = sa.Table(
    "shop_contacts",
    metadata,
    sa.Column("license_id", sa.String(40), primary_key=True),
    sa.Column("email", sa.String(254), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

portal_codes = sa.Table(
    "shop_portal_codes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("license_id", sa.String(40), nullable=False),
    sa.Column("code_digest", sa.String(64), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("used", sa.Boolean, nullable=False),
    sa.Index("ix_shop_portal_codes_license", "license_id", "created_at"),
)

portal_sessions = sa.Table(
    "shop_portal_sessions",
    metadata,
    sa.Column("token_digest", sa.String(64), primary_key=True),
    sa.Column("license_id", sa.String(40), nullable=True),  # signed in with a key: this license only
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
    sa.Column("email", sa.String(254), nullable=True),  # signed in by address: every license of it
)

# The portal by account (accounts.py): one row per code mailed to an address, with the one-time
# link's token; both as digests. Rows are made for unknown addresses too, so the hourly limits
# (per address, per client) answer the same whether or not the address bought anything.
account_codes = sa.Table(
    "shop_account_codes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("email", sa.String(254), nullable=False),  # lower-cased
    sa.Column("client", sa.String(64), nullable=False),  # the asking client's address
    sa.Column("code_digest", sa.String(64), nullable=False),
    sa.Column("link_digest", sa.String(64), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("used", sa.Boolean, nullable=False),
    sa.Index("ix_shop_account_codes_email", "email", "created_at"),
    sa.Index("ix_shop_account_codes_client", "client", "created_at"),
    sa.Index("uq_shop_account_codes_link", "link_digest", unique=True),
)

# Keys of licenses sold here, sealed with AES-256-GCM under the secret file of the vendor's data
# folder (keyvault.py): the database alone reveals no key.
license_keys = sa.Table(
    "shop_license_keys",
    metadata,
    sa.Column("license_id", sa.String(40), primary_key=True),
    sa.Column("format", sa.Integer, nullable=False),  # 1: AES-256-GCM, the license id as associated data
    sa.Column("nonce", sa.LargeBinary(12), nullable=False),
    sa.Column("sealed", sa.LargeBinary(256), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

# What a customer did in the portal that the vendor may be asked about (a key shown again).
portal_events = sa.Table(
    "shop_portal_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("license_id", sa.String(40), nullable=False),
    sa.Column("order_id", sa.String(48), nullable=True),
    sa.Column("kind", sa.String(32), nullable=False),  # key_shown
    sa.Column("actor", sa.String(254), nullable=False),  # the signed-in address, or "license key"
    sa.Column("client", sa.String(64), nullable=False),
    sa.Column("at", sa.BigInteger, nullable=False),
    sa.Index("ix_shop_portal_events_license", "license_id", "at"),
)

frees = sa.Table(
    "shop_frees",
    metadata,
    sa.Column("activation_id", sa.String(40), primary_key=True),
    sa.Column("license_id", sa.String(40), nullable=False),
    sa.Column("freed_at", sa.BigInteger, nullable=False),
    sa.Index("ix_shop_frees_license", "license_id", "freed_at"),
)

reminders = sa.Table(
    "shop_reminders",
    metadata,
    sa.Column("license_id", sa.String(40), primary_key=True),
    sa.Column("support_until", sa.BigInteger, primary_key=True),
    sa.Column("sent_at", sa.BigInteger, nullable=False),
)

# After the sale (money.py): one row per Stripe event that moved an order's money, applied to
# the license by the worker (``applied_at``), so a crash between recording and applying loses nothing.
money_events = sa.Table(
    "shop_money_events",
    metadata,
    sa.Column("event_id", sa.String(128), primary_key=True),
    sa.Column("order_id", sa.String(48), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),  # refund_full | refund_partial | dispute_* | subscription_ended
    sa.Column("amount", sa.BigInteger, nullable=True),
    sa.Column("received_at", sa.BigInteger, nullable=False),
    sa.Column("applied_at", sa.BigInteger, nullable=True),
    sa.Column("outcome", sa.String(200), nullable=True),  # what it did to the license, in words
    sa.Column("last_error", sa.String(300), nullable=True),
    sa.Column("effective_at", sa.BigInteger, nullable=True),  # a scheduled change: when it takes effect
    sa.Column("claimed_until", sa.BigInteger, nullable=True),  # a worker's lease: one applies it, one e-mail
    sa.Index("ix_shop_money_events_order", "order_id", "received_at"),
)

__all__ = [
    "SCHEMA",
    "account_codes",
    "contacts",
    "frees",
    "license_keys",
    "metadata",
    "money_events",
    "orders",
    "portal_codes",
    "portal_events",
    "portal_sessions",
    "reminders",
]
