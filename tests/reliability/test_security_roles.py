"""Security: who may send and read what on the ``$license`` topics, against real brokers.

* every command from every non-admin role: ``not_authorized``, nothing changes (even with a valid key);
* reading others' replies: SUBSCRIBE refused for every filter reaching another client's reply
  subtree (a list against a live broker, plus a property over generated filters), and the
  RECEIVE-time check: a second connection with the same client id, or a persistent session
  taken over by another principal, never gets what was meant for the first.

The other security tests: test_security_secrets.py (retained messages, logs, a wrong-password
CONNECT on a live client id) and test_security_http.py (brute force, the servers' admin APIs).
"""

from __future__ import annotations

import json
import time
from typing import Any

import msgpack
import pytest

from mqtt_licensing.core import protocol
from mqtt_licensing.core.errors import LicensingError
from tests.helpers.broker import (
    ADMIN,
    ADMIN_PASSWORD,
    READER,
    READER_PASSWORD,
    MqttClient,
    start_broker,
)
from tests.reliability.principals import PLAIN, PLAIN_PASSWORD, USERS, ask, license_messages

# -- commands --------------------------------------------------------------------------------


def test_no_command_from_any_non_admin_role(tmp_path, vendor):
    key = vendor.issue(features=["mqtt_server"])
    license_id = vendor.license_id(key)
    bodies = {
        "$license/activate": {"method": "online", "license_key": key},
        "$license/reactivate": {},
        "$license/deactivate": {},
        "$license/status": {},
        "$license/offline/request": {"license_key": key},
    }
    with start_broker(tmp_path / "s", vendor=vendor, users=USERS) as broker:
        identities = [("anon", None, None), ("dash", READER, READER_PASSWORD), ("plain", PLAIN, PLAIN_PASSWORD)]
        for client_id, user, password in identities:
            for topic, body in bodies.items():
                # one connection per topic: 4 requests, within a non-admin connection's burst of 5
                with MqttClient(broker.port, client_id=client_id, username=user, password=password) as c:
                    assert c.connect() == 0
                    reply_topic = f"$license/reply/{client_id}"
                    assert c.subscribe(reply_topic + "/#") == 1
                    for encode in (lambda b: json.dumps(b).encode(), msgpack.packb):
                        extras: list[dict[str, Any]] = [{}, {"reply_to": reply_topic + "/x", "correlation_id": 7}]
                        for extra in extras:
                            reply = ask(
                                c,
                                topic,
                                encode({**body, **extra}),
                                reply_topic + extra.get("reply_to", "")[len(reply_topic) :],
                            )
                            if user == READER and topic == "$license/status":
                                assert reply["ok"] is True, reply  # readers may ask for status
                                continue
                            assert reply["ok"] is False and reply["error"]["code"] == "not_authorized", reply
                            assert "status" not in reply
        status = broker.status()
        assert status["state"] == "trial" and status["offline"] is None
        assert vendor.service.list_activations(license_id, include_freed=True) == []
        # and on an activated broker, nobody but an admin deactivates it
        with broker.admin() as admin:
            admin.request("activate", {"license_key": key})
        for client_id, user, password in identities:
            with MqttClient(broker.port, client_id=client_id, username=user, password=password) as c:
                assert c.connect() == 0
                assert c.subscribe(f"$license/reply/{client_id}") == 1
                for topic in ("$license/deactivate", "$license/reactivate"):
                    reply = ask(c, topic, b"{}", f"$license/reply/{client_id}")
                    assert reply["error"]["code"] == "not_authorized"
        assert broker.status()["state"] == "active"
        assert len(vendor.service.list_activations(license_id)) == 1


# -- reading others' replies -------------------------------------------------------------------

VICTIM = "ops"
REACHING_FILTERS = [
    "$license/reply/ops",
    "$license/reply/ops/#",
    "$license/reply/ops/+",
    "$license/reply/ops/job-1",
    "$license/reply/+",
    "$license/reply/+/#",
    "$license/reply/+/job-1",
    "$license/reply/#",
    "$license/+/ops",
    "$license/+/ops/#",
    "$license/+/+",
    "$license/+/+/#",
    "$license/+/#",
    "$license/#",
    "$license/+",
]


