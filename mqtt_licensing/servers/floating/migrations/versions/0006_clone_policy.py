"""The pool's clone policy: ``pool.clone_policy`` (NULL = ``flag``, as before), and the
instances suspended for renewing one lease from two copies (``suspend``): refused with a signed
``cloned`` verdict until ``floating allow --unsuspend``. Only added: nothing existing changes.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pool") as batch:
        batch.add_column(sa.Column("clone_policy", sa.String(16), nullable=True))
    op.create_table(
        "suspended_instances",
        sa.Column("fingerprint", sa.String(64), primary_key=True),
        sa.Column("lease_id", sa.String(64), nullable=False),
        sa.Column("suspended_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("suspended_instances")
    with op.batch_alter_table("pool") as batch:
        batch.drop_column("clone_policy")
