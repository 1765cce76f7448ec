"""Clone detection per lease: each lease's renewal chain (the secret the next
renewal presents, and the previous one), when a clone was first seen and how often. Columns
only added: every lease keeps its seat, its chain starts at its next renewal.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("leases") as batch:
        batch.add_column(sa.Column("chain", sa.String(64), nullable=True))
        batch.add_column(sa.Column("chain_prev", sa.String(64), nullable=True))
        batch.add_column(sa.Column("cloned_at", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("clone_count", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("leases") as batch:
        for name in ("clone_count", "cloned_at", "chain_prev", "chain"):
            batch.drop_column(name)
