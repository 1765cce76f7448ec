"""Alembic scripts of the store's schema (run by :func:`mqtt_licensing.servers._db.migrate`)."""
