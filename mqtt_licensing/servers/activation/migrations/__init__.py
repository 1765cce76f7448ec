"""Alembic scripts of the activation server's schema (run by :func:`mqtt_licensing.servers._db.migrate`)."""
