"""The catalogue's rows: the built-in three to start with, new features, retirement, templates."""

from pathlib import Path

import pytest

from mqtt_licensing.core.errors import LicensingError
from mqtt_licensing.core.features import BUILTIN, define
from mqtt_licensing.servers.activation import catalogue
from mqtt_licensing.servers.activation.service import ActivationService


@pytest.fixture
def service(tmp_path: Path):
    svc = ActivationService.open(tmp_path)
    yield svc
    svc.close()


def test_a_new_database_holds_the_built_in_features(service):
    with service.store.transaction() as tx:
        rows = catalogue.CatalogueQueries(tx.conn).all_features()
    assert catalogue.table_of(rows) == BUILTIN


def test_a_retired_feature_is_not_sold_but_stays_valid_where_granted(service):
    sparkplug = define(
        name="sparkplug_b", title="Sparkplug B", kind="perpetual", gates="class", requires=["mqtt_server"]
    )
    with service.store.transaction() as tx:
        queries = catalogue.CatalogueQueries(tx.conn)
        queries.put_feature(sparkplug, 100, new=True)
        queries.retire_feature("sparkplug_b", 200)
        rows = queries.all_features()
    assert rows["sparkplug_b"].retired_at == 200
    with pytest.raises(LicensingError, match="retired"):
        catalogue.check_new_license(("mqtt_server", "sparkplug_b"), rows)
    catalogue.check_new_license(("mqtt_server", "sparkplug_b"), rows, keep=("sparkplug_b",))
    assert [d["name"] for d in catalogue.definitions(("mqtt_server", "sparkplug_b"), rows)] == [
        "mqtt_server",
        "sparkplug_b",
    ]
    with pytest.raises(LicensingError, match="requires mqtt_server"):
        catalogue.check_new_license(("mqtt_server_support",), rows)


def test_an_update_is_checked_as_a_whole():
    bridge = BUILTIN["iot_bridge_snowflake"]
    assert catalogue.updated(bridge, {"title": "Snowflake Bridge"}).title == "Snowflake Bridge"
    with pytest.raises(LicensingError, match="unit"):
        catalogue.updated(BUILTIN["mqtt_server"], {"kind": "metered"})


def test_templates_keep_their_terms(service):
    terms = catalogue.template_terms({"features": ["mqtt_server"], "max_connections": 100, "valid_days": None})
    with service.store.transaction() as tx:
        queries = catalogue.CatalogueQueries(tx.conn)
        queries.put_template(catalogue.Template("enterprise", terms), 1, new=True)
        assert queries.all_templates()["enterprise"].terms == {"features": ["mqtt_server"], "max_connections": 100}
    with pytest.raises(LicensingError, match="no term 'colour'"):
        catalogue.template_terms({"colour": "blue"})
