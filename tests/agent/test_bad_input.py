"""Every bad request gets a typed error code, and the client's connection keeps working."""

import json

import msgpack
import pytest

from tests.helpers.broker import ADMIN, ADMIN_PASSWORD, MqttClient, start_broker

REPLY = "$license/reply/ops"


@pytest.fixture
def admin_client(tmp_path, vendor):
    with start_broker(tmp_path / "s", vendor=vendor, max_payload=4096) as broker:
        with MqttClient(broker.port, client_id="ops", username=ADMIN, password=ADMIN_PASSWORD) as c:
            assert c.connect() == 0
            assert c.subscribe(REPLY + "/#") == 1  # matches REPLY itself too
            yield c


def decode_any(payload):
    """Replies use the request's encoding: JSON, or msgpack for a msgpack-looking request."""
    try:
        return json.loads(payload)
    except ValueError:
        return msgpack.unpackb(payload, raw=False)


def ask(client, topic, payload, reply_topic=REPLY, decode=decode_any):
    n = len(client.messages)
    client.publish(topic, payload)
    return decode(client.wait_message(reply_topic, after=n).payload)


def still_works(client):
    reply = ask(client, "$license/status", json.dumps({"correlation_id": "ping"}))
    assert reply["ok"] is True and reply["correlation_id"] == "ping"


CASES = [
    ("$license/activate", b"{not json", "malformed_payload"),
    ("$license/activate", b"\x81\xa3key", "malformed_payload"),  # truncated msgpack map
    ("$license/activate", b"[1, 2, 3]", "malformed_payload"),
    ("$license/activate", b"\xff\xfe\x00garbage", "malformed_payload"),
    ("$license/activate", json.dumps({"license_key": 12345}).encode(), "invalid_field"),
    ("$license/activate", json.dumps({"method": "online"}).encode(), "missing_field"),
    ("$license/activate", json.dumps({"method": "telepathy", "license_key": "x"}).encode(), "unsupported_method"),
    ("$license/activate", json.dumps({"license_key": "MQL1-NOT-A-KEY"}).encode(), "invalid_key"),
    ("$license/activate", json.dumps({"method": ["online"]}).encode(), "invalid_field"),
    ("$license/frobnicate", b"{}", "unknown_operation"),
    ("$license/activate", json.dumps({"license_key": "x" * 5000}).encode(), "payload_too_large"),
    ("$license/status", json.dumps({"correlation_id": {"nested": 1}}).encode(), "invalid_field"),
    ("$license/reactivate", b"{}", "not_activated"),
    ("$license/deactivate", b"{}", "not_activated"),
    ("$license/activate", json.dumps({"method": "offline", "usage_license": "hello"}).encode(), "invalid_code"),
]


@pytest.mark.parametrize(("topic", "payload", "code"), CASES, ids=[c[2] + ":" + c[0] for c in CASES])
def test_bad_request_gets_its_code_and_connection_survives(admin_client, topic, payload, code):
    reply = ask(admin_client, topic, payload)
    assert reply["ok"] is False
    assert reply["error"]["code"] == code
    assert reply["error"]["message"]
    still_works(admin_client)


def test_msgpack_request_gets_msgpack_reply(admin_client):
    reply = ask(
        admin_client,
        "$license/status",
        msgpack.packb({"correlation_id": 7}),
        decode=lambda b: msgpack.unpackb(b, raw=False),
    )
    assert reply["ok"] is True and reply["correlation_id"] == 7 and reply["status"]["state"] == "trial"
    bad = ask(
        admin_client,
        "$license/activate",
        msgpack.packb({"license_key": 5}),
        decode=lambda b: msgpack.unpackb(b, raw=False),
    )
    assert bad["error"]["code"] == "invalid_field"


def test_reply_to_under_own_subtree_is_honoured(admin_client):
    reply = ask(
        admin_client,
        "$license/status",
        json.dumps({"reply_to": REPLY + "/job-1", "correlation_id": "a"}),
        reply_topic=REPLY + "/job-1",
    )
    assert reply["ok"] and reply["correlation_id"] == "a"


def test_forged_reply_to_is_refused_and_never_delivered_there(tmp_path, vendor):
    with (
        start_broker(tmp_path / "s", vendor=vendor) as broker,
        MqttClient(broker.port, client_id="victim") as victim,
        MqttClient(broker.port, client_id="ops", username=ADMIN, password=ADMIN_PASSWORD) as ops,
    ):
        assert victim.connect() == 0 and ops.connect() == 0
        assert victim.subscribe("$license/reply/victim") == 1
        assert ops.subscribe(REPLY) == 1
        reply = ask(ops, "$license/status", json.dumps({"reply_to": "$license/reply/victim"}))
        assert reply["error"]["code"] == "invalid_reply_to"
        reply = ask(ops, "$license/status", json.dumps({"reply_to": "plant/data"}))
        assert reply["error"]["code"] == "invalid_reply_to"
        assert not victim.messages
        still_works(ops)


def test_non_admin_publisher_is_refused_and_keeps_its_connection(tmp_path, vendor):
    with start_broker(tmp_path / "s", vendor=vendor) as broker:
        with MqttClient(broker.port, client_id="intruder") as intruder:
            assert intruder.connect() == 0
            assert intruder.subscribe("$license/reply/intruder") == 1
            for topic in (
                "$license/activate",
                "$license/deactivate",
                "$license/status",
                "$license/reactivate",
                "$license/offline/request",
            ):
                reply = ask(intruder, topic, b'{"license_key": "MQL1"}', reply_topic="$license/reply/intruder")
                assert reply["error"]["code"] == "not_authorized"
            # its ordinary traffic still flows
            assert intruder.subscribe("plant/#") == 1
            intruder.publish("plant/x", b"1")
            assert intruder.wait_message("plant/x").payload == b"1"


def test_nobody_reads_another_clients_replies(tmp_path, vendor):
    with (
        start_broker(tmp_path / "s", vendor=vendor) as broker,
        MqttClient(broker.port, client_id="spy") as spy,
        MqttClient(broker.port, client_id="ops", username=ADMIN, password=ADMIN_PASSWORD) as ops,
    ):
        assert spy.connect() == 0 and ops.connect() == 0
        for topic_filter in (
            "$license/reply/ops",
            "$license/reply/+",
            "$license/reply/#",
            "$license/#",
            "$license/+/ops",
            "#",
        ):
            code = spy.subscribe(topic_filter)
            assert code == 0x80 or topic_filter == "#"
        assert ops.subscribe(REPLY) == 1
        ask(ops, "$license/status", b"{}")
        assert not [m for m in spy.messages if m.topic.startswith("$license")]


def test_empty_payload_is_a_status_request(admin_client):
    reply = ask(admin_client, "$license/status", b"")
    assert reply["ok"] is True and reply["operation"] == "status"
