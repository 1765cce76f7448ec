"""Metering: usage records as instances sent them, each (instance, sequence) once;
``licenses.metering`` (best_effort | required).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_records",
        sa.Column("instance_fingerprint", sa.String(64), primary_key=True),
        sa.Column("sequence", sa.BigInteger, primary_key=True),
        sa.Column("license_id", sa.String(40), nullable=False),
        sa.Column("activation_id", sa.String(40), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("period_start", sa.BigInteger, nullable=False),
        sa.Column("period_end", sa.BigInteger, nullable=False),
        sa.Column("messages", sa.BigInteger, nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("client_seconds", sa.BigInteger, nullable=False),
        sa.Column("received_at", sa.BigInteger, nullable=False),
        sa.Column("via", sa.String(16), nullable=False),
    )
    op.create_index("ix_usage_license_day", "usage_records", ["license_id", "day"])
    op.create_table(
        "billing_reports",
        sa.Column("license_id", sa.String(40), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("unit", sa.String(16), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
        sa.Column("idempotency_key", sa.String(64), nullable=False),
        sa.Column("reported_at", sa.BigInteger, nullable=False),
    )
    with op.batch_alter_table("licenses") as batch:
        batch.add_column(sa.Column("metering", sa.String(16), nullable=False, server_default="best_effort"))


def downgrade() -> None:
    op.drop_table("billing_reports")
    with op.batch_alter_table("licenses") as batch:
        batch.drop_column("metering")
    op.drop_table("usage_records")
