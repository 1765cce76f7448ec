"""Versioned schemas: a database made before versioning is upgraded in place with its rows, the
migrations build exactly the tables the code declares, and a database newer than the code is
refused, untouched.

The "before versioning" databases are made with a frozen copy of the DDL that
``metadata.create_all`` issued on SQLite up to then (no version table)."""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.cli.main import main
from mqtt_licensing.clients.floating import lease_request
from mqtt_licensing.core import labels
from mqtt_licensing.core.documents import Lease
from mqtt_licensing.core.errors import ErrorCode, LicensingError
from mqtt_licensing.core.keys import format_key, key_digest, mask_key
from mqtt_licensing.core.signing import fingerprint, public_bytes
from mqtt_licensing.servers._db import Schema, create_db_engine, current_revision, sqlite_url
from mqtt_licensing.servers.activation import schema as activation_schema
from mqtt_licensing.servers.activation.service import DB_FILE as ACTIVATION_DB
from mqtt_licensing.servers.activation.service import ActivationService
from mqtt_licensing.servers.floating import schema as floating_schema
from mqtt_licensing.servers.floating.service import DB_FILE as FLOATING_DB
from mqtt_licensing.servers.floating.service import FloatingService
from tests.helpers.floating import floating_server_key, make_pool_certificate

ACTIVATION_DDL_BEFORE_VERSIONING = """
CREATE TABLE licenses (
    id VARCHAR(40) NOT NULL, key_digest VARCHAR(64) NOT NULL, key_mask VARCHAR(64) NOT NULL,
    model VARCHAR(16) NOT NULL, features JSON NOT NULL, max_activations INTEGER NOT NULL, seats INTEGER,
    expires_at BIGINT, support_until BIGINT, max_connections INTEGER, status VARCHAR(16) NOT NULL,
    created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, PRIMARY KEY (id), UNIQUE (key_digest)
);
CREATE TABLE rate_limits (
    address VARCHAR(128) NOT NULL, window_start BIGINT NOT NULL, failures INTEGER NOT NULL, PRIMARY KEY (address)
);
CREATE TABLE activations (
    id VARCHAR(40) NOT NULL, license_id VARCHAR(40) NOT NULL, instance_fingerprint VARCHAR(64) NOT NULL,
    public_key BLOB NOT NULL, model VARCHAR(16) NOT NULL, created_at BIGINT NOT NULL, last_check_in_at BIGINT,
    request_nonce VARCHAR(128), request_created_at BIGINT, freed_at BIGINT, freed_reason VARCHAR(32),
    PRIMARY KEY (id), FOREIGN KEY(license_id) REFERENCES licenses (id)
);
CREATE UNIQUE INDEX uq_activations_live ON activations (license_id, instance_fingerprint) WHERE freed_at IS NULL;
CREATE INDEX ix_activations_license ON activations (license_id, freed_at);
"""

FLOATING_DDL_BEFORE_VERSIONING = """
CREATE TABLE pool (
    id INTEGER NOT NULL, certificate BLOB, installed_at BIGINT, vendor_url VARCHAR(2048),
    pending_nonce VARCHAR(128), pending_at BIGINT, deactivated_at BIGINT, deactivated_activation_id VARCHAR(128),
    PRIMARY KEY (id)
);
CREATE TABLE leases (
    lease_id VARCHAR(64) NOT NULL, instance_fingerprint VARCHAR(64) NOT NULL, public_key BLOB NOT NULL,
    features TEXT NOT NULL, issued_at BIGINT NOT NULL, renewed_at BIGINT NOT NULL, expires_at BIGINT NOT NULL,
    PRIMARY KEY (lease_id), UNIQUE (instance_fingerprint)
);
CREATE INDEX ix_leases_expires_at ON leases (expires_at);
CREATE TABLE request_nonces (
    fingerprint VARCHAR(64) NOT NULL, nonce VARCHAR(128) NOT NULL, created_at BIGINT NOT NULL,
    PRIMARY KEY (fingerprint, nonce)
);
CREATE INDEX ix_request_nonces_created_at ON request_nonces (created_at);
"""


