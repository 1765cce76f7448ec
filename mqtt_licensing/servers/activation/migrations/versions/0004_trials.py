"""``trials`` (issue 10): when the vendor first saw each instance on trial. A new table:
every existing row stays as it is.

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
        "trials",
        sa.Column("instance_fingerprint", sa.String(64), primary_key=True),
        sa.Column("started_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("trials")
