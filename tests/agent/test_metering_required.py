"""`metering: required` (issue 16): when usage cannot reach the vendor for longer than the grace
period, metered (bridge) clients are refused - after an alarm event at half the grace - while
other clients keep connecting; `best_effort` (the default) never refuses for metering."""

from __future__ import annotations

import json

import pytest

from tests.helpers.activation import start_vendor
from tests.helpers.broker import ADMIN, ADMIN_PASSWORD, MqttClient, start_broker, wait_for
from tests.helpers.fakeclock import FakeClock

BRIDGE_CLASS = {"snowflake_bridge": {"features": ["iot_bridge_snowflake"], "client_id_prefixes": ["snowflake-"]}}
GRACE = 600  # seconds of the fake clock
# The agent's own loop sleeps after its first step (tick_interval): the test moves the clock and ticks.
TICKING = {"tick_interval": 3600, "usage_interval": 60, "usage_report_interval": 60, "metering_grace": GRACE}


def tick(broker, clock: FakeClock, seconds: float) -> None:
    clock.advance(seconds)
    broker.call(broker.agent.tick())


def connack(port: int, client_id: str) -> int:
    with MqttClient(port, client_id=client_id) as client:
        return client.connect()


def bridge_usage(broker, clock: FakeClock) -> None:
    """Some deliveries to a bridge, closed into a record the vendor cannot receive."""
    with MqttClient(broker.port, client_id="snowflake-a") as bridge, MqttClient(broker.port, client_id="plc") as plc:
        assert bridge.connect() == 0 and plc.connect() == 0
        assert bridge.subscribe("plant/#") == 1
        plc.publish("plant/x", b"1")
        wait_for(lambda: len(bridge.messages) == 1, message="delivered")
    tick(broker, clock, 61)  # the interval closes into a record; its report fails
    assert broker.agent.metering.ledger.pending_count > 0


@pytest.mark.timeout(60)
def test_required_refuses_bridges_after_the_grace_and_alarms_first(tmp_path) -> None:
    clock = FakeClock()  # the vendor's too: it refuses requests from the far future
    with (
        start_vendor(tmp_path / "vendor", clock=clock.seconds) as vendor,
        start_broker(tmp_path / "state", vendor=vendor, client_classes=BRIDGE_CLASS, **TICKING) as broker,
    ):
        key = vendor.issue(features=["mqtt_server", "iot_bridge_snowflake"], metering="required")
        broker.agent.clock = clock
        with broker.admin() as c:
            assert c.request("activate", {"license_key": key})["status"]["state"] == "active"
        with MqttClient(broker.port, client_id="ops", username=ADMIN, password=ADMIN_PASSWORD) as ops:
            assert ops.connect() == 0
            ops.subscribe("$license/events")
            vendor.stop()
            bridge_usage(broker, clock)
            tick(broker, clock, GRACE / 2)  # overdue by half the grace: the alarm
            alarm = ops.wait_message("$license/events", timeout=20)
            while json.loads(alarm.payload)["type"] != "metering_overdue":
                alarm = ops.wait_message("$license/events", timeout=20, after=ops.messages.index(alarm) + 1)
            assert json.loads(alarm.payload)["refuse_after_seconds"] == GRACE
            assert connack(broker.port, "snowflake-b") == 0  # the alarm comes before any refusal
            clock.advance(GRACE / 2)  # past the grace: the gate reads the time at each CONNECT
            assert connack(broker.port, "snowflake-c") == 5
            assert connack(broker.port, "dashboard") == 0  # only metered clients are refused

            def refused_for_metering() -> bool:
                events = [json.loads(m.payload) for m in ops.messages if m.topic == "$license/events"]
                return any(e.get("reason") == "metering_undelivered" for e in events)

            wait_for(refused_for_metering, message="the refusal announced")
        vendor.start()
        tick(broker, clock, 61)  # the next report reaches the vendor
        assert broker.agent.metering.ledger.pending_count == 0
        assert connack(broker.port, "snowflake-d") == 0


@pytest.mark.timeout(60)
def test_best_effort_never_refuses_for_metering(tmp_path, vendor) -> None:
    key = vendor.issue(features=["mqtt_server", "iot_bridge_snowflake"])
    clock = FakeClock()
    with start_broker(tmp_path / "state", vendor=vendor, client_classes=BRIDGE_CLASS, **TICKING) as broker:
        broker.agent.clock = clock
        with broker.admin() as c:
            c.request("activate", {"license_key": key})
        vendor.stop()
        bridge_usage(broker, clock)
        tick(broker, clock, 2 * GRACE)  # far past the grace
        assert broker.agent.metering.ledger.pending_count > 0
        assert connack(broker.port, "snowflake-b") == 0
