"""What happened to an order's money after the sale (refunds, disputes, a cancelled subscription):
one row per Stripe event, recorded with the event and applied to the license by the worker.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "shop_money_events",
        sa.Column("event_id", sa.String(128), primary_key=True),
        sa.Column("order_id", sa.String(48), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=True),
        sa.Column("received_at", sa.BigInteger, nullable=False),
        sa.Column("applied_at", sa.BigInteger, nullable=True),
        sa.Column("outcome", sa.String(200), nullable=True),
        sa.Column("last_error", sa.String(300), nullable=True),
    )
    op.create_index("ix_shop_money_events_order", "shop_money_events", ["order_id", "received_at"])


def downgrade() -> None:
    op.drop_table("shop_money_events")
