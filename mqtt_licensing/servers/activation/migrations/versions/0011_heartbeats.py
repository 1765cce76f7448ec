"""Heartbeats: a license's heartbeat_interval and release_after (seconds, null = neither), and
an activation's last_heartbeat_at (the server's time of its last heartbeat, or of the last certificate
carrying heartbeat terms; NULL: never told to heartbeat, never released).

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("licenses") as batch:
        batch.add_column(sa.Column("heartbeat_interval", sa.Integer, nullable=True))
        batch.add_column(sa.Column("release_after", sa.Integer, nullable=True))
    with op.batch_alter_table("activations") as batch:
        batch.add_column(sa.Column("last_heartbeat_at", sa.BigInteger, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("activations") as batch:
        batch.drop_column("last_heartbeat_at")
    with op.batch_alter_table("licenses") as batch:
        batch.drop_column("release_after")
        batch.drop_column("heartbeat_interval")
