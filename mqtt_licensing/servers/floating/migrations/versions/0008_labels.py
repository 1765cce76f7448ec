"""Instance labels: each lease's label (the name its broker sends, signed, with every lease
request), and the labels each instance had, newest kept (the code caps them per instance). The
history is per instance fingerprint, not per lease: a lease ends, the broker comes back.

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
    with op.batch_alter_table("leases") as batch:
        batch.add_column(sa.Column("label", sa.String(64), nullable=True))
    op.create_table(
        "instance_labels",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("instance_fingerprint", sa.String(64), nullable=False),
        sa.Column("label", sa.String(64), nullable=False),
        sa.Column("first_seen", sa.BigInteger, nullable=False),
        sa.Index("ix_instance_labels_instance", "instance_fingerprint", "id"),
    )


def downgrade() -> None:
    op.drop_table("instance_labels")
    with op.batch_alter_table("leases") as batch:
        batch.drop_column("label")
