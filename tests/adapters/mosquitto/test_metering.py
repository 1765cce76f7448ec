"""Metering through Mosquitto: what the broker sends a metered bridge client is counted in the
plugin, reported to the agent, closed into signed records and shown by the vendor, once; under
`metering: required`, bridges are refused while their usage cannot reach the vendor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers.activation import start_vendor
from tests.helpers.broker import MqttClient, wait_for
from tests.helpers.fakeclock import FakeClock
from tests.helpers.mosquitto import MosquittoHandle

MESSAGES = 2000
BATCH = 250
PAYLOAD = b'{"t": 21.5, "unit": "C", "sensor": "line-4"}'
BRIDGE_CLASS = {"snowflake_bridge": {"features": ["iot_bridge_snowflake"], "client_id_prefixes": ["snowflake-"]}}


def vendor_usage(vendor, license_id: str) -> dict[str, int]:
    days = vendor.service.usage_by_day(license_id)["days"]
    return {k: sum(d[k] for d in days) for k in ("messages", "bytes", "records")}


@pytest.mark.timeout(120)
def test_messages_to_a_bridge_are_reported_exactly_once(tmp_path: Path, plugin: Path, vendor) -> None:
    key = vendor.issue(features=["mqtt_server", "iot_bridge_snowflake"])
    license_id = vendor.license_id(key)
    with MosquittoHandle(
        tmp_path / "b",
        plugin,
        vendor=vendor,
        client_classes=BRIDGE_CLASS,
        usage_interval=0.5,
        usage_report_interval=0.5,
    ) as broker:
        with broker.admin() as c:
            c.request("activate", {"license_key": key})
        with (
            MqttClient(broker.port, client_id="snowflake-1") as bridge,
            MqttClient(broker.port, client_id="dashboard-1") as dashboard,
            MqttClient(broker.port, client_id="plc-1") as plc,
        ):
            for client in (bridge, dashboard, plc):
                assert client.connect() == 0
            assert bridge.subscribe("plant/#", qos=1) == 1
            assert dashboard.subscribe("plant/#", qos=1) == 1  # not metered: must not count
            # In batches: Mosquitto queues at most max_queued_messages (1000) per slow subscriber and
            # drops QoS 1 messages past that, so a loaded machine would lose some for the test's sake.
            for start in range(0, MESSAGES, BATCH):
                for n in range(start, start + BATCH):
                    plc.client.publish(f"plant/line4/{n % 7}", PAYLOAD, qos=1)
                done = start + BATCH
                wait_for(lambda d=done: len(bridge.messages) >= d, timeout=60, message=f"bridge got {done}")
                wait_for(lambda d=done: len(dashboard.messages) >= d, timeout=60, message=f"dashboard got {done}")
        wait_for(lambda: vendor_usage(vendor, license_id)["messages"] >= MESSAGES, timeout=60)
        usage = vendor_usage(vendor, license_id)
        assert usage["messages"] == MESSAGES and usage["bytes"] == MESSAGES * len(PAYLOAD)


@pytest.mark.timeout(90)
def test_required_refuses_bridges_after_the_grace(tmp_path: Path, plugin: Path) -> None:
    grace = 600
    ticking: dict[str, Any] = {
        "tick_interval": 3600,
        "usage_interval": 60,
        "usage_report_interval": 60,
        "metering_grace": grace,
    }
    clock = FakeClock()
    with (
        start_vendor(tmp_path / "vendor", clock=clock.seconds) as vendor,
        MosquittoHandle(tmp_path / "b", plugin, vendor=vendor, client_classes=BRIDGE_CLASS, **ticking) as broker,
    ):
        key = vendor.issue(features=["mqtt_server", "iot_bridge_snowflake"], metering="required")
        broker.agent.clock = clock
        with broker.admin() as c:
            assert c.request("activate", {"license_key": key})["status"]["state"] == "active"
        vendor.stop()
        with (
            MqttClient(broker.port, client_id="snowflake-a") as bridge,
            MqttClient(broker.port, client_id="plc") as plc,
        ):
            assert bridge.connect() == 0 and plc.connect() == 0
            assert bridge.subscribe("plant/#") == 1
            plc.publish("plant/x", b"1")
            wait_for(lambda: len(bridge.messages) == 1, message="delivered")
            wait_for(lambda: broker.agent.metering.meter.messages == 1, message="counted in the plugin")
        clock.advance(61)
        broker.call(broker.agent.tick())  # the interval closes into a record; its report fails
        assert broker.agent.metering.ledger.pending_count > 0
        assert connack(broker.port, "snowflake-b") == 0  # within the grace
        clock.advance(grace)
        wait_for(lambda: connack(broker.port, "snowflake-c") == 5, message="metered clients refused")
        assert connack(broker.port, "dashboard") == 0  # only metered clients are refused
        vendor.start()
        clock.advance(61)
        broker.call(broker.agent.tick())  # the next report reaches the vendor
        assert broker.agent.metering.ledger.pending_count == 0
        wait_for(lambda: connack(broker.port, "snowflake-d") == 0, message="admitted again")


def connack(port: int, client_id: str) -> int:
    with MqttClient(port, client_id=client_id) as client:
        return client.connect()
