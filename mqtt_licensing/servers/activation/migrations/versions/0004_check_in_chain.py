"""Clone detection: each online activation's check-in chain (the secret the next
check-in presents, and the previous one, accepted once more in case an answer was lost), when a
clone was first seen and how often; each license's clone policy (``flag`` or ``suspend``).
Columns only added, with defaults: every existing row stays, its chain starts at its next check-in.

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
    with op.batch_alter_table("activations") as batch:
        batch.add_column(sa.Column("chain", sa.String(64), nullable=True))
        batch.add_column(sa.Column("chain_prev", sa.String(64), nullable=True))
        batch.add_column(sa.Column("cloned_at", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("clone_count", sa.Integer, nullable=False, server_default="0"))
    with op.batch_alter_table("licenses") as batch:
        batch.add_column(sa.Column("clone_policy", sa.String(16), nullable=False, server_default="flag"))


def downgrade() -> None:
    with op.batch_alter_table("licenses") as batch:
        batch.drop_column("clone_policy")
    with op.batch_alter_table("activations") as batch:
        for name in ("clone_count", "cloned_at", "chain_prev", "chain"):
            batch.drop_column(name)
