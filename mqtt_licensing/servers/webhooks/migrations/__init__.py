"""Alembic scripts of the webhook tables (run by :func:`mqtt_licensing.servers._db.migrate`)."""
