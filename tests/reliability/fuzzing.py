"""What the fuzz tests send: Hypothesis strategies for ``$license/*`` topics and payloads, and a
fast seeded generator of the same kinds for volume (Hypothesis draws ~150 payloads/s). Used by
test_fuzz_decode.py (the decoder in process) and test_fuzz_broker.py (a real broker)."""

from __future__ import annotations

import json
import random
from typing import Any

import msgpack
from hypothesis import assume
from hypothesis import strategies as st

from mqtt_licensing.core import protocol
from mqtt_licensing.core.keys import format_key

MAX_PAYLOAD = protocol.DEFAULT_MAX_PAYLOAD
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


def pack(value: Any) -> bytes | None:
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
        packed = pack(draw(msgpack_values if kind == "msgpack" else request_dicts()))
        assume(packed is not None)
        return packed  # type: ignore[return-value]
    if kind == "request_json":
        return encode_json(draw(request_dicts()), draw(st.booleans()))
    if kind == "coherent_json":
        return encode_json(draw(coherent_requests()), draw(st.booleans()))
    if kind == "coherent_msgpack":
        packed = pack(draw(coherent_requests()))
        assume(packed is not None)
        return packed  # type: ignore[return-value]
    if kind == "truncated":
        whole = pack(draw(request_dicts())) if draw(st.booleans()) else encode_json(draw(request_dicts()), True)
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
        return (pack(body) if rng.random() < 0.5 else None) or encode_json(body, rng.random() < 0.5)
    body = {name: _random_value(rng) for name in rng.sample(FIELDS, rng.randrange(0, len(FIELDS) + 1))}
    if kind in (1, 2):
        return encode_json(body, rng.random() < 0.5)
    if kind == 3:
        return pack(body) or b"\x80"
    if kind == 4:
        whole = pack(body) if rng.random() < 0.5 else encode_json(body, True)
        whole = whole or b"{}"
        return whole[: rng.randrange(0, len(whole))]
    if kind == 5:
        depth = rng.randrange(100, 60_000)
        return rng.choice([b"[" * depth, b"\x81\xa1a" + b"\x91" * depth + b"\xc0", b'{"a":' * depth])[:MAX_PAYLOAD]
    size = rng.randrange(MAX_PAYLOAD - 300, MAX_PAYLOAD + 300)
    return json.dumps({"license_key": "x" * size, "correlation_id": "big"}).encode()[: size + rng.randrange(0, 40)]
