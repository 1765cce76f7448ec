"""Fuzzing every ``$license/*`` topic through a real broker (the CLI, in a subprocess), with the
payloads of tests/reliability/fuzzing.py: a few thousand generated requests from an admin, one at
a time, each must get exactly one reply, ``ok: false`` with a documented error code (never
``internal_error``) - ``ok: true`` only for a plain status request. The broker process stays
alive, the admin's connection keeps working, a reader subscribed to ``$license/status`` and
``$license/events`` never sees a request, and the broker's resident memory stays flat. A
non-admin gets ``not_authorized`` for every payload. The decoder alone: test_fuzz_decode.py.
"""

from __future__ import annotations

import json
import math
import random
import time
from typing import Any

import pytest
from hypothesis import given

from mqtt_licensing.core import protocol
from mqtt_licensing.core.errors import ErrorCode
from mqtt_licensing.core.keys import format_key
from tests.helpers.broker import (
    ADMIN,
    ADMIN_PASSWORD,
    READER,
    READER_PASSWORD,
    MqttClient,
)
from tests.reliability.fuzzing import ARMOUR, WEIRD_URLS, encode_json, pack, payloads, random_payload, topics
from tests.reliability.support import (
    ERROR_CODES,
    SCALE,
    BrokerProcess,
    decode_any,
    hypothesis_settings,
    rss_bytes,
)

MQTT_EXAMPLES = 1200  # Hypothesis-generated
MQTT_CORPUS = 2500  # from the fast seeded generator
NON_ADMIN_EXAMPLES = 300
REPLIES = "$license/reply/fuzz"


@pytest.fixture(scope="module")
def fuzz_broker(tmp_path_factory):
    from tests.helpers.activation import start_vendor

    tmp = tmp_path_factory.mktemp("fuzz")
    with start_vendor(tmp / "vendor") as vendor:
        broker = BrokerProcess(
            tmp,
            tmp / "state",
            vendor_url=vendor.url,
            vendor_public_key=vendor.public_key_text,
            http_timeout=2.0,
            request_burst=100_000,  # every fuzzed non-admin request answered, none rate limited
        ).start()
        clients: list[MqttClient] = []
        try:
            admin = MqttClient(broker.port, client_id="fuzz", username=ADMIN, password=ADMIN_PASSWORD)
            anon = MqttClient(broker.port, client_id="anon")
            reader = MqttClient(broker.port, client_id="dash", username=READER, password=READER_PASSWORD)
            clients += [admin, anon, reader]
            for name, c in zip(("admin", "anon", "reader"), clients, strict=True):
                assert c.connect() == 0, name
            # QoS 0 subscriptions: amqtt + paho take ~44 ms per QoS 1 delivery (delayed ACKs), ~1 ms per QoS 0
            assert admin.subscribe(REPLIES + "/#", qos=0) == 0
            assert anon.subscribe("$license/reply/anon", qos=0) == 0
            assert reader.subscribe(protocol.STATUS_TOPIC) == 1
            assert reader.subscribe(protocol.EVENTS_TOPIC) == 1
            yield {"broker": broker, "admin": admin, "anon": anon, "reader": reader, "stats": {"sent": 0}, "codes": {}}
        finally:
            for c in clients:
                c.close()
            broker.terminate()


def round_trip(client: MqttClient, reply_root: str, topic: str, payload: bytes, timeout: float = 10.0) -> Any:
    n = len(client.messages)
    client.publish(topic, payload, qos=0)
    deadline = time.monotonic() + timeout
    with client.message_arrived:
        ok = client.message_arrived.wait_for(
            lambda: any(m.topic.startswith(reply_root) for m in client.messages[n:]), deadline - time.monotonic()
        )
    assert ok, f"no reply to {topic!r} {payload[:80]!r}"
    message = next(m for m in client.messages[n:] if m.topic.startswith(reply_root))
    return decode_any(bytes(message.payload))


def expect_error_reply(reply: Any, topic: str, payload: bytes) -> str:
    assert isinstance(reply, dict), reply
    if reply.get("ok") is True:
        # a plain status request, or an offline request with a well-formed key (no vendor involved)
        # and its cancel, or the recent events (a read, like status)
        if topic == "$license/events/recent":
            assert isinstance(reply.get("events"), list), reply
            return "ok"
        offline = ("$license/offline/request", "$license/offline/cancel")
        assert topic in (protocol.STATUS_TOPIC, *offline), (topic, payload[:200], reply)
        assert isinstance(reply.get("status"), dict)
        return "ok"
    assert reply.get("ok") is False, reply
    code = reply["error"]["code"]
    assert code in ERROR_CODES, reply
    assert code != ErrorCode.INTERNAL_ERROR, (topic, payload[:300], reply)
    assert isinstance(reply["error"]["message"], str) and reply["error"]["message"]
    return code


