"""The store's tables: orders, applied Stripe events, customer addresses, portal codes and
sessions, portal frees, support reminders. The same tables the activation schema's 0006 made
before the store had a schema of its own (a database made then is stamped here, rows kept).

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "shop_orders",
        sa.Column("id", sa.String(48), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("license_id", sa.String(40), nullable=True),
        sa.Column("lines", sa.JSON, nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("stripe_customer", sa.String(64), nullable=True),
        sa.Column("stripe_payment_intent", sa.String(64), nullable=True, unique=True),
        sa.Column("stripe_subscription", sa.String(64), nullable=True),
        sa.Column("support_until", sa.BigInteger, nullable=True),
        sa.Column("pending_key", sa.String(64), nullable=True),
        sa.Column("claimed_until", sa.BigInteger, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.String(300), nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("paid_at", sa.BigInteger, nullable=True),
        sa.Column("fulfilled_at", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_shop_orders_state", "shop_orders", ["state"])
    op.create_table(
        "shop_webhook_events",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("received_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "shop_contacts",
        sa.Column("license_id", sa.String(40), primary_key=True),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "shop_portal_codes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("license_id", sa.String(40), nullable=False),
        sa.Column("code_digest", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("used", sa.Boolean, nullable=False),
    )
    op.create_index("ix_shop_portal_codes_license", "shop_portal_codes", ["license_id", "created_at"])
    op.create_table(
        "shop_portal_sessions",
        sa.Column("token_digest", sa.String(64), primary_key=True),
        sa.Column("license_id", sa.String(40), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "shop_frees",
        sa.Column("activation_id", sa.String(40), primary_key=True),
        sa.Column("license_id", sa.String(40), nullable=False),
        sa.Column("freed_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_shop_frees_license", "shop_frees", ["license_id", "freed_at"])
    op.create_table(
        "shop_reminders",
        sa.Column("license_id", sa.String(40), primary_key=True),
        sa.Column("support_until", sa.BigInteger, primary_key=True),
        sa.Column("sent_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "shop_reminders",
        "shop_frees",
        "shop_portal_sessions",
        "shop_portal_codes",
        "shop_contacts",
        "shop_webhook_events",
        "shop_orders",
    ):
        op.drop_table(table)
