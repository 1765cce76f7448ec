"""Floating server tables (SQLAlchemy Core): what :mod:`.store` queries and the migrations in
``migrations/`` must match (``tests/servers/test_migrations.py`` checks the drift).

Tables
  ``pool``            exactly one row (id 1): the installed vendor-signed certificate
                      (raw bytes, re-verified on every use), the pending offline
                      request nonce, the vendor URL used for online provisioning.
  ``leases``          one row per seat in use; at most one per instance fingerprint.
  ``request_nonces``  nonces of recent lease requests, so a captured request cannot
                      be replayed; pruned once their ``created_at`` is outside the
                      accepted clock window.
  ``pool_access``     who may take a new seat.
  ``suspended_instances`` instances refused after cloning a lease under the ``suspend`` policy.
  ``usage_outbox``    usage records of leasing brokers, one per (instance,
                      sequence), kept until the vendor's receipt names them.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from .._db import Schema

metadata = sa.MetaData()

SCHEMA = Schema("floating", Path(__file__).parent / "migrations", marker_table="pool")

POOL_ID = 1

pool = sa.Table(
    "pool",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("certificate", sa.LargeBinary, nullable=True),
    sa.Column("installed_at", sa.BigInteger, nullable=True),
    sa.Column("vendor_url", sa.String(2048), nullable=True),
    sa.Column("pending_nonce", sa.String(128), nullable=True),
    sa.Column("pending_at", sa.BigInteger, nullable=True),
    sa.Column("deactivated_at", sa.BigInteger, nullable=True),
    sa.Column("deactivated_activation_id", sa.String(128), nullable=True),
    # Leases issued before this time re-check their seat order (see migration 0003); NULL: all fit.
    sa.Column("seat_check_before", sa.BigInteger, nullable=True),
    sa.Column("clone_policy", sa.String(16), nullable=True),  # NULL = "flag" (migration 0006)
    # Rows in ``leases``, kept by the store with each insert and delete (migration 0009).
    sa.Column("leases_held", sa.BigInteger, nullable=False, server_default="0"),
)

leases = sa.Table(
    "leases",
    metadata,
    sa.Column("lease_id", sa.String(64), primary_key=True),
    sa.Column("instance_fingerprint", sa.String(64), nullable=False, unique=True),
    sa.Column("public_key", sa.LargeBinary, nullable=False),
    sa.Column("features", sa.JSON, nullable=False),
    sa.Column("issued_at", sa.BigInteger, nullable=False),  # when the seat was first taken
    sa.Column("renewed_at", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False, index=True),
    sa.Column("chain", sa.String(64), nullable=True),
    sa.Column("chain_prev", sa.String(64), nullable=True),
    sa.Column("cloned_at", sa.BigInteger, nullable=True),
    sa.Column("clone_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("label", sa.String(64), nullable=True),  # the instance's label, as its last request said
)

# The labels each leasing instance had, oldest first (servers/floating/names.py keeps the newest
# core.instance_label.HISTORY per instance): per fingerprint, as leases come and go.
instance_labels = sa.Table(
    "instance_labels",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("instance_fingerprint", sa.String(64), nullable=False),
    sa.Column("label", sa.String(64), nullable=False),
    sa.Column("first_seen", sa.BigInteger, nullable=False),
    sa.Index("ix_instance_labels_instance", "instance_fingerprint", "id"),
)

request_nonces = sa.Table(
    "request_nonces",
    metadata,
    sa.Column("fingerprint", sa.String(64), primary_key=True),
    sa.Column("nonce", sa.String(128), primary_key=True),
    sa.Column("created_at", sa.BigInteger, nullable=False, index=True),
)


# Who may take a new seat: ("token", sha256 of a join token), ("fingerprint", fp),
# ("network", "10.0.0.0/8"). No row: the pool is open, as it was before the table existed.
pool_access = sa.Table(
    "pool_access",
    metadata,
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("value", sa.String(128), primary_key=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)


# Instances refused because two copies renewed one lease under the "suspend" policy.
suspended_instances = sa.Table(
    "suspended_instances",
    metadata,
    sa.Column("fingerprint", sa.String(64), primary_key=True),
    sa.Column("lease_id", sa.String(64), nullable=False),
    sa.Column("suspended_at", sa.BigInteger, nullable=False),
)

# Metering: what the floating server holds for the vendor. The primary key makes a
# record an agent resends (its receipt was lost) a no-op; rows go once the vendor receipts them.
usage_outbox = sa.Table(
    "usage_outbox",
    metadata,
    sa.Column("instance_fingerprint", sa.String(64), primary_key=True),
    sa.Column("sequence", sa.BigInteger, primary_key=True),
    sa.Column("record", sa.LargeBinary, nullable=False),  # exactly as the instance signed it
    sa.Column("public_key", sa.LargeBinary, nullable=False),  # the lease holder's key that verified it
    sa.Column("received_at", sa.BigInteger, nullable=False, index=True),
)
