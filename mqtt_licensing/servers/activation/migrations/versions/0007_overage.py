"""A license's connection overage: the fraction past max_connections an instance
admits (0 = none, 0.1 = 10 % headroom, at most 1).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("licenses") as batch:
        batch.add_column(sa.Column("overage", sa.Float, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("licenses") as batch:
        batch.drop_column("overage")
