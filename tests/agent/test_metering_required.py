"""`metering: required` (issue 16): when usage cannot reach the vendor for longer than the grace
period, metered (bridge) clients are refused - after an alarm event at half the grace - while
other clients keep connecting; `best_effort` (the default) never refuses for metering."""

from __future__ import annotations

import json
import time

import pytest

from tests.helpers.broker import ADMIN, ADMIN_PASSWORD, MqttClient, start_broker, wait_for

BRIDGE_CLASS = {"snowflake_bridge": {"features": ["iot_bridge_snowflake"], "client_id_prefixes": ["snowflake-"]}}
GRACE = 3


def connack(port: int, client_id: str) -> int:
    with MqttClient(port, client_id=client_id) as client:
        return client.connect()


def bridge_usage(broker) -> None:
    """Some deliveries to a bridge, closed into a record the vendor cannot receive."""
    with MqttClient(broker.port, client_id="snowflake-a") as bridge, MqttClient(broker.port, client_id="plc") as plc:
        assert bridge.connect() == 0 and plc.connect() == 0
        assert bridge.subscribe("plant/#") == 1
        plc.publish("plant/x", b"1")
        wait_for(lambda: len(bridge.messages) == 1, message="delivered")
    wait_for(lambda: broker.agent.metering.ledger.pending_count > 0, message="a record pending")


@pytest.mark.timeout(60)
def test_required_refuses_bridges_after_the_grace_and_alarms_first(tmp_path, vendor) -> None:
    key = vendor.issue(features=["mqtt_server", "iot_bridge_snowflake"], metering="required")
    with start_broker(
        tmp_path / "state",
        vendor=vendor,
        client_classes=BRIDGE_CLASS,
        usage_interval=0.2,
        usage_report_interval=0.2,
        metering_grace=GRACE,
    ) as broker:
        with broker.admin() as c:
            assert c.request("activate", {"license_key": key})["status"]["state"] == "active"
        with MqttClient(broker.port, client_id="ops", username=ADMIN, password=ADMIN_PASSWORD) as ops:
            assert ops.connect() == 0
            ops.subscribe("$license/events")
            vendor.stop()
            bridge_usage(broker)
            alarm = ops.wait_message("$license/events", timeout=20)
            while json.loads(alarm.payload)["type"] != "metering_overdue":
                alarm = ops.wait_message("$license/events", timeout=20, after=ops.messages.index(alarm) + 1)
            assert json.loads(alarm.payload)["refuse_after_seconds"] == GRACE
            assert connack(broker.port, "snowflake-b") == 0  # the alarm comes before any refusal
            wait_for(lambda: connack(broker.port, "snowflake-c") == 5, timeout=20, message="bridge refused")
            assert connack(broker.port, "dashboard") == 0  # only metered clients are refused
            refusals = [json.loads(m.payload) for m in ops.messages if m.topic == "$license/events"]
            assert any(e.get("reason") == "metering_undelivered" for e in refusals)
        vendor.start()
        wait_for(lambda: broker.agent.metering.ledger.pending_count == 0, timeout=20, message="usage delivered")
        assert connack(broker.port, "snowflake-d") == 0


@pytest.mark.timeout(60)
def test_best_effort_never_refuses_for_metering(tmp_path, vendor) -> None:
    key = vendor.issue(features=["mqtt_server", "iot_bridge_snowflake"])
    with start_broker(
        tmp_path / "state", vendor=vendor, client_classes=BRIDGE_CLASS, usage_interval=0.2, metering_grace=1
    ) as broker:
        with broker.admin() as c:
            c.request("activate", {"license_key": key})
        vendor.stop()
        bridge_usage(broker)
        oldest = broker.agent.metering.oldest_pending_start()
        wait_for(lambda: time.time() > oldest + 2, message="past the grace")
        assert connack(broker.port, "snowflake-b") == 0
