"""The activation server's schema as it was before versioning (``metadata.create_all``).

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "licenses",
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
    )
    op.create_table(
        "activations",
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
    )
    op.create_index("ix_activations_license", "activations", ["license_id", "freed_at"])
    # At most one live activation per instance and license, whatever the domain code does.
    op.create_index(
        "uq_activations_live",
        "activations",
        ["license_id", "instance_fingerprint"],
        unique=True,
        sqlite_where=sa.text("freed_at IS NULL"),
        postgresql_where=sa.text("freed_at IS NULL"),
    )
    op.create_table(
        "rate_limits",
        sa.Column("address", sa.String(128), primary_key=True),
        sa.Column("window_start", sa.BigInteger, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rate_limits")
    op.drop_table("activations")
    op.drop_table("licenses")
