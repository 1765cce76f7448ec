"""Usage that must not vanish (issue 20 rows 1 and 2): a wiped or restored usage folder, forged
zero-usage records, and deliveries to a client that never acknowledges.

Main: 40 of 100 messages billed after `rm -r <state_dir>/usage`, with `missing: {}`: the vendor
kept the first record per (instance, sequence) without comparing content and acknowledged the
later one, so the agent deleted real usage. Counting happened after amqtt's ``mqtt_publish``
returned, so QoS 0 deliveries raced it and a missing PUBACK (QoS 1) counted nothing."""

from __future__ import annotations

import secrets
import shutil
import time

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from mqtt_licensing.core.documents import sign_instance_request
from mqtt_licensing.core.signing import b64, fingerprint
from mqtt_licensing.core.usage_documents import UsageRecord
from tests.helpers.broker import MqttClient, RawClient, _remaining_length, _string, start_broker, wait_for

BRIDGE_CLASS = {"snowflake_bridge": {"features": ["iot_bridge_snowflake"], "client_id_prefixes": ["snowflake-"]}}
PAYLOAD = b"21.5"


def vendor_messages(vendor, license_id: str) -> int:
    return sum(d["messages"] for d in vendor.service.usage_by_day(license_id)["days"])


def broker(tmp_path, vendor):
    return start_broker(
        tmp_path / "state", vendor=vendor, client_classes=BRIDGE_CLASS, usage_interval=0.3, usage_report_interval=0.3
    )


def deliver(handle, count: int, qos: int = 1) -> None:
    with MqttClient(handle.port, client_id="snowflake-1") as bridge, MqttClient(handle.port, client_id="plc") as plc:
        assert bridge.connect() == 0 and plc.connect() == 0
        assert bridge.subscribe("plant/#", qos=qos) == qos
        for n in range(count):
            plc.client.publish(f"plant/{n}", PAYLOAD, qos=qos)
        wait_for(lambda: len(bridge.messages) >= count, message="bridge")


def delivered_to_vendor(handle, vendor, license_id: str, total: int) -> None:
    wait_for(
        lambda: vendor_messages(vendor, license_id) >= total and handle.agent.metering.ledger.pending_count == 0,
        timeout=30,
        message=f"vendor holds {vendor_messages(vendor, license_id)} of {total}",
    )
    assert vendor_messages(vendor, license_id) == total


def licensed(vendor):
    key = vendor.issue(features=["mqtt_server", "iot_bridge_snowflake"])
    return key, vendor.license_id(key)


def test_a_wiped_usage_folder_continues_above_what_the_vendor_holds(tmp_path, vendor):
    key, license_id = licensed(vendor)
    with broker(tmp_path, vendor) as handle:
        with handle.admin() as c:
            c.request("activate", {"license_key": key})
        deliver(handle, 40)
        delivered_to_vendor(handle, vendor, license_id, 40)
    shutil.rmtree(tmp_path / "state" / "usage")  # identity and sealed state.json untouched
    with broker(tmp_path, vendor) as handle:
        deliver(handle, 60)
        delivered_to_vendor(handle, vendor, license_id, 100)
    assert vendor.service.usage_by_day(license_id)["flags"] == []  # state.json kept the number: no collision


def test_a_state_folder_restored_from_an_older_backup_loses_no_usage(tmp_path, vendor):
    key, license_id = licensed(vendor)
    with broker(tmp_path, vendor) as handle:
        with handle.admin() as c:
            c.request("activate", {"license_key": key})
    shutil.copytree(tmp_path / "state", tmp_path / "backup")  # before any usage
    with broker(tmp_path, vendor) as handle:
        deliver(handle, 40)
        delivered_to_vendor(handle, vendor, license_id, 40)
    shutil.rmtree(tmp_path / "state")
    shutil.copytree(tmp_path / "backup", tmp_path / "state")
    with broker(tmp_path, vendor) as handle:
        deliver(handle, 60)
        delivered_to_vendor(handle, vendor, license_id, 100)  # the colliding records numbered again
        assert handle.agent.metering.ledger.high_water > 1
    flags = vendor.service.usage_by_day(license_id)["flags"]
    assert flags and {f["kind"] for f in flags} == {"conflict"}, flags
    assert flags[0]["activation_id"] == vendor.service.list_activations(license_id)[0]["id"]


def test_forged_zero_usage_records_are_flagged_and_take_no_real_usage(tmp_path, vendor):
    """Main: the holder of identity.key reported 20 zero-usage records for the next sequences,
    then 50 QoS 0 deliveries: the vendor total stayed 0."""
    key, license_id = licensed(vendor)
    with broker(tmp_path, vendor) as handle:
        with handle.admin() as c:
            c.request("activate", {"license_key": key})
        identity = load_pem_private_key((tmp_path / "state" / "identity.key").read_bytes(), None)
        assert isinstance(identity, Ed25519PrivateKey)
        fp = fingerprint(identity)
        [act] = vendor.service.list_activations(license_id)
        forged = [UsageRecord(fp, seq, 1, 2, 0, 0, 0, license_id, act["id"]).sign(identity) for seq in range(1, 21)]
        nonce, now = secrets.token_hex(16), int(time.time())
        request = sign_instance_request(
            identity, kind="usage_report", nonce=nonce, created_at=now, activation_id=act["id"]
        )
        answer = httpx.post(
            vendor.url + "/v1/usage", json={"request": b64(request), "records": [b64(r) for r in forged]}
        )
        assert answer.status_code == 200, answer.text
        deliver(handle, 50, qos=0)
        delivered_to_vendor(handle, vendor, license_id, 50)
    kinds = {f["kind"] for f in vendor.service.usage_by_day(license_id)["flags"]}
    assert kinds == {"zero_usage", "conflict"}, kinds


def _subscribe_packet(topic: str, qos: int) -> bytes:
    body = (1).to_bytes(2, "big") + _string(topic) + bytes([qos])
    return b"\x82" + _remaining_length(len(body)) + body


def _read_packet(raw: RawClient) -> tuple[int, bytes]:
    first = raw._read_exactly(1)[0]
    length, shift = 0, 0
    while True:
        byte = raw._read_exactly(1)[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return first, raw._read_exactly(length)


def test_a_subscriber_that_never_acknowledges_is_counted(tmp_path, vendor):
    """Main: a QoS 1 bridge that never sends PUBACK received every payload and counted 0."""
    key, license_id = licensed(vendor)
    with broker(tmp_path, vendor) as handle:
        with handle.admin() as c:
            c.request("activate", {"license_key": key})
        with RawClient(handle.port) as bridge, MqttClient(handle.port, client_id="plc") as plc:
            assert bridge.connect("snowflake-silent") == 0 and plc.connect() == 0
            bridge.send(_subscribe_packet("plant/#", 1))
            assert _read_packet(bridge)[0] == 0x90  # SUBACK
            for n in range(10):
                plc.client.publish(f"plant/{n}", PAYLOAD, qos=1)
            received = [_read_packet(bridge) for _ in range(10)]  # PUBLISH packets, never acknowledged
            assert all(first >> 4 == 3 for first, _ in received)
            delivered_to_vendor(handle, vendor, license_id, 10)
