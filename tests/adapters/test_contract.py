"""The broker-side contract, the same test against each adapter (``licensed_broker``: amqtt with
the agent inside, Mosquitto with the plugin and the agent beside it).

The reconnect at the cap, admin confinement and the admin cap, password files, unknown names and
readers, wills on ``$license/...`` topics, a squatter on an admin's client id, a request spray.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.broker import ADMIN, ADMIN_PASSWORD, READER, READER_PASSWORD, MqttClient, RawClient, wait_for


def connections(broker) -> int:
    return int(broker.call(_status(broker))["connections"])


async def _status(broker) -> dict[str, Any]:
    return broker.agent.status_document()


def test_reconnect_at_the_cap_takes_its_own_place(tmp_path: Path, licensed_broker, vendor) -> None:
    with licensed_broker(vendor=vendor, trial_max_connections=2) as broker:
        with RawClient(broker.port) as a, RawClient(broker.port) as b, RawClient(broker.port) as a_again:
            assert a.connect("dev-a") == 0 and b.connect("dev-b") == 0
            assert a_again.connect("dev-a") == 0  # a network blip: the old socket is still open
            assert a.closed_by_broker(), "the old connection of dev-a was not closed"
            wait_for(lambda: connections(broker) == 2)
            with RawClient(broker.port) as c:
                assert c.connect("dev-c") == 5  # a new client id at the cap is still refused


def test_admin_uses_only_license_topics_while_not_serving(tmp_path: Path, licensed_broker, vendor) -> None:
    with licensed_broker(vendor=vendor, trial_seconds=0) as broker:
        with MqttClient(broker.port, client_id="ops", username=ADMIN, password=ADMIN_PASSWORD) as admin:
            assert admin.connect() == 0
            assert admin.subscribe("plant/#") == 0x80  # refused
            assert admin.subscribe("$license/events") in (0, 1)
            admin.client.publish("plant/x", b"unlicensed traffic", qos=1, retain=True).wait_for_publish(10)
            with broker.admin() as c:
                assert c.request("activate", {"license_key": vendor.issue()})["status"]["state"] == "active"
            # the plugin decides from the snapshot the agent pushes after the change
            wait_for(lambda: admin.subscribe("plant/#") in (0, 1))
            admin.client.publish("plant/y", b"licensed now", qos=1, retain=True).wait_for_publish(10)
        with MqttClient(broker.port, client_id="reader-of-plant") as user:
            assert user.connect() == 0
            user.subscribe("plant/#")
            user.wait_message("plant/y")
            time.sleep(0.3)
            # plant/x was dropped, not retained. plant/y may come twice: retained, and live when the
            # broker's broadcast of it runs after this subscription (the publisher's PUBACK does not wait).
            assert {m.topic for m in user.messages} == {"plant/y"}


def test_at_most_max_admin_connections(tmp_path: Path, licensed_broker, vendor) -> None:
    with licensed_broker(vendor=vendor, max_admin_connections=1) as broker:
        with MqttClient(broker.port, client_id="ops1", username=ADMIN, password=ADMIN_PASSWORD) as first:
            assert first.connect() == 0
            with MqttClient(broker.port, client_id="ops2", username=ADMIN, password=ADMIN_PASSWORD) as second:
                # amqtt says 3 (server unavailable: the login was right); Mosquitto 2.0.11's
                # BASIC_AUTH can only refuse with 5 (not authorized)
                assert second.connect() == (3 if licensed_broker.adapter == "amqtt" else 5)


def test_unknown_names_wrong_passwords_and_readers(tmp_path: Path, licensed_broker, vendor) -> None:
    with licensed_broker(vendor=vendor) as broker:
        for username, password, expected in (
            ("admn", ADMIN_PASSWORD, 5),  # not let in as anonymous
            (ADMIN, "wrong", 5),
            (READER, None, 5),  # a reader always needs its password
            (READER, READER_PASSWORD, 0),
            (ADMIN, ADMIN_PASSWORD, 0),
            (ADMIN, ADMIN_PASSWORD, 0),  # the cached verification
        ):
            with MqttClient(broker.port, client_id="c", username=username, password=password) as c:
                assert c.connect() == expected, (username, password)
        with MqttClient(broker.port, client_id="dash", username=READER, password=READER_PASSWORD) as reader:
            assert reader.connect() == 0
            assert reader.subscribe("$license/status") == 1
            assert json.loads(reader.wait_message("$license/status").payload)["state"] == "trial"
            assert reader.subscribe("plant/#") == 0x80  # a dashboard holds no seat: $license/... only
        with MqttClient(broker.port, client_id="anon") as anonymous:
            assert anonymous.connect() == 0
            assert anonymous.subscribe("$license/status") == 0x80
            assert anonymous.subscribe("$license/reply/dash") == 0x80  # another client's replies


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="needs mosquitto_passwd")
def test_mosquitto_password_file(tmp_path: Path, licensed_broker, vendor) -> None:
    passwd = tmp_path / "passwd"
    passwd.touch()
    subprocess.run(["mosquitto_passwd", "-b", str(passwd), "sensor", "s-pass"], check=True, timeout=30)
    with licensed_broker(vendor=vendor, password_file=str(passwd), allow_anonymous=False) as broker:
        for password, expected in (("s-pass", 0), ("wrong", 5), ("s-pass", 0)):
            with MqttClient(broker.port, client_id="sensor-1", username="sensor", password=password) as c:
                assert c.connect() == expected, password
        with MqttClient(broker.port, client_id="anon") as anonymous:
            assert anonymous.connect() == 5


FORGED = b'{"state": "active", "forged": true}'
WILLS = [
    ("$license/status", FORGED, True),
    ("$license/events", b'{"event": "forged"}', False),
    ("$license/reply/ops", b'{"ok": true, "forged": true}', False),
    ("$license/deactivate", b"{}", False),
    ("$license/status", b"", True),  # an empty retained will would clear the status
    ("plain/will", b"control", False),  # the control: wills still work elsewhere
]


def test_a_will_never_forges_license_status_events_replies_or_requests(tmp_path: Path, licensed_broker, vendor) -> None:
    with (
        licensed_broker(vendor=vendor) as broker,
        MqttClient(broker.port, client_id="dash", username=READER, password=READER_PASSWORD) as reader,
        MqttClient(broker.port, client_id="ops", username=ADMIN, password=ADMIN_PASSWORD) as admin,
        MqttClient(broker.port, client_id="plain-watcher") as plain,
    ):
        assert reader.connect() == 0 and admin.connect() == 0 and plain.connect() == 0
        assert reader.subscribe("$license/status") == 1 and reader.subscribe("$license/events") == 1
        assert plain.subscribe("plain/will") in (0, 1)  # a reader may read $license/... only
        assert admin.subscribe("$license/reply/ops") == 1
        original = reader.wait_message("$license/status").payload
        n_reader, n_admin = len(reader.messages), len(admin.messages)
        # a request on $license/status (retained, even) goes to the agent, never to status readers
        reader.client.publish("$license/status", FORGED, qos=1, retain=True).wait_for_publish(10)
        for i, will in enumerate(WILLS):
            with RawClient(broker.port) as c:  # closed without DISCONNECT: the will fires
                assert c.connect(f"attacker-{i}", will=will) == 0
        # an admin's own will on a request topic, and one fired at a take-over
        for take_over in (False, True):
            with RawClient(broker.port) as c:
                assert c.connect("ops-2", username=ADMIN, password=ADMIN_PASSWORD, will=WILLS[3]) == 0
                if take_over:
                    with RawClient(broker.port) as again:
                        assert again.connect("ops-2", username=ADMIN, password=ADMIN_PASSWORD) == 0
        assert plain.wait_message("plain/will").payload == b"control"
        time.sleep(0.5)  # the forged wills were sent before the control one
        assert [m.topic for m in reader.messages[n_reader:] if m.topic.startswith("$")] == []
        assert admin.messages[n_admin:] == []
        assert broker.status()["state"] == "trial"  # no will deactivated anything
        with MqttClient(broker.port, client_id="late", username=READER, password=READER_PASSWORD) as late:
            assert late.connect() == 0
            assert late.subscribe("$license/status") == 1
            assert late.wait_message("$license/status").payload == original


def _ask(client: MqttClient, topic: str, payload: bytes, reply_topic: str) -> dict[str, Any]:
    n = len(client.messages)
    client.client.publish(topic, payload, qos=1)
    return json.loads(client.wait_message(reply_topic, after=n).payload)


def test_a_squatter_on_an_admins_client_id_reads_no_reply(tmp_path: Path, licensed_broker, vendor) -> None:
    victim = "ops"
    with licensed_broker(vendor=vendor) as broker:
        # (a) the admin first, asking; then an anonymous client with its id takes it over
        ops = MqttClient(broker.port, client_id=victim, username=ADMIN, password=ADMIN_PASSWORD, clean_session=False)
        spy = MqttClient(broker.port, client_id=victim, clean_session=False)
        try:
            assert ops.connect() == 0
            assert ops.subscribe(f"$license/reply/{victim}/#") == 1
            for i in range(5):
                ops.client.publish("$license/status", json.dumps({"correlation_id": i}).encode(), qos=1)
            assert spy.connect() == 0
            assert ops.disconnected.wait(10), "the first connection was not closed"
            ops.client.loop_stop()  # no automatic reconnect: it would take the id back
            spy.subscribe(f"$license/reply/{victim}/#")
            time.sleep(1.0)
            # its own client id's replies it may read: none of the admin's were queued for it
            assert all(json.loads(m.payload).get("correlation_id") is None for m in spy.messages)
        finally:
            spy.close()
            ops.close()
        # (b) a client squatting on the id first; the admin connects with it later and is served
        spy = MqttClient(broker.port, client_id=victim)
        ops = MqttClient(broker.port, client_id=victim, username=ADMIN, password=ADMIN_PASSWORD)
        try:
            assert spy.connect() == 0
            assert spy.subscribe(f"$license/reply/{victim}/#") == 1  # its own, for now
            assert ops.connect() == 0
            assert spy.disconnected.wait(10), "the squatter was not closed"
            spy.client.loop_stop()
            assert ops.subscribe(f"$license/reply/{victim}/#") == 1
            for i in range(3):
                reply = _ask(
                    ops,
                    "$license/status",
                    json.dumps({"reply_to": f"$license/reply/{victim}/k{i}", "correlation_id": i}).encode(),
                    f"$license/reply/{victim}/k{i}",
                )
                assert reply["ok"] is True and reply["correlation_id"] == i
            assert [m.topic for m in spy.messages if m.topic.startswith("$license/reply")] == []
        finally:
            spy.close()
            ops.close()


@pytest.mark.timeout(90)
def test_a_spray_of_license_requests_leaves_the_admin_served(tmp_path: Path, licensed_broker, vendor) -> None:
    with (
        licensed_broker(vendor=vendor) as broker,
        MqttClient(broker.port, client_id="sprayer") as sprayer,
    ):
        assert sprayer.connect() == 0
        body = json.dumps({"correlation_id": 1}).encode()
        for _ in range(20_000):
            sprayer.client.publish("$license/status", body, qos=0)
        with broker.admin(timeout=15.0) as admin:
            assert admin.request("status")["status"]["state"] == "trial"
        with MqttClient(broker.port, client_id="plant") as plant:
            assert plant.connect() == 0


def mosquitto_entry(password: str) -> str:
    """What ``mosquitto_passwd`` writes by default: PBKDF2-SHA512, 101 iterations, 12-byte salt."""
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101, 64)
    return f"$7$101${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


@pytest.mark.timeout(120)
def test_a_fleet_of_password_file_users_all_get_in_at_once(tmp_path: Path, licensed_broker, vendor) -> None:
    """Each first login costs a full hash check; 300 of them in a row are not mistaken for a spray."""
    users = 300
    passwd = tmp_path / "passwd"
    passwd.write_text("".join(f"device-{n}:{mosquitto_entry(f'pw-{n}')}\n" for n in range(users)))
    key = vendor.issue(max_connections=users + 10)
    with licensed_broker(vendor=vendor, password_file=str(passwd), allow_anonymous=False) as broker:
        with broker.admin() as c:
            assert c.request("activate", {"license_key": key})["status"]["state"] == "active"
        sockets = [RawClient(broker.port) for _ in range(users)]
        try:
            codes = [
                s.connect(f"device-{n}", username=f"device-{n}", password=f"pw-{n}") for n, s in enumerate(sockets)
            ]
            assert codes == [0] * users
        finally:
            for s in sockets:
                s.close()
