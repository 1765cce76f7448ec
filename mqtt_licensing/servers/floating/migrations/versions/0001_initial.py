"""The floating server's schema as it was before versioning (``metadata.create_all``).

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pool",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("certificate", sa.LargeBinary, nullable=True),
        sa.Column("installed_at", sa.BigInteger, nullable=True),
        sa.Column("vendor_url", sa.String(2048), nullable=True),
        sa.Column("pending_nonce", sa.String(128), nullable=True),
        sa.Column("pending_at", sa.BigInteger, nullable=True),
        sa.Column("deactivated_at", sa.BigInteger, nullable=True),
        sa.Column("deactivated_activation_id", sa.String(128), nullable=True),
    )
    op.create_table(
        "leases",
        sa.Column("lease_id", sa.String(64), primary_key=True),
        sa.Column("instance_fingerprint", sa.String(64), nullable=False, unique=True),
        sa.Column("public_key", sa.LargeBinary, nullable=False),
        sa.Column("features", sa.Text, nullable=False),  # a JSON list written by hand (see 0002)
        sa.Column("issued_at", sa.BigInteger, nullable=False),
        sa.Column("renewed_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_leases_expires_at", "leases", ["expires_at"])
    op.create_table(
        "request_nonces",
        sa.Column("fingerprint", sa.String(64), primary_key=True),
        sa.Column("nonce", sa.String(128), primary_key=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_request_nonces_created_at", "request_nonces", ["created_at"])


def downgrade() -> None:
    op.drop_table("request_nonces")
    op.drop_table("leases")
    op.drop_table("pool")
