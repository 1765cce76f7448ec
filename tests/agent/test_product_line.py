"""A product line the broker's code never heard of (issue 21), end to end with no code change:
the vendor defines sparkplug_b and a metered iot_bridge_kafka and an edition; the broker gates,
meters and titles them from the certificate's signed definitions alone."""

from __future__ import annotations

import logging
from typing import Any

from tests.helpers.broker import MqttClient, start_broker, wait_for

CLASSES = {
    "sparkplug_b": {"client_id_prefixes": ["spb-"], "usernames": []},  # a class named after its feature
    "iot_bridge_kafka": {"client_id_prefixes": ["kafka-"], "usernames": []},
}
PAYLOAD = b'{"v": 1}'


def define_product_line(vendor) -> None:
    catalogue = vendor.service.catalogue
    catalogue.add_feature(
        name="sparkplug_b", title="Sparkplug B Module", kind="perpetual", gates="class", requires=["mqtt_server"]
    )
    catalogue.add_feature(
        name="iot_bridge_kafka", title="IoT Bridge for Kafka", kind="metered", unit="messages", gates="class"
    )
    catalogue.add_template(
        "enterprise", {"features": ["mqtt_server", "sparkplug_b", "iot_bridge_kafka"], "max_connections": 50}
    )


def request(broker, operation: str, fields: dict[str, Any] | None = None) -> dict[str, Any]:
    with broker.admin() as c:
        return c.request(operation, fields or {})


def test_new_features_gate_meter_and_title_on_a_broker_that_never_heard_of_them(tmp_path, vendor, caplog):
    define_product_line(vendor)
    _lic, key = vendor.service.issue_license(template="enterprise")
    license_id = vendor.license_id(key)
    with start_broker(
        tmp_path / "s", vendor=vendor, client_classes=CLASSES, usage_interval=0.5, usage_report_interval=0.5
    ) as broker:
        status = request(broker, "activate", {"license_key": key})["status"]
        titles = {d["name"]: d["title"] for d in status["definitions"]}
        assert titles["sparkplug_b"] == "Sparkplug B Module" and titles["iot_bridge_kafka"] == "IoT Bridge for Kafka"
        assert status["serves_clients"] is True

        with MqttClient(broker.port, client_id="spb-edge-1") as edge:
            assert edge.connect() == 0  # the license has sparkplug_b
        # metering follows the signed kind: kafka clients count, others do not
        with (
            MqttClient(broker.port, client_id="kafka-1") as bridge,
            MqttClient(broker.port, client_id="plc-1") as plc,
        ):
            assert bridge.connect() == 0 and plc.connect() == 0
            assert bridge.subscribe("plant/#", qos=1) == 1
            for n in range(40):
                plc.client.publish(f"plant/{n}", PAYLOAD, qos=1)
            wait_for(lambda: len(bridge.messages) >= 40, message="bridge messages")
        wait_for(
            lambda: (
                sum(d["messages"] for d in vendor.service.usage_by_day(license_id)["days"]) >= 40
                and broker.agent.metering.ledger.pending_count == 0
            ),
            message="kafka usage at the vendor",
        )
        assert sum(d["messages"] for d in vendor.service.usage_by_day(license_id)["days"]) == 40

        # a new title reaches the broker on reactivate
        vendor.service.catalogue.update_feature("sparkplug_b", title="Sparkplug B (Edge)")
        status = request(broker, "reactivate")["status"]
        assert {d["name"]: d["title"] for d in status["definitions"]}["sparkplug_b"] == "Sparkplug B (Edge)"

        # without the feature, its class is refused and the broker says why in its log
        vendor.service.update_license(license_id, {"remove_features": ["sparkplug_b"]})
        with caplog.at_level(logging.WARNING, logger="mqtt_licensing"):
            request(broker, "reactivate")
        assert any("client class sparkplug_b needs feature(s) sparkplug_b" in r.getMessage() for r in caplog.records)
        with MqttClient(broker.port, client_id="spb-edge-2") as edge:
            assert edge.connect() == 5
        with MqttClient(broker.port, client_id="plain-1") as plain:
            assert plain.connect() == 0


def test_a_license_without_a_serving_feature_raises_no_serving_feature(tmp_path, vendor):
    vendor.service.catalogue.add_feature(name="ha_option", title="High Availability", kind="term")
    key = vendor.issue(features=["ha_option"])
    with start_broker(tmp_path / "s", vendor=vendor) as broker:
        status = request(broker, "activate", {"license_key": key})["status"]
        assert status["state"] == "active" and status["serves_clients"] is False
        wait_for(lambda: "no_serving_feature" in {a["code"] for a in broker.status()["alarms"]})
        with MqttClient(broker.port, client_id="plain-1") as plain:
            assert plain.connect() == 5
