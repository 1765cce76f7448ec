"""Fuzzing the request decoder in process, at volume (Hypothesis and a seeded generator,
tests/reliability/fuzzing.py): :func:`core.protocol.decode_request` on random bytes, truncated and
deeply nested msgpack/JSON, wrong types in every field, NaN/Infinity, unicode - it returns a
request or raises a typed :class:`RequestError`, and the error reply always encodes. The same
payloads through a real broker: test_fuzz_broker.py.
"""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from mqtt_licensing.core import protocol
from tests.reliability.fuzzing import MAX_PAYLOAD, encode_json, pack, payloads, random_payload, request_dicts, topics
from tests.reliability.support import SCALE, decode_any, hypothesis_settings

DECODE_CODES = {"malformed_payload", "payload_too_large", "invalid_field", "invalid_reply_to", "unknown_operation"}


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
    for encoded in (encode_json(body, True), pack(body)):
        if encoded is None:
            continue
        try:
            request = protocol.decode_request("$license/status", encoded, "fuzz")
        except protocol.RequestError:
            continue
        assert request.reply_to == "$license/reply/fuzz" or request.reply_to.startswith("$license/reply/fuzz/")
