"""Access through a real broker: a reconnect at the cap takes its own place (issue 11 item 2),
admins confined while the license does not serve (issue 9 item 2), Mosquitto password files
and unknown usernames (issue 11 item 1), readers' status, MQTT 5 refused cleanly."""

from __future__ import annotations

import shutil
import subprocess
import threading

import pytest

from mqtt_licensing.clients.mqtt import LicenseClient
from tests.helpers.broker import (
    ADMIN,
    ADMIN_PASSWORD,
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


def test_reconnect_at_the_cap_takes_its_own_place(tmp_path, vendor):
    with start_broker(tmp_path / "s", vendor=vendor, trial_max_connections=2) as broker:
        with RawClient(broker.port) as a, RawClient(broker.port) as b, RawClient(broker.port) as a_again:
            assert a.connect("dev-a") == 0 and b.connect("dev-b") == 0
            assert a_again.connect("dev-a") == 0  # a network blip: the old socket is still open
            assert a.closed_by_broker(), "the old connection of dev-a was not closed"
            wait_for(lambda: connections(broker) == 2)
            with RawClient(broker.port) as c:
                assert c.connect("dev-c") == 5  # a new client id at the cap is still refused


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


def test_admin_uses_only_license_topics_while_not_serving(tmp_path, vendor):
    with start_broker(tmp_path / "s", vendor=vendor, trial_seconds=0) as broker:
        with MqttClient(broker.port, client_id="ops", username=ADMIN, password=ADMIN_PASSWORD) as admin:
            assert admin.connect() == 0
            assert admin.subscribe("plant/#") == 0x80  # refused
            assert admin.subscribe("$license/events") in (0, 1)
            admin.client.publish("plant/x", b"unlicensed traffic", qos=1, retain=True).wait_for_publish(10)
            with broker.admin() as c:
                assert c.request("activate", {"license_key": vendor.issue()})["status"]["state"] == "active"
            admin.client.publish("plant/y", b"licensed now", qos=1, retain=True).wait_for_publish(10)
        with MqttClient(broker.port, client_id="reader-of-plant") as user:
            assert user.connect() == 0
            user.subscribe("plant/#")
            user.wait_message("plant/y")
            # plant/x was dropped, not retained. plant/y may come twice: retained, and live when the
            # broker's broadcast of it runs after this subscription (the publisher's PUBACK does not wait).
            assert {m.topic for m in user.messages} == {"plant/y"}


def test_at_most_max_admin_connections(tmp_path, vendor):
    with start_broker(tmp_path / "s", vendor=vendor, max_admin_connections=1) as broker:
        with MqttClient(broker.port, client_id="ops1", username=ADMIN, password=ADMIN_PASSWORD) as first:
            assert first.connect() == 0
            with MqttClient(broker.port, client_id="ops2", username=ADMIN, password=ADMIN_PASSWORD) as second:
                assert second.connect() == 3  # server unavailable: the login was right


def test_readers_may_ask_for_status(tmp_path, vendor):
    with start_broker(tmp_path / "s", vendor=vendor) as broker:
        with LicenseClient("127.0.0.1", broker.port, username=READER, password=READER_PASSWORD, timeout=15) as c:
            assert c.request("status")["status"]["state"] == "trial"


def test_unknown_username_with_a_password_is_refused(tmp_path, vendor):
    with start_broker(tmp_path / "s", vendor=vendor) as broker:
        with MqttClient(broker.port, client_id="ops", username="admn", password=ADMIN_PASSWORD) as typo:
            assert typo.connect() == 5  # not let in as anonymous


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="mosquitto not installed")
def test_mosquitto_password_file(tmp_path, vendor):
    passwd = tmp_path / "passwd"
    passwd.touch()
    subprocess.run(["mosquitto_passwd", "-b", str(passwd), "sensor", "s-pass"], check=True, timeout=30)
    with start_broker(tmp_path / "s", vendor=vendor, password_file=str(passwd), allow_anonymous=False) as broker:
        for password, expected in (("s-pass", 0), ("wrong", 5), ("s-pass", 0)):
            with MqttClient(broker.port, client_id="sensor-1", username="sensor", password=password) as c:
                assert c.connect() == expected, password
        with MqttClient(broker.port, client_id="anon") as anonymous:
            assert anonymous.connect() == 5


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
