"""The store's own schema (``alembic_version_shop``) in the activation server's database.

A database made while the store's tables were the activation schema's migration 0006 keeps every
row: the store's schema takes the tables over at its revision 0001. A new database gets the store's
tables from the store's schema only, and both schemas match the code. The store reaches the
activation server only through ``ActivationService``."""

from __future__ import annotations

import ast
import sqlite3
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from mqtt_licensing.servers._db import Schema, create_db_engine, sqlite_url
from mqtt_licensing.servers.activation import schema as activation_schema
from mqtt_licensing.servers.activation.service import DB_FILE, ActivationService
from mqtt_licensing.servers.shop import schema as shop_schema
from mqtt_licensing.servers.shop.app import Shop
from tests.servers.test_migrations import _drift, _revision

# What the activation schema's migration 0006 made on SQLite (frozen: that migration makes nothing now).
SHOP_DDL_FROM_ACTIVATION_0006 = """
CREATE TABLE shop_orders (
    id VARCHAR(48) NOT NULL, kind VARCHAR(16) NOT NULL, state VARCHAR(16) NOT NULL, email VARCHAR(254) NOT NULL,
    license_id VARCHAR(40), lines JSON NOT NULL, amount BIGINT NOT NULL, currency VARCHAR(3) NOT NULL,
    stripe_customer VARCHAR(64), stripe_payment_intent VARCHAR(64), stripe_subscription VARCHAR(64),
    support_until BIGINT, pending_key VARCHAR(64), claimed_until BIGINT, attempts INTEGER NOT NULL,
    last_error VARCHAR(300), created_at BIGINT NOT NULL, paid_at BIGINT, fulfilled_at BIGINT,
    PRIMARY KEY (id), UNIQUE (stripe_payment_intent)
);
CREATE INDEX ix_shop_orders_state ON shop_orders (state);
CREATE TABLE shop_webhook_events (
    id VARCHAR(128) NOT NULL, type VARCHAR(64) NOT NULL, received_at BIGINT NOT NULL, PRIMARY KEY (id)
);
CREATE TABLE shop_contacts (
    license_id VARCHAR(40) NOT NULL, email VARCHAR(254) NOT NULL, created_at BIGINT NOT NULL, PRIMARY KEY (license_id)
);
CREATE TABLE shop_portal_codes (
    id INTEGER NOT NULL, license_id VARCHAR(40) NOT NULL, code_digest VARCHAR(64) NOT NULL,
    created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL, attempts INTEGER NOT NULL, used BOOLEAN NOT NULL,
    PRIMARY KEY (id)
);
CREATE INDEX ix_shop_portal_codes_license ON shop_portal_codes (license_id, created_at);
CREATE TABLE shop_portal_sessions (
    token_digest VARCHAR(64) NOT NULL, license_id VARCHAR(40) NOT NULL, csrf VARCHAR(64) NOT NULL,
    expires_at BIGINT NOT NULL, PRIMARY KEY (token_digest)
);
CREATE TABLE shop_frees (
    activation_id VARCHAR(40) NOT NULL, license_id VARCHAR(40) NOT NULL, freed_at BIGINT NOT NULL,
    PRIMARY KEY (activation_id)
);
CREATE INDEX ix_shop_frees_license ON shop_frees (license_id, freed_at);
CREATE TABLE shop_reminders (
    license_id VARCHAR(40) NOT NULL, support_until BIGINT NOT NULL, sent_at BIGINT NOT NULL,
    PRIMARY KEY (license_id, support_until)
);
"""

SHOP_PACKAGE = Path(__file__).parents[3] / "mqtt_licensing" / "servers" / "shop"


def _head(schema: Schema) -> str | None:
    return ScriptDirectory(str(schema.migrations)).get_current_head()