def mqtt_matches(topic: str, topic_filter: str) -> bool:
    """MQTT 3.1.1 matching, including [MQTT-4.7.2-1]: wildcards at the first level skip $ topics."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    t, f = topic.split("/"), topic_filter.split("/")
    for i, level in enumerate(f):
        if level == "#":
            return i == len(f) - 1
        if i >= len(t) or (level != "+" and level != t[i]):
            return False
    return len(t) == len(f)


def test_subscribe_refused_for_every_filter_reaching_another_clients_replies(tmp_path, vendor):
    with start_broker(tmp_path / "s", vendor=vendor, users=USERS) as broker:
        spies = [("spy", None, None), ("spy-dash", READER, READER_PASSWORD), ("spy-admin", ADMIN, ADMIN_PASSWORD)]
        for client_id, user, password in spies:
            with MqttClient(broker.port, client_id=client_id, username=user, password=password) as spy:
                assert spy.connect() == 0
                for topic_filter in REACHING_FILTERS:
                    assert spy.subscribe(topic_filter) == 0x80, (client_id, topic_filter)
                # its own subtree is allowed, so the refusals above are about reach, not a blanket no
                assert spy.subscribe(f"$license/reply/{client_id}/#") == 1


LEVELS = ["reply", "ops", "spy", "+", "#", "status", "events", "x", "", "op", "spyx", "$license", "spy-2"]


def test_no_allowed_filter_matches_another_clients_reply_topic():
    """Exhaustive: every filter of up to four levels below $license/ from a vocabulary of client ids,
    wildcards and look-alikes; whatever subscription_allowed() grants must match no reply topic of
    another client."""
    import itertools

    checked = granted = 0
    for n in range(1, 5):
        for levels in itertools.product(LEVELS, repeat=n):
            topic_filter = "$license/" + "/".join(levels)
            for client_id in ("spy", "spy-2"):
                for reader in (False, True):
                    checked += 1
                    if not protocol.subscription_allowed(topic_filter, client_id, may_read_status=reader):
                        continue
                    granted += 1
                    for other in ("ops", "spyx", "spy-2x", "op", "x" + client_id, "spy" if client_id != "spy" else "s"):
                        for topic in (
                            f"$license/reply/{other}",
                            f"$license/reply/{other}/job",
                            f"$license/reply/{other}/a/b",
                        ):
                            assert not mqtt_matches(topic, topic_filter), (topic_filter, client_id, topic)
    print(f"{checked} (filter, client) pairs, {granted} granted, none reaching another client's replies")
    assert granted > 100


def test_a_second_connection_with_the_same_client_id_never_gets_the_firsts_replies(tmp_path, vendor):
    """A clean-session CONNECT reusing a live client id closes the first connection (MQTT 3.1.1
    §3.1.4-2; amqtt 0.12.1 alone kept both). The reply topic is named after the client id, so
    replies to the first connection's requests must not reach the second one."""
    with start_broker(tmp_path / "s", vendor=vendor) as broker:
        # (a) the admin first, asking; then an anonymous client with its id takes it over
        ops = MqttClient(broker.port, client_id=VICTIM, username=ADMIN, password=ADMIN_PASSWORD)
        spy = MqttClient(broker.port, client_id=VICTIM)
        try:
            assert ops.connect() == 0
            assert ops.subscribe(f"$license/reply/{VICTIM}/#") == 1
            for i in range(5):
                ops.client.publish("$license/status", json.dumps({"correlation_id": i}).encode(), qos=1)
                ops.client.publish(
                    "$license/status", json.dumps({"reply_to": f"$license/reply/{VICTIM}/j{i}"}).encode(), qos=1
                )
            assert spy.connect() == 0
            assert ops.disconnected.wait(10), "the first connection was not closed"
            ops.client.loop_stop()  # no automatic reconnect: it would take the id back
            spy.subscribe(f"$license/reply/{VICTIM}/#")
            spy.subscribe(f"$license/reply/{VICTIM}")
            time.sleep(1.0)
            assert [m.payload[:80] for m in license_messages(spy) if m.topic.startswith("$license/reply")] == []
        finally:
            spy.close()
            ops.close()
        # (b) a client squatting on the id first; the admin connects with it later and is served
        spy = MqttClient(broker.port, client_id=VICTIM)
        ops = MqttClient(broker.port, client_id=VICTIM, username=ADMIN, password=ADMIN_PASSWORD)
        try:
            assert spy.connect() == 0
            assert spy.subscribe(f"$license/reply/{VICTIM}/#") == 1  # its own, for now
            assert ops.connect() == 0
            assert spy.disconnected.wait(10), "the squatter was not closed"
            spy.client.loop_stop()
            assert ops.subscribe(f"$license/reply/{VICTIM}/#") == 1
            for i in range(5):
                reply = ask(
                    ops,
                    "$license/status",
                    json.dumps({"reply_to": f"$license/reply/{VICTIM}/k{i}", "correlation_id": i}).encode(),
                    f"$license/reply/{VICTIM}/k{i}",
                )
                assert reply["ok"] is True and reply["correlation_id"] == i
            assert [m.topic for m in license_messages(spy) if m.topic.startswith("$license/reply")] == []
        finally:
            spy.close()
            ops.close()


def test_wildcard_subscriptions_never_deliver_license_messages(tmp_path, vendor):
    with (
        start_broker(tmp_path / "s", vendor=vendor) as broker,
        MqttClient(broker.port, client_id="spy") as spy,
        MqttClient(broker.port, client_id="ops", username=ADMIN, password=ADMIN_PASSWORD) as ops,
    ):
        assert spy.connect() == 0 and ops.connect() == 0
        for topic_filter in ("#", "+/#", "+/reply/#", "+/+/ops", "+/+/+", "+"):
            assert spy.subscribe(topic_filter) in (0, 1)  # granted: not a $license filter...
        assert ops.subscribe("$license/reply/ops") == 1
        for _ in range(3):
            ask(ops, "$license/status", b"{}", "$license/reply/ops")
        ask(ops, "$license/reactivate", b"{}", "$license/reply/ops")  # an event too
        time.sleep(0.5)
        assert license_messages(spy) == []  # ...yet no $license message ever reaches it


def test_a_taken_over_persistent_reader_session_gets_no_status_or_events(tmp_path, vendor):
    with start_broker(tmp_path / "s", vendor=vendor, users=USERS) as broker:
        with MqttClient(
            broker.port, client_id="shared", username=READER, password=READER_PASSWORD, clean_session=False
        ) as dash:
            assert dash.connect() == 0
            assert dash.subscribe("$license/status") == 1 and dash.subscribe("$license/events") == 1
            dash.wait_message("$license/status")
        with (
            MqttClient(broker.port, client_id="shared", clean_session=False) as intruder,
            MqttClient(broker.port, client_id="dash2", username=READER, password=READER_PASSWORD) as reader,
            broker.admin() as admin,
        ):
            assert intruder.connect() == 0 and reader.connect() == 0
            assert reader.subscribe("$license/events") == 1
            with pytest.raises(LicensingError):
                admin.request("reactivate")  # -> a command_failed event
            reader.wait_message("$license/events")
            time.sleep(0.3)
            assert license_messages(intruder) == []
