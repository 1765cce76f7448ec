"""Tax on an order: the buyer's country and the tax added at its configured rate, shown before
payment and charged with the order (older orders had none).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("shop_orders") as batch:
        batch.add_column(sa.Column("country", sa.String(2), nullable=True))
        batch.add_column(sa.Column("tax", sa.BigInteger, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("shop_orders") as batch:
        batch.drop_column("tax")
        batch.drop_column("country")
