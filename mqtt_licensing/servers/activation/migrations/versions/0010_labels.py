"""Instance labels: each activation's current label (the name its broker sends, signed, with
every request) and the labels it had before, newest kept (the code caps them per activation).

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("activations") as batch:
        batch.add_column(sa.Column("label", sa.String(64), nullable=True))
    op.create_table(
        "activation_labels",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("activation_id", sa.String(40), nullable=False),
        sa.Column("label", sa.String(64), nullable=False),
        sa.Column("first_seen", sa.BigInteger, nullable=False),
        sa.Index("ix_activation_labels_activation", "activation_id", "id"),
    )


def downgrade() -> None:
    op.drop_table("activation_labels")
    with op.batch_alter_table("activations") as batch:
        batch.drop_column("label")
