"""``trials``: when the vendor first saw each instance on trial. A new table:
every existing row stays as it is.

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
        "trials",
        sa.Column("instance_fingerprint", sa.String(64), primary_key=True),
        sa.Column("started_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("trials")
