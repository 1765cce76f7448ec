"""``leases.features`` becomes a JSON column like every other JSON list (the text it held is
already JSON, so rows keep their value).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("leases") as batch:
        batch.alter_column(
            "features", existing_type=sa.Text, type_=sa.JSON, existing_nullable=False, postgresql_using="features::json"
        )


def downgrade() -> None:
    with op.batch_alter_table("leases") as batch:
        batch.alter_column("features", existing_type=sa.JSON, type_=sa.Text, existing_nullable=False)
