"""Receipts and invoices, and what money does to a license over time: the Stripe Invoice of each
order (its number and links), how the order is paid (card or invoice), the card's last digits,
a provisional license's end, a feature removal scheduled for a subscription's period end; and on
money events, when the change takes effect and who applies it (a lease: one worker, one e-mail).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("shop_orders") as batch:
        batch.add_column(sa.Column("payment", sa.String(16), nullable=False, server_default="card"))
        batch.add_column(sa.Column("card_last4", sa.String(4), nullable=True))
        batch.add_column(sa.Column("stripe_invoice", sa.String(64), nullable=True))
        batch.add_column(sa.Column("invoice_number", sa.String(64), nullable=True))
        batch.add_column(sa.Column("invoice_url", sa.String(500), nullable=True))
        batch.add_column(sa.Column("invoice_pdf", sa.String(500), nullable=True))
        batch.add_column(sa.Column("provisional_until", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("cancel_at", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("invoice_checked_at", sa.BigInteger, nullable=True))
        batch.create_index("ix_shop_orders_invoice", ["stripe_invoice"])
    with op.batch_alter_table("shop_money_events") as batch:
        batch.add_column(sa.Column("effective_at", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("claimed_until", sa.BigInteger, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("shop_money_events") as batch:
        batch.drop_column("claimed_until")
        batch.drop_column("effective_at")
    with op.batch_alter_table("shop_orders") as batch:
        batch.drop_index("ix_shop_orders_invoice")
        for name in ("invoice_checked_at", "cancel_at", "provisional_until", "invoice_pdf", "invoice_url",
                     "invoice_number", "stripe_invoice", "card_last4", "payment"):  # fmt: skip
            batch.drop_column(name)
