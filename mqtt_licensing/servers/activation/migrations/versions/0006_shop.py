"""Once the store's tables (orders, Stripe events, contacts, portal codes and sessions, frees,
reminders); they are the store's own schema now (servers/shop/migrations, version table
``alembic_version_shop``), which takes over a database whose tables this revision made.

A new database gets nothing here, so the activation schema stays the activation server's
tables only; an existing one keeps its tables and rows for the store.

Revision ID: 0006
Revises: 0005
"""

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
