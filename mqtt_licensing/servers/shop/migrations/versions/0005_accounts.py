"""The portal by account: sign-in codes and links per e-mail address, sessions of an address
(not only of one license), license keys kept encrypted (AES-GCM, the secret outside the
database) so a signed-in customer can see a key again, and the log of such events.

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
    op.create_table(
        "shop_account_codes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("client", sa.String(64), nullable=False),
        sa.Column("code_digest", sa.String(64), nullable=False),
        sa.Column("link_digest", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("used", sa.Boolean, nullable=False),
    )
    op.create_index("ix_shop_account_codes_email", "shop_account_codes", ["email", "created_at"])
    op.create_index("ix_shop_account_codes_client", "shop_account_codes", ["client", "created_at"])
    op.create_index("uq_shop_account_codes_link", "shop_account_codes", ["link_digest"], unique=True)
    op.create_table(
        "shop_license_keys",
        sa.Column("license_id", sa.String(40), primary_key=True),
        sa.Column("format", sa.Integer, nullable=False),
        sa.Column("nonce", sa.LargeBinary(12), nullable=False),
        sa.Column("sealed", sa.LargeBinary(256), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "shop_portal_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("license_id", sa.String(40), nullable=False),
        sa.Column("order_id", sa.String(48), nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(254), nullable=False),
        sa.Column("client", sa.String(64), nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_shop_portal_events_license", "shop_portal_events", ["license_id", "at"])
    with op.batch_alter_table("shop_portal_sessions") as batch:
        batch.add_column(sa.Column("email", sa.String(254), nullable=True))
        batch.alter_column("license_id", existing_type=sa.String(40), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM shop_portal_sessions WHERE license_id IS NULL")
    with op.batch_alter_table("shop_portal_sessions") as batch:
        batch.alter_column("license_id", existing_type=sa.String(40), nullable=False)
        batch.drop_column("email")
    op.drop_table("shop_portal_events")
    op.drop_table("shop_license_keys")
    op.drop_table("shop_account_codes")
