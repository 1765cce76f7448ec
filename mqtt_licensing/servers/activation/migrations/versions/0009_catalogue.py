"""The vendor's product line as data: feature definitions and license templates. A new or
upgraded database starts with the three built-in features, so every license keeps working.

Revision ID: 0009
Revises: 0008
"""

import time

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# The built-in definitions as they were when this migration was written (a migration never
# imports today's code: it must build the same rows whatever the code becomes).
BUILTIN: tuple[tuple[str, str, str, str, str | None, list[str]], ...] = (
    ("mqtt_server", "MQTT Server", "perpetual", "all", None, []),
    ("mqtt_server_support", "MQTT Server Support", "term", "none", None, ["mqtt_server"]),
    ("iot_bridge_snowflake", "IoT Bridge for Snowflake", "metered", "class", "messages", ["mqtt_server"]),
)


def upgrade() -> None:
    features = op.create_table(
        "features",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("title", sa.String(80), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("gates", sa.String(8), nullable=False),
        sa.Column("unit", sa.String(16), nullable=True),
        sa.Column("requires", sa.JSON, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("retired_at", sa.BigInteger, nullable=True),
    )
    op.create_table(
        "templates",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("terms", sa.JSON, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    now = int(time.time())
    op.bulk_insert(
        features,
        [
            {
                "name": name,
                "title": title,
                "kind": kind,
                "gates": gates,
                "unit": unit,
                "requires": requires,
                "created_at": now,
                "updated_at": now,
                "retired_at": None,
            }
            for name, title, kind, gates, unit, requires in BUILTIN
        ],
    )


def downgrade() -> None:
    op.drop_table("templates")
    op.drop_table("features")
