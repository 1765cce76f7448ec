"""The order of the vendor's activation list (created, then id) as an index, so a page of a
filtered list is read in index order and stops after its rows instead of sorting every
activation (servers/activation/listing.py). Written once per activation, at its insert: no
check-in or heartbeat touches it.

Revision ID: 0012
Revises: 0011
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_activations_created", "activations", ["created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_activations_created", table_name="activations")