@pytest.mark.timeout(150)
def test_fuzz_every_license_topic_through_a_real_broker(fuzz_broker):
    env = fuzz_broker
    admin: MqttClient = env["admin"]
    broker: BrokerProcess = env["broker"]
    stats = env["stats"]
    codes: dict[str, int] = env["codes"]
    rss: dict[str, int] = {}
    # The broker and its clients are the module's: other tests may have used them first.
    messages_before, sent_before = len(admin.messages), stats["sent"]

    @hypothesis_settings(MQTT_EXAMPLES)
    @given(topics, payloads())
    def one(topic, payload):
        stats["sent"] += 1
        if stats["sent"] == 300:
            rss["warm"] = rss_bytes(broker.pid)  # after warm-up: imports, caches, first allocations
        code = expect_error_reply(round_trip(admin, REPLIES, topic, payload), topic, payload)
        codes[code] = codes.get(code, 0) + 1
        if stats["sent"] % 500 == 0:  # the connection still does normal work
            assert round_trip(admin, REPLIES, protocol.STATUS_TOPIC, b'{"correlation_id": "ping"}')["ok"] is True
            stats["sent"] += 1
            assert broker.alive

    started = time.monotonic()
    one()
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    all_topics = [*protocol.OPERATIONS, protocol.STATUS_TOPIC, protocol.EVENTS_TOPIC, "$license/x"]
    for i in range(MQTT_CORPUS * SCALE):
        topic, payload = rng.choice(all_topics), random_payload(rng)
        stats["sent"] += 1
        try:
            code = expect_error_reply(round_trip(admin, REPLIES, topic, payload), topic, payload)
        except AssertionError:
            print(f"seed={seed} example={i} topic={topic} payload={payload[:200]!r}")
            raise
        codes[code] = codes.get(code, 0) + 1
    took = time.monotonic() - started
    time.sleep(0.5)  # any second reply would have arrived by now
    replies = [m for m in admin.messages[messages_before:] if m.topic.startswith(REPLIES)]
    sent = stats["sent"] - sent_before
    assert len(replies) == sent, f"{len(replies)} replies to {sent} requests"
    assert broker.alive
    assert round_trip(admin, REPLIES, protocol.STATUS_TOPIC, b"{}")["ok"] is True
    rss["end"] = rss_bytes(broker.pid)
    # nothing a request carried reached the status/events readers
    reader: MqttClient = env["reader"]
    for m in reader.messages:
        doc = json.loads(m.payload)
        assert ("state" in doc) if m.topic == protocol.STATUS_TOPIC else ("type" in doc), m.payload[:200]
    growth = rss["end"] - rss["warm"]
    print(
        f"{stats['sent']} requests in {took:.1f}s, codes {dict(sorted(codes.items()))}, "
        f"broker RSS {rss['warm'] / 2**20:.1f} -> {rss['end'] / 2**20:.1f} MiB"
    )
    assert growth < 12 * 2**20, f"broker RSS grew {growth / 2**20:.1f} MiB over {stats['sent']} requests"
    assert len(codes) >= 8, codes  # the generator reached many different error paths


@pytest.mark.timeout(60)
def test_fuzz_as_non_admin_is_always_not_authorized(fuzz_broker):
    anon: MqttClient = fuzz_broker["anon"]
    sent = {"n": 0}

    @hypothesis_settings(NON_ADMIN_EXAMPLES)
    @given(topics, payloads())
    def one(topic, payload):
        reply = round_trip(anon, "$license/reply/anon", topic, payload)
        sent["n"] += 1
        assert reply["ok"] is False and reply["error"]["code"] == "not_authorized", reply

    one()
    time.sleep(0.3)
    assert len([m for m in anon.messages if m.topic.startswith("$license/reply/anon")]) == sent["n"]
    assert fuzz_broker["broker"].alive


def test_known_tricky_requests_are_answered(fuzz_broker):
    """Deterministic probes of the paths random generation reaches only rarely."""
    admin: MqttClient = fuzz_broker["admin"]
    probes: list[tuple[str, bytes]] = []
    for payload in (
        b'{"correlation_id": NaN}',
        b'{"correlation_id": Infinity}',
        b'{"license_key": -Infinity}',
        b'{"method": NaN, "license_key": "x"}',
        b"NaN",
        b'{"features": [NaN]}',
        b'"\\ud800"',
        b'{"correlation_id": "\\ud800"}',
        b'{"reply_to": "$license/reply/fuzz/\\u0000"}',
    ):
        probes += [("$license/activate", payload), ("$license/status", payload)]
    for url in WEIRD_URLS:
        body = {"method": "floating", "server_url": url, "correlation_id": "u"}
        probes.append(("$license/activate", encode_json(body, True)))
        packed = pack(body)
        if packed is not None:
            probes.append(("$license/activate", packed))
    for text in ARMOUR:
        probes.append(("$license/activate", encode_json({"method": "offline", "usage_license": text}, True)))
    probes.append(("$license/activate", encode_json({"license_key": format_key(bytes(15))}, True)))
    probes.append(("$license/offline/request", encode_json({"license_key": "MQL1-" + "0" * 5000}, True)))
    seen: dict[str, int] = {}
    for topic, payload in probes:
        reply = round_trip(admin, REPLIES, topic, payload)
        code = expect_error_reply(reply, topic, payload)
        seen[code] = seen.get(code, 0) + 1
        assert not (topic == "$license/activate" and reply["ok"]), (payload, reply)
    assert math.isnan(json.loads("NaN"))  # the decoder really sees NaN (Python's json accepts it)
    assert {"server_unreachable", "invalid_field", "invalid_code"} <= set(seen), seen
