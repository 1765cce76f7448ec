"""Where each trial record came from (a per-source quota bounds what one client can store), and
the usage flags: what the vendor found implausible or conflicting in an instance's usage records.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("trials") as batch:
        batch.add_column(sa.Column("source", sa.String(128), nullable=True))
        batch.create_index("ix_trials_source", ["source"])
    op.create_table(
        "usage_flags",
        sa.Column("instance_fingerprint", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("sequence", sa.BigInteger, primary_key=True),
        sa.Column("license_id", sa.String(40), nullable=False),
        sa.Column("activation_id", sa.String(40), nullable=False),
        sa.Column("detail", sa.String(300), nullable=False),
        sa.Column("flagged_at", sa.BigInteger, nullable=False),
        sa.Index("ix_usage_flags_license", "license_id"),
    )


def downgrade() -> None:
    op.drop_table("usage_flags")
    with op.batch_alter_table("trials") as batch:
        batch.drop_index("ix_trials_source")
        batch.drop_column("source")
