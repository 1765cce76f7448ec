"""Fuzzing every ``$license/*`` topic (Hypothesis).

* In process, at volume: :func:`core.protocol.decode_request` on random bytes, truncated and
  deeply nested msgpack/JSON, wrong types in every field, NaN/Infinity, unicode - it returns
  a request or raises a typed :class:`RequestError`, and the error reply always encodes.
* Against a real broker (the CLI, in a subprocess): a few thousand generated requests from
  an admin, one at a time, each must get exactly one reply, ``ok: false`` with a documented
  error code (never ``internal_error``) - ``ok: true`` only for a plain status request. The
  broker process stays alive, the admin's connection keeps working, a reader subscribed to
  ``$license/status`` and ``$license/events`` never sees a request, and the broker's
  resident memory stays flat. A non-admin gets ``not_authorized`` for every payload.
"""

from __future__ import annotations

import json
import math
import random
import time
from typing import Any

import msgpack
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

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
from tests.reliability.support import (
    ERROR_CODES,
    SCALE,
    BrokerProcess,
    decode_any,
    hypothesis_settings,
    rss_bytes,
)

MAX_PAYLOAD = protocol.DEFAULT_MAX_PAYLOAD
DECODE_CODES = {"malformed_payload", "payload_too_large", "invalid_field", "invalid_reply_to", "unknown_operation"}
FIELDS = ("method", "license_key", "usage_license", "server_url", "features", "correlation_id", "reply_to")

# -- strategies -------------------------------------------------------------------------------

# topics: every operation, the non-request $license topics, and made-up ones (no wildcards, no NUL)
topic_text = st.text(st.characters(blacklist_characters="+#\x00", blacklist_categories=["Cs"]), max_size=24)
topics = st.one_of(
    st.sampled_from(
        [
            *protocol.OPERATIONS,
            protocol.STATUS_TOPIC,
            protocol.EVENTS_TOPIC,
            "$license/reply/fuzz",
            "$license/",
            "$license/activate/x",
            "$license/offline",
            "$license/STATUS",
        ]
    ),
    topic_text.map(lambda s: "$license/" + s),
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    # long strings, cheaply: a repeated character of 1, 2 or 4 UTF-8 bytes
    st.tuples(st.sampled_from("x\u00e9\u20ac\U0001f600"), st.integers(0, 4000)).map(lambda t: t[0] * t[1]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=10), inner, max_size=5)),
    max_leaves=12,
)
msgpack_values = st.recursive(
    st.one_of(scalars, st.binary(max_size=64)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(st.one_of(st.text(max_size=10), st.binary(max_size=8)), inner, max_size=5),
    ),
    max_leaves=12,
)
# a well-formed key (valid checksum, unknown to the vendor): reaches the vendor and fails there
well_formed_keys = st.binary(min_size=15, max_size=15).map(format_key)
# server URLs: malformed ones, and 127.0.0.1 on a closed port; never a host name to look up
WEIRD_URLS = [
    "http://[::1",
    "\x00",
    "http://127.0.0.1:99999",
    "http://127.0.0.1:1/\udc80",
    "abc",
    "ftp://127.0.0.1/",
    "http://127.0.0.1:1",
    "http://127.0.0.1:-5",
    "http://127.0.0.1:1/\x00",
    "https://127.0.0.1:1",
    "http://127.0.0.1:1/" + "x" * 2100,
    "\u00e9://127.0.0.1",
]
ARMOUR = [
    "-----BEGIN MQTT LICENSING USAGE LICENSE-----\nABC\n=XYZ\n-----END MQTT LICENSING USAGE LICENSE-----",
    "-----BEGIN MQTT LICENSING USAGE REQUEST-----\n0000\n=00000000\n-----END MQTT LICENSING USAGE REQUEST-----",
    "-----BEGIN MQTT LICENSING USAGE LICENSE-----",
    "=" * 10,
    "\n" * 50,
]
# values a confused or malicious client puts in each field
field_values = st.one_of(
    json_values,
    well_formed_keys,
    st.sampled_from(["online", "offline", "floating", "", " ", "ONLINE", "telepathy"]),
    st.sampled_from(WEIRD_URLS + ARMOUR),
    st.sampled_from(
        [
            "$license/reply/fuzz",
            "$license/reply/fuzz/x",
            "$license/reply/other",
            "$license/reply/fuzz/#",
            "$license/reply/fuzz/+",
            "plant/data",
            "",
            "$license/reply/fuzz/\u00e9",
        ]
    ),
    st.lists(st.sampled_from(["mqtt_server", "iot_bridge_snowflake", "nope", ""]), max_size=4),
)


@st.composite
def request_dicts(draw: Any) -> dict[Any, Any]:
    """Request-shaped maps: some real field names with wrong (or right) types, plus noise."""
    body: dict[Any, Any] = {}
    for name in draw(st.lists(st.sampled_from(FIELDS), unique=True, max_size=len(FIELDS))):
        body[name] = draw(field_values)
    if draw(st.booleans()):
        body.update(draw(st.dictionaries(st.text(max_size=8), json_values, max_size=3)))
    return body


