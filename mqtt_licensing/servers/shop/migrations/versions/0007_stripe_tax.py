"""Stripe Tax: the order's tax calculation (computed before payment) and the tax transaction
recorded from it once the order is paid; and the buyer's purchase order number of an order paid
by invoice (printed on Stripe's invoice).

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
    with op.batch_alter_table("shop_orders") as batch:
        batch.add_column(sa.Column("tax_calculation", sa.String(64), nullable=True))
        batch.add_column(sa.Column("tax_transaction", sa.String(64), nullable=True))
        batch.add_column(sa.Column("po_number", sa.String(40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("shop_orders") as batch:
        batch.drop_column("po_number")
        batch.drop_column("tax_transaction")
        batch.drop_column("tax_calculation")
