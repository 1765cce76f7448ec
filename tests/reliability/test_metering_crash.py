"""Metering under kill -9 (issue 16): of the broker (each kill loses at most its open interval,
never a closed record, and nothing is counted twice) and of the vendor mid-report (nothing lost,
nothing doubled).

The bridge client's own count of what it received is the truth: the vendor may show less only by
what was still in an open interval at a broker kill, and never more. Default: 3 broker kills and
4 vendor kills; RELIABILITY_SCALE > 1 runs the issue's 10 broker kills (and more vendor kills).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest

from mqtt_licensing.clients.mqtt import LicenseClient
from tests.helpers.broker import ADMIN, ADMIN_PASSWORD, MqttClient, start_broker
from tests.reliability.support import SCALE, BrokerProcess, VendorProcess, cli, wait_until

BROKER_KILLS = 10 * SCALE if SCALE > 1 else 3
VENDOR_KILLS = 4 * SCALE
BRIDGE_CLASS = {"snowflake_bridge": {"features": ["iot_bridge_snowflake"], "client_id_prefixes": ["snowflake-"]}}
FAST: dict[str, Any] = {"usage_interval": 0.5, "usage_report_interval": 0.2, "tick_interval": 0.05, "http_timeout": 2.0}


def _at_least(count: Callable[[], int], target: int) -> bool:
    return count() >= target


def deliver(port: int, bridge: MqttClient, count: int, *, wait: bool = True) -> None:
    """``count`` QoS 1 messages from a PLC to the bridge; returns once the bridge has them all."""
    before = len(bridge.messages)
    with MqttClient(port, client_id=f"plc-{random.randrange(10**9)}") as plc:
        assert plc.connect() == 0
        sent = [plc.client.publish(f"plant/{n % 5}", b"reading-%06d" % n, qos=1) for n in range(count)]
        for info in sent:
            info.wait_for_publish(30)  # the PLC holds its QoS 1 messages until the broker has them
        if wait:
            wait_until(lambda: len(bridge.messages) >= before + count, 30, "bridge received the batch")


def bridge_at(port: int) -> MqttClient:
    bridge = MqttClient(port, client_id="snowflake-1")
    assert bridge.connect() == 0
    assert bridge.subscribe("plant/#", qos=1) == 1
    return bridge


@pytest.mark.timeout(120 + 40 * BROKER_KILLS)
def test_kill9_broker_loses_at_most_the_open_interval_and_doubles_nothing(tmp_path, vendor) -> None:
    rng = random.Random()
    key = vendor.issue(features=["mqtt_server", "iot_bridge_snowflake"])
    license_id = vendor.license_id(key)
    broker = BrokerProcess(
        tmp_path,
        tmp_path / "state",
        vendor_url=vendor.url,
        vendor_public_key=vendor.public_key_text,
        client_classes=BRIDGE_CLASS,
        **FAST,
    )

    def at_vendor() -> dict[str, Any]:
        return vendor.service.usage_by_day(license_id)

    def reported() -> int:
        return sum(d["messages"] for d in at_vendor()["days"])

    received = at_risk = 0
    try:
        for round_no in range(BROKER_KILLS + 1):
            broker.start()
            if round_no == 0:
                with LicenseClient("127.0.0.1", broker.port, username=ADMIN, password=ADMIN_PASSWORD) as c:
                    c.request("activate", {"license_key": key})
            bridge = bridge_at(broker.port)
            try:
                floor = reported()
                deliver(broker.port, bridge, 200)
                received += 200
                # closed and acknowledged: from here on no kill may take these 200 away
                wait_until(partial(_at_least, reported, floor + 200), 30, "the batch reported")
                assert reported() <= received
                if round_no == BROKER_KILLS:
                    break
                deliver(broker.port, bridge, 50)  # the open interval the kill may cost
                received += 50
                at_risk += 50
                time.sleep(rng.uniform(0.0, 1.0))  # a random moment: before, during or after the interval closes
            finally:
                bridge.close()
            broker.kill9()
        final = reported()
        assert received - at_risk <= final <= received, (received, at_risk, final)
        usage = at_vendor()
        assert usage["missing"] == {}, "a closed record was lost"
        assert sum(d["records"] for d in usage["days"]) > 0
        print(f"received {received}, reported {final}, lost {received - final} of {at_risk} at risk")
    finally:
        broker.terminate()


@pytest.mark.timeout(120 + 30 * VENDOR_KILLS)
def test_kill9_vendor_mid_report_loses_and_doubles_nothing(tmp_path) -> None:
    rng = random.Random()
    vendor = VendorProcess(tmp_path / "vendor").start()
    data = str(vendor.data_dir)
    try:
        key = cli("vendor", "issue", "--data", data, "--features", "mqtt_server,iot_bridge_snowflake").strip()
        public_key = cli("vendor", "public-key", "--data", data).strip()
        license_id = json.loads(cli("vendor", "licenses", "--data", data, "--json"))[0]["id"]

        def reported() -> int:
            return sum(
                d["messages"] for d in json.loads(cli("vendor", "usage", license_id, "--data", data, "--json"))["days"]
            )

        with start_broker(
            tmp_path / "state",
            vendor_url=vendor.url,
            vendor_public_key=public_key,
            client_classes=BRIDGE_CLASS,
            retry_interval=0.2,
            **FAST,
        ) as broker:
            with broker.admin() as c:
                c.request("activate", {"license_key": key})
            bridge = bridge_at(broker.port)
            received = 0
            try:
                for _ in range(VENDOR_KILLS):
                    deliver(broker.port, bridge, 300, wait=False)
                    wait_until(lambda: broker.agent.metering.ledger.pending_count > 0, 30, "a record to report")
                    time.sleep(rng.uniform(0.0, 0.4))  # reports run every 0.2 s: kills land mid-report
                    vendor.kill9()
                    wait_until(
                        partial(_at_least, lambda: len(bridge.messages), received + 300),
                        30,
                        "bridge received the batch",
                    )
                    received += 300
                    vendor.start()
                wait_until(lambda: reported() >= received, 60, "every record reported")
                assert reported() == received
            finally:
                bridge.close()
    finally:
        vendor.terminate()