def _tables(where: Path | str) -> set[str]:
    engine = create_db_engine(where if isinstance(where, str) else sqlite_url(where.parent, where.name))
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_a_database_whose_store_tables_the_activation_schema_made_keeps_every_row(tmp_path: Path) -> None:
    now = int(time.time())
    service = ActivationService.open(tmp_path)
    lic, _key = service.issue_license(features=["mqtt_server"], support_until=now + 86400)
    service.close()
    with sqlite3.connect(tmp_path / DB_FILE) as db:  # as that database is today: the tables, no shop version
        db.executescript(SHOP_DDL_FROM_ACTIVATION_0006)
        db.execute(
            "INSERT INTO shop_orders VALUES (?, 'purchase', 'fulfilled', 'ann@example.com', ?, "
            "'[{\"product\": \"server\", \"amount\": 60000}]', 60000, 'usd', 'cus_1', 'pi_1', NULL, ?, NULL, NULL, "
            "0, NULL, ?, ?, ?)",
            ("ord_old", lic["id"], now + 86400, now - 60, now - 50, now - 40),
        )
        db.execute("INSERT INTO shop_contacts VALUES (?, 'ann@example.com', ?)", (lic["id"], now))
        db.execute("INSERT INTO shop_webhook_events VALUES ('evt_old', 'payment_intent.succeeded', ?)", (now,))
        db.execute("INSERT INTO shop_reminders VALUES (?, ?, ?)", (lic["id"], now + 86400, now))
        db.execute("INSERT INTO shop_frees VALUES ('act_old', ?, ?)", (lic["id"], now))
    assert _revision(tmp_path / DB_FILE, shop_schema.SCHEMA) is None

    service = ActivationService.open(tmp_path)
    store = Shop.store_of(service)
    try:
        with store.transaction() as tx:
            order = tx.get_order("ord_old")
            assert order is not None and order.license_id == lic["id"] and order.amount == 60000
            assert order.lines == [{"product": "server", "amount": 60000}] and order.state == "fulfilled"
            assert order.number == 1  # numbered by the store's migration 0002, oldest first
            assert tx.contact(lic["id"]) == "ann@example.com"
            assert tx.claim_event("evt_old", "payment_intent.succeeded", now) is False  # still applied once
            assert tx.reminded(lic["id"], now + 86400)
            assert tx.count_frees_since(lic["id"], now - 1) == 1
        assert service.get_license(lic["id"])["features"] == ["mqtt_server"]
    finally:
        store.close()
        service.close()
    db_path = tmp_path / DB_FILE
    assert _revision(db_path, shop_schema.SCHEMA) == _head(shop_schema.SCHEMA)
    assert _revision(db_path, activation_schema.SCHEMA) == _head(activation_schema.SCHEMA)
    assert _drift(db_path, shop_schema.metadata, shop_schema.SCHEMA) == []
    assert _drift(db_path, activation_schema.metadata, activation_schema.SCHEMA) == []


def test_a_new_database_gets_the_store_tables_from_the_store_schema_only(
    tmp_path: Path, database_url: str | None
) -> None:
    service = ActivationService.open(tmp_path, database_url=database_url)
    where = database_url or tmp_path / DB_FILE
    try:
        assert not any(name.startswith("shop_") for name in _tables(where))  # the activation schema alone
        Shop.store_of(service, database_url=database_url).close()
        Shop.store_of(service, database_url=database_url).close()  # opening again finds nothing to do
    finally:
        service.close()
    assert set(shop_schema.metadata.tables) <= _tables(where)
    assert _revision(where, shop_schema.SCHEMA) == _head(shop_schema.SCHEMA)
    assert _drift(where, shop_schema.metadata, shop_schema.SCHEMA) == []
    assert _drift(where, activation_schema.metadata, activation_schema.SCHEMA) == []


@pytest.mark.parametrize("module", sorted(p.name for p in SHOP_PACKAGE.glob("*.py")))
def test_the_store_reaches_the_activation_server_only_through_the_service(module: str) -> None:
    tree = ast.parse((SHOP_PACKAGE / module).read_text())
    imported = {
        node.module or ""
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level >= 2 and (node.module or "").startswith("activation")
    }
    # the service, the values its methods return, and the catalogue's value types
    assert imported <= {"activation.service", "activation.results", "activation.catalogue"}, imported
    reached = {
        f"{ast.unparse(node.value)}.{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in ("store", "ctx", "engine", "admin", "instances")
    }
    assert not {r for r in reached if "service" in r}, reached
