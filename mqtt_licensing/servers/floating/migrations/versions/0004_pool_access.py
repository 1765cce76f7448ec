"""``pool_access``: who may take a *new* seat. Rows are a join token's digest, an
instance fingerprint or a source network; no row leaves the pool open as before. A new
table: existing rows (the pool, leases) stay as they are.

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
    op.create_table(
        "pool_access",
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("value", sa.String(128), primary_key=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("pool_access")
