"""The webhook tables, in each server's own database (their own version table)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from .._db import Schema

metadata = sa.MetaData()

SCHEMA = Schema("webhooks", Path(__file__).parent / "migrations", marker_table="webhook_endpoints")

endpoints = sa.Table(
    "webhook_endpoints",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("url", sa.String(2048), nullable=False),
    sa.Column("events", sa.JSON, nullable=False),  # [] = every event
    # Kept to sign with (an HMAC key cannot be hashed away); shown once at creation, never logged.
    sa.Column("secret", sa.String(80), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

outbox = sa.Table(
    "webhook_outbox",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),  # the webhook-id, the same on every retry
    sa.Column("endpoint_id", sa.String(40), nullable=False),
    sa.Column("event_type", sa.String(40), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),  # the exact JSON body every attempt sends
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("next_attempt_at", sa.BigInteger, nullable=True),  # None once delivered or given up
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("delivered_at", sa.BigInteger, nullable=True),
    sa.Column("gave_up_at", sa.BigInteger, nullable=True),
    sa.Column("last_status", sa.Integer, nullable=True),
    sa.Column("last_error", sa.String(200), nullable=True),
    sa.Column("last_attempt_at", sa.BigInteger, nullable=True),
    sa.Index("ix_webhook_outbox_due", "next_attempt_at"),
    sa.Index("ix_webhook_outbox_endpoint", "endpoint_id", "created_at"),
)
