"""Alembic environment: run on the connection the server opens (see servers._db.migrate)."""

from mqtt_licensing.servers._db import run_env

run_env()
