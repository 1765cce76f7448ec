"""The activation server's tables (SQLAlchemy Core): what :mod:`.store` queries and the
migrations in ``migrations/`` must match (``tests/servers/test_migrations.py`` checks the drift)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from .._db import Schema

metadata = sa.MetaData()

SCHEMA = Schema("activation", Path(__file__).parent / "migrations", marker_table="licenses")

licenses = sa.Table(
    "licenses",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("key_digest", sa.String(64), nullable=False, unique=True),
    sa.Column("key_mask", sa.String(64), nullable=False),
    sa.Column("model", sa.String(16), nullable=False),
    sa.Column("features", sa.JSON, nullable=False),
    sa.Column("max_activations", sa.Integer, nullable=False),
    sa.Column("seats", sa.Integer, nullable=True),
    sa.Column("expires_at", sa.BigInteger, nullable=True),
    sa.Column("support_until", sa.BigInteger, nullable=True),
    sa.Column("max_connections", sa.Integer, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    # Best_effort | required: refuse metered clients when usage cannot reach the vendor
    sa.Column("metering", sa.String(16), nullable=False, server_default="best_effort"),
    sa.Column("clone_policy", sa.String(16), nullable=False, server_default="flag"),
    # 0..1: non-admin connections allowed past max_connections, as a fraction of it
    sa.Column("overage", sa.Float, nullable=False, server_default="0"),
    # Seconds (None: no heartbeats, no release): an online instance heartbeats every
    # heartbeat_interval; an activation silent longer than release_after is released (0011).
    sa.Column("heartbeat_interval", sa.Integer, nullable=True),
    sa.Column("release_after", sa.Integer, nullable=True),
)

activations = sa.Table(
    "activations",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("license_id", sa.String(40), sa.ForeignKey("licenses.id"), nullable=False),
    sa.Column("instance_fingerprint", sa.String(64), nullable=False),
    sa.Column("public_key", sa.LargeBinary, nullable=False),
    sa.Column("model", sa.String(16), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("last_check_in_at", sa.BigInteger, nullable=True),
    sa.Column("request_nonce", sa.String(128), nullable=True),
    sa.Column("request_created_at", sa.BigInteger, nullable=True),
    sa.Column("freed_at", sa.BigInteger, nullable=True),
    sa.Column("freed_reason", sa.String(32), nullable=True),
    sa.Column("chain", sa.String(64), nullable=True),
    sa.Column("chain_prev", sa.String(64), nullable=True),
    sa.Column("cloned_at", sa.BigInteger, nullable=True),
    sa.Column("clone_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("label", sa.String(64), nullable=True),  # the instance's label, as its last request said
    # The server's time of the last heartbeat, or of the last certificate carrying heartbeat terms;
    # NULL while the instance holds none (it sends no heartbeats: never released). The release duty
    # reads it with last_check_in_at (0011).
    sa.Column("last_heartbeat_at", sa.BigInteger, nullable=True),
    sa.Index("ix_activations_license", "license_id", "freed_at"),
    # The vendor's list in its one stable order, a page at a time (listing.py, 0012).
    sa.Index("ix_activations_created", "created_at", "id"),
    # At most one live activation per instance and license, whatever the domain code does.
    sa.Index(
        "uq_activations_live",
        "license_id",
        "instance_fingerprint",
        unique=True,
        sqlite_where=sa.text("freed_at IS NULL"),
        postgresql_where=sa.text("freed_at IS NULL"),
    ),
)

# The labels an activation had, oldest first (servers/activation/labels.py keeps the newest
# core.instance_label.HISTORY of them): a renamed broker is still recognised by its old name.
activation_labels = sa.Table(
    "activation_labels",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("activation_id", sa.String(40), nullable=False),
    sa.Column("label", sa.String(64), nullable=False),
    sa.Column("first_seen", sa.BigInteger, nullable=False),
    sa.Index("ix_activation_labels_activation", "activation_id", "id"),
)

rate_limits = sa.Table(
    "rate_limits",
    metadata,
    sa.Column("address", sa.String(128), primary_key=True),
    sa.Column("window_start", sa.BigInteger, nullable=False),
    sa.Column("failures", sa.Integer, nullable=False),
)

# Metering: one row per usage record an instance signed; the primary key makes a
# resent record a no-op however often it arrives, on any replica.
usage_records = sa.Table(
    "usage_records",
    metadata,
    sa.Column("instance_fingerprint", sa.String(64), primary_key=True),
    sa.Column("sequence", sa.BigInteger, primary_key=True),
    sa.Column("license_id", sa.String(40), nullable=False),
    sa.Column("activation_id", sa.String(40), nullable=False),
    sa.Column("day", sa.String(10), nullable=False),  # UTC date of period_start: the billing day
    sa.Column("period_start", sa.BigInteger, nullable=False),
    sa.Column("period_end", sa.BigInteger, nullable=False),
    sa.Column("messages", sa.BigInteger, nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Column("client_seconds", sa.BigInteger, nullable=False),
    sa.Column("received_at", sa.BigInteger, nullable=False),
    sa.Column("via", sa.String(16), nullable=False),  # online | offline | floating
    sa.Index("ix_usage_license_day", "license_id", "day"),
)

# What was billed through Stripe (servers/activation/billing.py): once per license, day and unit.
billing_reports = sa.Table(
    "billing_reports",
    metadata,
    sa.Column("license_id", sa.String(40), primary_key=True),
    sa.Column("day", sa.String(10), primary_key=True),
    sa.Column("unit", sa.String(16), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
    sa.Column("idempotency_key", sa.String(64), nullable=False),
    sa.Column("reported_at", sa.BigInteger, nullable=False),
)


request_nonces = sa.Table(
    "request_nonces",
    metadata,
    sa.Column("scope", sa.String(80), primary_key=True),
    sa.Column("nonce", sa.String(128), primary_key=True),
    sa.Column("created_at", sa.BigInteger, nullable=False, index=True),
)


# When the vendor first saw each instance on trial (per instance fingerprint).
trials = sa.Table(
    "trials",
    metadata,
    sa.Column("instance_fingerprint", sa.String(64), primary_key=True),
    sa.Column("started_at", sa.BigInteger, nullable=False),
    sa.Column("source", sa.String(128), nullable=True, index=True),  # the client address: a per-source quota
)

# What the vendor found wrong with an instance's usage records: a sequence reused with other
# content (``conflict``), or an implausible pattern (``zero_run``, ``sequence_jump``). Shown with
# the license's usage; a conflicting record is never acknowledged.
usage_flags = sa.Table(
    "usage_flags",
    metadata,
    sa.Column("instance_fingerprint", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(32), primary_key=True),
    sa.Column("sequence", sa.BigInteger, primary_key=True),
    sa.Column("license_id", sa.String(40), nullable=False),
    sa.Column("activation_id", sa.String(40), nullable=False),
    sa.Column("detail", sa.String(300), nullable=False),
    sa.Column("flagged_at", sa.BigInteger, nullable=False),
    sa.Index("ix_usage_flags_license", "license_id"),
)

# The vendor's product line (catalogue.py): feature definitions and license templates.
features = sa.Table(
    "features",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("title", sa.String(80), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("gates", sa.String(8), nullable=False),
    sa.Column("unit", sa.String(16), nullable=True),
    sa.Column("requires", sa.JSON, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.Column("retired_at", sa.BigInteger, nullable=True),
)

templates = sa.Table(
    "templates",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("terms", sa.JSON, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)
