"""Offline metering round trip (issue 16): pending usage records ride in the next usage request
code and in the deactivation code; the vendor imports each once; the usage license it returns
is the signed receipt that lets the instance delete them."""

from __future__ import annotations

from mqtt_licensing.core.codes import unarmor
from mqtt_licensing.core.documents import InstanceRequest
from mqtt_licensing.core.labels import DEACTIVATION_CODE, USAGE_REQUEST
from mqtt_licensing.core.signing import parse_envelope
from mqtt_licensing.core.usage_documents import UsageRecord
from mqtt_licensing.servers._run import free_port
from tests.helpers.broker import MqttClient, start_broker, wait_for

BRIDGE_CLASS = {"snowflake_bridge": {"features": ["iot_bridge_snowflake"], "client_id_prefixes": ["snowflake-"]}}


def carried(code: str, label: str) -> list[UsageRecord]:
    request = InstanceRequest.from_body(parse_envelope(unarmor(code, label)).unverified_body())
    return [UsageRecord.from_body(parse_envelope(blob).unverified_body()) for blob in request.usage]


def bridge_traffic(broker, count: int) -> None:
    with MqttClient(broker.port, client_id="snowflake-7") as bridge, MqttClient(broker.port, client_id="plc") as plc:
        assert bridge.connect() == 0 and plc.connect() == 0
        assert bridge.subscribe("plant/#") == 1
        for n in range(count):
            plc.publish("plant/a", b"%d" % n)
        wait_for(lambda: len(bridge.messages) >= count, message="bridge")
    ledger = broker.agent.metering.ledger
    wait_for(lambda: sum(r.messages for r in records_of(ledger)) >= count, message="closed into records")


def records_of(ledger) -> list[UsageRecord]:
    return [UsageRecord.from_body(parse_envelope(b).unverified_body()) for _s, b in ledger.pending()]


def usage_total(vendor, license_id: str) -> int:
    return sum(d["messages"] for d in vendor.service.usage_by_day(license_id)["days"])


def test_offline_round_trip_carries_usage_once(tmp_path, vendor) -> None:
    key = vendor.issue(features=["mqtt_server", "iot_bridge_snowflake"], model="offline")
    license_id = vendor.license_id(key)
    with start_broker(
        tmp_path / "state",
        vendor_url=f"http://127.0.0.1:{free_port()}",  # air-gapped: nothing listens
        vendor_public_key=vendor.public_key_text,
        client_classes=BRIDGE_CLASS,
        usage_interval=0.2,
        trial_seconds=0,
    ) as broker:
        with broker.admin() as c:
            first = c.request("offline_request", {"license_key": key})["request_code"]
            assert carried(first, USAGE_REQUEST) == []
            usage_license = vendor.service.offline_activate(first).usage_license
            c.request("activate", {"method": "offline", "usage_license": usage_license})
        bridge_traffic(broker, 40)
        with broker.admin() as c:
            renewal = c.request("offline_request", {"license_key": key})["request_code"]
            records = carried(renewal, USAGE_REQUEST)
            assert sum(r.messages for r in records) == 40
            answer = vendor.service.offline_activate(renewal)
            assert answer.usage_records == len(records)
            assert usage_total(vendor, license_id) == 40
            vendor.service.offline_activate(renewal)  # the same code brought twice: imported once
            assert usage_total(vendor, license_id) == 40
            assert broker.agent.metering.ledger.pending_count == len(records)  # no receipt yet
            c.request("activate", {"method": "offline", "usage_license": answer.usage_license})
        assert broker.agent.metering.ledger.pending_count == 0  # the usage license was the receipt

        bridge_traffic(broker, 15)
        with broker.admin() as c:
            code = c.request("deactivate")["deactivation_code"]
        assert sum(r.messages for r in carried(code, DEACTIVATION_CODE)) == 15
        assert vendor.service.offline_deactivate(code).usage_records >= 1
        assert vendor.service.offline_deactivate(code).already_free is True  # and again: counted once
        assert usage_total(vendor, license_id) == 55
