"""``request_nonces``: the nonces of recent signed requests, per activation (check-in,
deactivation) and per license key (first contact), so a captured request is accepted once.
A new table: every existing row stays as it is.

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
        "request_nonces",
        sa.Column("scope", sa.String(80), primary_key=True),
        sa.Column("nonce", sa.String(128), primary_key=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_request_nonces_created_at", "request_nonces", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_request_nonces_created_at", table_name="request_nonces")
    op.drop_table("request_nonces")
