"""Alembic scripts of the floating server's schema (run by :func:`mqtt_licensing.servers._db.migrate`)."""
