"""Statements run on the driver's cursor (servers/_prepared.py) return what SQLAlchemy returns,
on SQLite and PostgreSQL: the same rows, the same Python values (JSON decoded, bytes as bytes),
and an UPDATE's row count."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from mqtt_licensing.servers._prepared import Prepared
from mqtt_licensing.servers.activation.service import ActivationService
from tests.servers.activation.conftest import Instance


def test_prepared_rows_are_sqlalchemys(tmp_path: Path, database_url: str | None) -> None:
    from mqtt_licensing.servers.activation.schema import activations, licenses

    service = ActivationService.open(tmp_path / "vendor", database_url=database_url)
    try:
        lic, key = service.issue_license(features=["mqtt_server", "iot_bridge_snowflake"], max_activations=2)
        act_id = service.activate(key, Instance().activate(key)).activation_id
        by_id = {
            "license": (sa.select(licenses).where(licenses.c.id == sa.bindparam("b_id")), lic["id"]),
            "locked": (sa.select(licenses).where(licenses.c.id == sa.bindparam("b_id")).with_for_update(), lic["id"]),
            "activation": (sa.select(activations).where(activations.c.id == sa.bindparam("b_id")), act_id),
        }
        with service.store.transaction() as tx:
            for name, (query, row_id) in by_id.items():
                expected = dict(tx.conn.execute(query, {"b_id": row_id}).one()._mapping)
                got = Prepared(query).first(tx.conn, {"b_id": row_id})
                assert got is not None and got == expected, name
                assert {type(v) for v in got.values()} == {type(v) for v in expected.values()}, name
                assert Prepared(query).first(tx.conn, {"b_id": "nope"}) is None
            assert got is not None and isinstance(got["public_key"], bytes)
            touch = Prepared(
                activations.update()
                .where(activations.c.id == sa.bindparam("b_id"), activations.c.freed_at.is_(None))
                .values(last_heartbeat_at=sa.bindparam("b_now"))
            )
            assert touch.rowcount(tx.conn, {"b_id": act_id, "b_now": 123}) == 1
            assert touch.rowcount(tx.conn, {"b_id": "nope", "b_now": 123}) == 0
            assert tx.get_activation(act_id).last_heartbeat_at == 123  # type: ignore[union-attr]
            assert set(tx.get_license(lic["id"]).features) == {"mqtt_server", "iot_bridge_snowflake"}  # type: ignore[union-attr]
            assert tx.remember_nonce("s", "n1", 1) and not tx.remember_nonce("s", "n1", 1)
    finally:
        service.close()
