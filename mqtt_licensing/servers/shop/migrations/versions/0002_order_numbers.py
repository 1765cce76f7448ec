"""Order numbers customers can quote (PREFIX-000123): one per order, in the order they were made;
orders made before get theirs here, oldest first.

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
    with op.batch_alter_table("shop_orders") as batch:
        batch.add_column(sa.Column("number", sa.BigInteger, nullable=True))
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id FROM shop_orders ORDER BY created_at, id")).all()
    for number, (order_id,) in enumerate(rows, start=1):
        conn.execute(sa.text("UPDATE shop_orders SET number = :n WHERE id = :id"), {"n": number, "id": order_id})
    op.create_index("uq_shop_orders_number", "shop_orders", ["number"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_shop_orders_number", "shop_orders")
    with op.batch_alter_table("shop_orders") as batch:
        batch.drop_column("number")