@st.composite
def coherent_requests(draw: Any) -> dict[Any, Any]:
    """A well-formed request for one activation method - then, often, one field made wrong."""
    method = draw(st.sampled_from(["online", "offline", "floating"]))
    body: dict[Any, Any] = {"method": method}
    if method == "online":
        body["license_key"] = draw(st.one_of(well_formed_keys, st.text(max_size=60)))
    elif method == "offline":
        body["usage_license"] = draw(st.one_of(st.sampled_from(ARMOUR), st.text(max_size=200)))
    else:
        body["server_url"] = draw(st.sampled_from(WEIRD_URLS))
        if draw(st.booleans()):
            body["features"] = draw(st.lists(st.sampled_from(["mqtt_server", "iot_bridge_snowflake"]), max_size=2))
    if draw(st.booleans()):
        body["correlation_id"] = draw(st.one_of(st.text(max_size=300), st.integers(-(2**64), 2**64)))
    if draw(st.booleans()):
        body[draw(st.sampled_from(sorted(body)))] = draw(field_values)
    return body


def encode_json(value: Any, ascii_only: bool) -> bytes:
    return json.dumps(value, allow_nan=True, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def _pack(value: Any) -> bytes | None:
    try:
        return msgpack.packb(value, use_bin_type=True)
    except (ValueError, OverflowError, TypeError, UnicodeEncodeError):
        return None


@st.composite
def payloads(draw: Any) -> bytes:
    kind = draw(
        st.sampled_from(
            [
                "bytes",
                "json",
                "msgpack",
                "truncated",
                "deep",
                "huge",
                "request_json",
                "request_msgpack",
                "coherent_json",
                "coherent_msgpack",
            ]
        )
    )
    if kind == "bytes":
        return draw(st.binary(max_size=2048))
    if kind == "json":
        return encode_json(draw(json_values), draw(st.booleans()))
    if kind in ("msgpack", "request_msgpack"):
        packed = _pack(draw(msgpack_values if kind == "msgpack" else request_dicts()))
        assume(packed is not None)
        return packed  # type: ignore[return-value]
    if kind == "request_json":
        return encode_json(draw(request_dicts()), draw(st.booleans()))
    if kind == "coherent_json":
        return encode_json(draw(coherent_requests()), draw(st.booleans()))
    if kind == "coherent_msgpack":
        packed = _pack(draw(coherent_requests()))
        assume(packed is not None)
        return packed  # type: ignore[return-value]
    if kind == "truncated":
        whole = _pack(draw(request_dicts())) if draw(st.booleans()) else encode_json(draw(request_dicts()), True)
        assume(whole is not None and len(whole) > 1)
        assert whole is not None  # assume() above has discarded the draw otherwise
        return whole[: draw(st.integers(1, len(whole) - 1))]
    if kind == "deep":
        depth = draw(st.integers(100, 60_000))
        return draw(
            st.sampled_from(
                [
                    b"[" * depth + b"]" * depth,
                    b'{"a":' * depth + b"1" + b"}" * depth,
                    b"\x81\xa1a" + b"\x91" * depth + b"\xc0",  # a msgpack map holding deep arrays
                    b"\x81\xa1a" + b"\x81\xa1a" * depth + b"\xc0",
                ]
            )
        )[:MAX_PAYLOAD]
    # huge: a request whose size sits just under, at or over max_payload
    size = draw(st.integers(MAX_PAYLOAD - 300, MAX_PAYLOAD + 300))
    filler = draw(st.sampled_from(["x", "\u00e9", "\U0001f600", "A"]))
    body = json.dumps({"license_key": "", "correlation_id": "big"}, ensure_ascii=False)
    need = max(0, size - len(body.encode()))
    text = (filler * need).encode()[:need].decode("utf-8", "ignore")
    return json.dumps({"license_key": text, "correlation_id": "big"}, ensure_ascii=False).encode()


# -- a fast seeded generator of the same kinds, for volume (Hypothesis draws ~150 payloads/s) ----

_WRONG = [
    None,
    True,
    False,
    0,
    -1,
    2**63,
    -(2**63) - 1,
    1.5,
    float("nan"),
    float("inf"),
    "",
    " ",
    "x" * 5000,
    "\u00e9\U0001f600",
    "\ud800",
    [],
    [1, [2, [3]]],
    {},
    {"a": {"b": None}},
    ["mqtt_server"] * 100,
    "MQL1-00000-00000-00000-00000-0000R-VN5VT",
    "$license/reply/fuzz/x",
    "$license/reply/other",
    "#",
]


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if roll < 0.45 or depth > 3:
        return rng.choice(_WRONG)
    if roll < 0.6:
        return rng.randrange(-(2**70), 2**70)
    if roll < 0.7:
        return "".join(chr(rng.randrange(1, 0x2FFFF)) for _ in range(rng.randrange(0, 30)))
    if roll < 0.85:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    return {rng.choice(FIELDS + ("x", "")): _random_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))}


