"""Access through a real amqtt broker: a reconnect storm at the cap, readers' status, MQTT 5
refused cleanly. The rules both adapters share (the reconnect at the cap, admin confinement and
cap, password files, unknown usernames, wills) are tests/adapters/test_contract.py."""

from __future__ import annotations

import threading

import pytest

from mqtt_licensing.clients.mqtt import LicenseClient
from tests.helpers.broker import (
    READER,
    READER_PASSWORD,
    MqttClient,
    RawClient,
    _remaining_length,
    _string,
    start_broker,
    wait_for,
)


def connections(broker) -> int:
    return broker.agent.status_document()["connections"]


@pytest.mark.timeout(120)
def test_a_reconnect_storm_at_the_cap_leaves_everyone_connected(tmp_path, vendor):
    key = vendor.issue(max_connections=50)
    with start_broker(tmp_path / "s", vendor=vendor) as broker:
        with broker.admin() as c:
            assert c.request("activate", {"license_key": key})["status"]["state"] == "active"
        first = [RawClient(broker.port) for _ in range(50)]
        second = [RawClient(broker.port) for _ in range(50)]
        try:
            assert all(sock.connect(f"dev-{i}") == 0 for i, sock in enumerate(first))
            codes: list[int] = [-1] * 50

            def reconnect(i: int) -> None:
                codes[i] = second[i].connect(f"dev-{i}")

            threads = [threading.Thread(target=reconnect, args=(i,)) for i in range(50)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            assert codes == [0] * 50, codes
            assert all(sock.closed_by_broker() for sock in first)
            wait_for(lambda: connections(broker) == 50)
        finally:
            for sock in first + second:
                sock.close()


def test_readers_may_ask_for_status(tmp_path, vendor):
    with start_broker(tmp_path / "s", vendor=vendor) as broker:
        with LicenseClient("127.0.0.1", broker.port, username=READER, password=READER_PASSWORD, timeout=15) as c:
            assert c.request("status")["status"]["state"] == "trial"


def test_mqtt5_connect_gets_connack_unacceptable_protocol_version(tmp_path, vendor, caplog):
    # MQTT 5 CONNECT with properties (session expiry 3600, receive maximum 10): amqtt alone
    # misreads it and waits for bytes that never come.
    properties = b"\x11\x00\x00\x0e\x10" + b"\x21\x00\x0a"
    body = _string("MQTT") + bytes([5, 0x02]) + (30).to_bytes(2, "big")
    body += bytes([len(properties)]) + properties + b"\x00" + _string("v5-client")
    with start_broker(tmp_path / "s", vendor=vendor) as broker, RawClient(broker.port) as v5:
        v5.send(b"\x10" + _remaining_length(len(body)) + body)
        assert v5._read_exactly(4) == b"\x20\x02\x00\x01"
        assert v5.closed_by_broker()
        with MqttClient(broker.port, client_id="v311") as ok:
            assert ok.connect() == 0
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert any("MQTT 5" in r.getMessage() for r in caplog.records)
