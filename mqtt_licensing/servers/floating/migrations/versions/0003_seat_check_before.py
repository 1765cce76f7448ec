"""``pool.seat_check_before``: leases issued before this time re-check their place among the
pool's seats on renewal (a certificate with fewer seats than leases was installed then); NULL when
every lease fits, so a renewal needs no count over all leases.

A pool upgraded from 0002 gets "now": its leases are checked as before until they are renewed
under a certificate installed later.

Revision ID: 0003
Revises: 0002
"""

import time

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pool") as batch:
        batch.add_column(sa.Column("seat_check_before", sa.BigInteger, nullable=True))
    op.execute(
        sa.text("UPDATE pool SET seat_check_before = :now WHERE certificate IS NOT NULL").bindparams(
            now=int(time.time()) + 1
        )
    )


def downgrade() -> None:
    with op.batch_alter_table("pool") as batch:
        batch.drop_column("seat_check_before")