def _coherent(rng: random.Random) -> dict[str, Any]:
    method = rng.choice(["online", "offline", "floating"])
    body: dict[str, Any] = {"method": method}
    if method == "online":
        body["license_key"] = format_key(rng.randbytes(15)) if rng.random() < 0.5 else rng.choice(_WRONG)
    elif method == "offline":
        body["usage_license"] = rng.choice(ARMOUR)
    else:
        body["server_url"] = rng.choice(WEIRD_URLS)
        if rng.random() < 0.5:
            body["features"] = rng.choice([["mqtt_server"], ["iot_bridge_snowflake"], "mqtt_server", ["x"], []])
    if rng.random() < 0.5:
        body[rng.choice(sorted(body))] = _random_value(rng)
    return body


def random_payload(rng: random.Random) -> bytes:
    kind = rng.randrange(8)
    if kind == 0:
        return rng.randbytes(rng.randrange(0, 3000))
    if kind == 7:
        body = _coherent(rng)
        return (_pack(body) if rng.random() < 0.5 else None) or encode_json(body, rng.random() < 0.5)
    body = {name: _random_value(rng) for name in rng.sample(FIELDS, rng.randrange(0, len(FIELDS) + 1))}
    if kind in (1, 2):
        return encode_json(body, rng.random() < 0.5)
    if kind == 3:
        return _pack(body) or b"\x80"
    if kind == 4:
        whole = _pack(body) if rng.random() < 0.5 else encode_json(body, True)
        whole = whole or b"{}"
        return whole[: rng.randrange(0, len(whole))]
    if kind == 5:
        depth = rng.randrange(100, 60_000)
        return rng.choice([b"[" * depth, b"\x81\xa1a" + b"\x91" * depth + b"\xc0", b'{"a":' * depth])[:MAX_PAYLOAD]
    size = rng.randrange(MAX_PAYLOAD - 300, MAX_PAYLOAD + 300)
    return json.dumps({"license_key": "x" * size, "correlation_id": "big"}).encode()[: size + rng.randrange(0, 40)]


# -- in process: the decoder -----------------------------------------------------------------


def check_decode(topic: str, payload: bytes, client_id: str = "fuzz", max_payload: int = MAX_PAYLOAD) -> None:
    try:
        request = protocol.decode_request(topic, payload, client_id, max_payload=max_payload)
    except protocol.RequestError as exc:
        assert exc.code in DECODE_CODES, exc
        assert exc.encoding in ("json", "msgpack")
        assert protocol.reply_topic_allowed(exc.reply_to, client_id)
        reply = decode_any(
            protocol.error_reply(exc, encoding=exc.encoding, operation=exc.operation, correlation_id=exc.correlation_id)
        )
        assert reply["ok"] is False and reply["error"]["code"] == exc.code
        if len(payload) > max_payload:
            assert exc.code == "payload_too_large"
        return
    assert len(payload) <= max_payload
    assert request.operation in protocol.OPERATIONS.values()
    assert protocol.reply_topic_allowed(request.reply_to, client_id)
    assert "+" not in request.reply_to and "#" not in request.reply_to
    assert isinstance(request.fields, dict)
    reply = decode_any(protocol.success_reply(request, {"status": {}}))
    assert reply["ok"] is True


@hypothesis_settings(2000)
@given(topics, st.binary(max_size=4096))
def test_decode_random_bytes(topic, payload):
    check_decode(topic, payload)


@hypothesis_settings(800)
@given(topics, payloads())
def test_decode_generated_payloads(topic, payload):
    check_decode(topic, payload)


@hypothesis_settings(300)
@given(topics, payloads(), st.integers(0, 512))
def test_decode_respects_any_size_limit(topic, payload, limit):
    check_decode(topic, payload, max_payload=limit)


def test_decode_seeded_random_corpus():
    """Volume: 25,000 payloads from the fast generator, every topic, a random size limit now and then."""
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    all_topics = [*protocol.OPERATIONS, protocol.STATUS_TOPIC, protocol.EVENTS_TOPIC, "$license/x", "$license/"]
    for i in range(25_000 * SCALE):
        payload = random_payload(rng)
        limit = rng.randrange(0, 4096) if i % 10 == 0 else MAX_PAYLOAD
        try:
            check_decode(rng.choice(all_topics), payload, max_payload=limit)
        except AssertionError:
            print(f"seed={seed} example={i} payload={payload[:200]!r}")
            raise


@hypothesis_settings(300)
@given(request_dicts())
def test_decoded_reply_to_never_leaves_the_clients_subtree(body):
    for encoded in (encode_json(body, True), _pack(body)):
        if encoded is None:
            continue
        try:
            request = protocol.decode_request("$license/status", encoded, "fuzz")
        except protocol.RequestError:
            continue
        assert request.reply_to == "$license/reply/fuzz" or request.reply_to.startswith("$license/reply/fuzz/")


# -- against a real broker -------------------------------------------------------------------

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
        packed = _pack(body)
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