def _legacy_db(path: Path, ddl: str, *inserts: tuple[str, tuple[Any, ...]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as db:
        db.executescript(ddl)
        for sql, values in inserts:
            db.execute(sql, values)


def _url(where: Path | str) -> str:
    """A SQLite file, or the URL of another database."""
    return where if isinstance(where, str) else sqlite_url(where.parent, where.name)


def _head(schema: Schema) -> str | None:
    """The newest migration of a schema: what every database the code opens must reach."""
    return ScriptDirectory(str(schema.migrations)).get_current_head()


def _revision(path: Path | str, schema: Schema) -> str | None:
    engine = create_db_engine(_url(path))
    try:
        with engine.connect() as conn:
            return current_revision(conn, schema)
    finally:
        engine.dispose()


def _drift(path: Path | str, metadata: sa.MetaData, schema: Schema) -> list[Any]:
    """What differs between the tables in the database and the ones the code declares."""
    engine = sa.create_engine(_url(path).replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            # A server's database also holds other schemas' tables (each with its own version table).
            def ours(name: str | None, type_: str, _parent: Any) -> bool:
                return type_ != "table" or name in metadata.tables

            context = MigrationContext.configure(
                conn, opts={"version_table": schema.version_table, "include_name": ours}
            )
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def test_an_activation_database_from_before_versioning_keeps_its_rows(tmp_path: Path) -> None:
    now = int(time.time())
    key = format_key(secrets.token_bytes(15))
    instance = Ed25519PrivateKey.generate()
    _legacy_db(
        tmp_path / ACTIVATION_DB,
        ACTIVATION_DDL_BEFORE_VERSIONING,
        (
            "INSERT INTO licenses VALUES "
            "(?, ?, ?, 'online', '[\"mqtt_server\"]', 2, NULL, NULL, NULL, 5, 'active', ?, ?)",
            ("lic_old", key_digest(key), mask_key(key), now, now),
        ),
        (
            "INSERT INTO activations VALUES ('act_old', 'lic_old', ?, ?, 'online', ?, ?, NULL, NULL, NULL, NULL)",
            (fingerprint(instance), public_bytes(instance), now, now),
        ),
    )
    service = ActivationService.open(tmp_path)
    try:
        lic = service.get_license("lic_old")
        assert lic["features"] == ["mqtt_server"] and lic["max_connections"] == 5 and lic["activations_used"] == 1
        assert lic["clone_policy"] == "flag" and lic["activations"][0]["clone_count"] == 0
        assert lic["overage"] == 0.0  # issue 11: an old license admits no more than its cap
        assert [a["id"] for a in lic["activations"]] == ["act_old"]
        # the old activation still works: its instance checks in with the key on record
        request = _signed(instance, labels.KIND_CHECK_IN, activation_id="act_old")
        assert service.check_in(request)
        # and the partial unique index survived: the same instance binds to its live activation
        again = service.activate(key, _signed(instance, labels.KIND_ACTIVATE, key_digest=key_digest(key)))
        assert again.reused is True and again.activation_id == "act_old"
    finally:
        service.close()
    # every migration since: usage, request nonces, the check-in chain, trials, the shop, overage, the catalogue
    assert _revision(tmp_path / ACTIVATION_DB, activation_schema.SCHEMA) == _head(activation_schema.SCHEMA)
    with sqlite3.connect(tmp_path / ACTIVATION_DB) as db:
        names = [row[0] for row in db.execute("SELECT name FROM features ORDER BY name")]
    assert names == ["iot_bridge_snowflake", "mqtt_server", "mqtt_server_support"]  # the built-in catalogue
    assert _drift(tmp_path / ACTIVATION_DB, activation_schema.metadata, activation_schema.SCHEMA) == []


def test_a_floating_database_from_before_versioning_keeps_its_pool_and_leases(tmp_path: Path) -> None:
    now = int(time.time())
    vendor = Ed25519PrivateKey.generate()
    certificate = make_pool_certificate(vendor, floating_server_key(tmp_path), seats=2)
    holder = Ed25519PrivateKey.generate()
    _legacy_db(
        tmp_path / FLOATING_DB,
        FLOATING_DDL_BEFORE_VERSIONING,
        ("INSERT INTO pool (id, certificate, installed_at) VALUES (1, ?, ?)", (certificate, now)),
        (
            "INSERT INTO leases VALUES ('lse_old', ?, ?, '[\"mqtt_server\"]', ?, ?, ?)",
            (fingerprint(holder), public_bytes(holder), now, now, now + 600),
        ),
    )
    service = FloatingService.open(tmp_path, vendor_public_key=vendor.public_key())
    try:
        status = service.status()
        assert status["provisioned"] and status["seats"] == {"total": 2, "used": 1, "free": 1}
        assert [(le["lease_id"], le["features"]) for le in status["leases"]] == [("lse_old", ["mqtt_server"])]
        assert status["leases"][0]["clone_count"] == 0 and status["leases"][0]["cloned_at"] is None
        # the holder renews its old lease (features read back from the migrated JSON column)
        lease = Lease.open(
            service.renew(lease_request(holder, labels.KIND_LEASE_RENEW)), service.signing_key.public_key()
        )
        assert lease.lease_id == "lse_old" and lease.features == ("mqtt_server",)
    finally:
        service.close()
    # 0003 seat check; issue 10: 0004 pool_access, 0005 the lease chain, 0006 the clone policy; issue 16: 0007 the
    # usage outbox. The pool and the lease came through them.
    assert _revision(tmp_path / FLOATING_DB, floating_schema.SCHEMA) == _head(floating_schema.SCHEMA)
    assert _drift(tmp_path / FLOATING_DB, floating_schema.metadata, floating_schema.SCHEMA) == []


@pytest.mark.parametrize("server", ["activation", "floating"])
def test_a_new_database_is_built_by_the_migrations_exactly_as_declared(
    tmp_path: Path, server: str, database_url: str | None
) -> None:
    if server == "activation":
        ActivationService.open(tmp_path, database_url=database_url).close()
        ActivationService.open(tmp_path).close()  # opening again (the URL remembered) finds nothing to do
        where = database_url or tmp_path / ACTIVATION_DB
        assert _drift(where, activation_schema.metadata, activation_schema.SCHEMA) == []
        assert _revision(where, activation_schema.SCHEMA) == _head(activation_schema.SCHEMA)
    else:
        FloatingService.open(tmp_path, database_url=database_url).close()
        FloatingService.open(tmp_path).close()
        where = database_url or tmp_path / FLOATING_DB
        assert _drift(where, floating_schema.metadata, floating_schema.SCHEMA) == []
        assert _revision(where, floating_schema.SCHEMA) == _head(floating_schema.SCHEMA)


@pytest.mark.parametrize("server", ["activation", "floating"])
def test_a_database_newer_than_the_code_is_refused_untouched(tmp_path: Path, server: str, capsys: Any) -> None:
    service_class: Any = ActivationService if server == "activation" else FloatingService
    schema = activation_schema.SCHEMA if server == "activation" else floating_schema.SCHEMA
    db = tmp_path / (ACTIVATION_DB if server == "activation" else FLOATING_DB)
    service_class.open(tmp_path).close()
    with sqlite3.connect(db) as conn:
        conn.execute(f"UPDATE {schema.version_table} SET version_num = '9999'")
        before = conn.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()
    with pytest.raises(LicensingError) as info:
        service_class.open(tmp_path)
    assert info.value.code == ErrorCode.STATE_CORRUPT
    assert "'9999'" in info.value.message and "upgrade mqtt-licensing" in info.value.message
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall() == before
        assert conn.execute(f"SELECT version_num FROM {schema.version_table}").fetchall() == [("9999",)]
    # the CLI says so in one line, without a traceback
    capsys.readouterr()
    argv = ["vendor", "licenses", "--data", str(tmp_path)] if server == "activation" else []
    argv = argv or ["floating", "status", "--data", str(tmp_path)]
    assert main(argv) == 2  # a setup mistake: exit 2
    err = capsys.readouterr().err
    assert err.startswith("error [state_corrupt]") and "upgrade mqtt-licensing" in err and "Traceback" not in err


def _signed(key: Ed25519PrivateKey, kind: str, **fields: Any) -> bytes:
    from mqtt_licensing.core.documents import sign_instance_request

    return sign_instance_request(key, kind=kind, nonce=secrets.token_hex(8), created_at=int(time.time()), **fields)


@pytest.mark.parametrize("server", ["activation", "floating"])
def test_processes_opening_a_new_database_together_migrate_it_once(
    tmp_path: Path, server: str, database_url: str | None
) -> None:
    """Each opener has its own engine, as separate processes do; the migration runs in one
    immediate transaction (SQLite) or under an advisory lock (PostgreSQL), so the others wait and
    then find the schema up to date."""
    service_class: Any = ActivationService if server == "activation" else FloatingService
    service_class.open(tmp_path / "keys").close()  # the key files are made once, beforehand
    for name in ("vendor.key", "floating.key"):
        if (tmp_path / "keys" / name).exists():
            (tmp_path / "data").mkdir(exist_ok=True)
            (tmp_path / "data" / name).write_bytes((tmp_path / "keys" / name).read_bytes())
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def open_once() -> None:
        barrier.wait()
        try:
            service_class.open(tmp_path / "data", database_url=database_url).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_once) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    schema = activation_schema.SCHEMA if server == "activation" else floating_schema.SCHEMA
    db = database_url or tmp_path / "data" / (ACTIVATION_DB if server == "activation" else FLOATING_DB)
    assert _revision(db, schema) == _head(schema)


@pytest.mark.parametrize("server", ["activation", "floating"])
def test_a_postgresql_database_newer_than_the_code_is_refused(tmp_path: Path, server: str, pg_cluster: Any) -> None:
    url = pg_cluster.new_database()
    service_class: Any = ActivationService if server == "activation" else FloatingService
    schema = activation_schema.SCHEMA if server == "activation" else floating_schema.SCHEMA
    service_class.open(tmp_path, database_url=url).close()
    engine = create_db_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"UPDATE {schema.version_table} SET version_num = '9999'"))
        with pytest.raises(LicensingError) as info:
            service_class.open(tmp_path)
        assert info.value.code == ErrorCode.STATE_CORRUPT and "'9999'" in info.value.message
        with engine.connect() as conn:
            assert conn.execute(sa.text(f"SELECT version_num FROM {schema.version_table}")).all() == [("9999",)]
    finally:
        engine.dispose()
