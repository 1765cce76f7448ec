"""The principals of the security tests (test_security_*.py): a broker's reader and a plain user,
with cheap password hashes (tests connect them often), and how the tests ask and listen."""

from __future__ import annotations

from typing import Any

from mqtt_licensing.core.passwords import hash_password
from tests.helpers.broker import READER, READER_PASSWORD, MqttClient
from tests.reliability.support import decode_any

PLAIN, PLAIN_PASSWORD = "plain", "plain-secret"
USERS = {READER: hash_password(READER_PASSWORD, n=2**10), PLAIN: hash_password(PLAIN_PASSWORD, n=2**10)}


def ask(client: MqttClient, topic: str, payload: bytes, reply_topic: str, timeout: float = 10) -> dict[str, Any]:
    n = len(client.messages)
    client.publish(topic, payload)
    return decode_any(bytes(client.wait_message(reply_topic, timeout=timeout, after=n).payload))


def license_messages(client: MqttClient) -> list[Any]:
    return [m for m in client.messages if m.topic.startswith("$license")]
