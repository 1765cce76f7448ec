"""MQTT 5 clients on licensed Mosquitto: activation with response topic and correlation data,
refusal reason codes, and a 64 MiB ``$license`` publish that never reaches the agent."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.helpers.broker import ADMIN, ADMIN_PASSWORD
from tests.helpers.mosquitto import MosquittoHandle


class Client5:
    def __init__(self, port: int, client_id: str, username: str | None = None, password: str | None = None) -> None:
        self.port = port
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.reason: int | None = None
        self.done = threading.Event()
        self.messages: list[mqtt.MQTTMessage] = []
        self.arrived = threading.Condition()
        self.acks: dict[int, int] = {}
        self.acked = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self.reason = int(reason.value)
        self.done.set()

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        with self.arrived:
            self.messages.append(message)
            self.arrived.notify_all()

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: Any, _p: Any) -> None:
        with self.acked:
            self.acks[mid] = int(reason.value)
            self.acked.notify_all()

    def connect(self) -> int:
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        assert self.done.wait(10), "no CONNACK"
        assert self.reason is not None
        return self.reason

    def subscribe(self, topic: str) -> None:
        got = threading.Event()
        self.client.on_subscribe = lambda *_a: got.set()
        self.client.subscribe(topic, qos=1)
        assert got.wait(10)

    def publish(self, topic: str, payload: bytes, properties: Properties | None = None) -> int:
        """Publish QoS 1; the PUBACK's reason code."""
        info = self.client.publish(topic, payload, qos=1, properties=properties)
        with self.acked:
            assert self.acked.wait_for(lambda: info.mid in self.acks, 60), "no PUBACK"
            return self.acks[info.mid]

    def wait_message(self, topic: str, after: int = 0) -> mqtt.MQTTMessage:
        with self.arrived:
            assert self.arrived.wait_for(lambda: any(m.topic == topic for m in self.messages[after:]), 15)
            return next(m for m in self.messages[after:] if m.topic == topic)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def request_properties(response_topic: str, correlation: bytes) -> Properties:
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = response_topic
    props.CorrelationData = correlation
    return props


def test_mqtt5_activate_with_response_topic_and_correlation_data(tmp_path: Path, plugin: Path, vendor) -> None:
    key = vendor.issue(features=["mqtt_server"], max_connections=1)
    with MosquittoHandle(tmp_path / "b", plugin, vendor=vendor) as broker:
        ops = Client5(broker.port, "ops5", ADMIN, ADMIN_PASSWORD)
        try:
            assert ops.connect() == 0
            ops.subscribe("$license/reply/ops5/#")
            reply_topic = "$license/reply/ops5/activation"
            ops.publish(
                "$license/activate",
                json.dumps({"license_key": key}).encode(),
                request_properties(reply_topic, b"\x00corr-1"),
            )
            message = ops.wait_message(reply_topic)
            assert json.loads(message.payload)["status"]["state"] == "active"
            assert message.properties is not None
            assert message.properties.CorrelationData == b"\x00corr-1"  # type: ignore[attr-defined]  # set by name
            # a response topic outside the client's own reply subtree is not honoured
            n = len(ops.messages)
            ops.publish("$license/status", b"{}", request_properties("plant/elsewhere", b"x"))
            assert json.loads(ops.wait_message("$license/reply/ops5", after=n).payload)["ok"] is True
            # gated: one connection licensed, the second is refused with MQTT 5's "Not authorized"
            first, second = Client5(broker.port, "dev-1"), Client5(broker.port, "dev-2")
            try:
                assert first.connect() == 0
                assert second.connect() == 0x87
            finally:
                first.close()
                second.close()
            wrong = Client5(broker.port, "ops-wrong", ADMIN, "wrong")
            try:
                assert wrong.connect() == 0x87  # Mosquitto 2.0.11 sends 0x87 for every BASIC_AUTH refusal
            finally:
                wrong.close()
        finally:
            ops.close()


def test_a_64_mib_license_publish_never_reaches_the_agent(tmp_path: Path, plugin: Path, vendor) -> None:
    with MosquittoHandle(tmp_path / "b", plugin, vendor=vendor) as broker:
        ops = Client5(broker.port, "ops5", ADMIN, ADMIN_PASSWORD)
        try:
            assert ops.connect() == 0
            ops.subscribe("$license/reply/ops5")
            assert ops.publish("$license/status", b"{" + b" " * (64 * 1024 * 1024) + b"}") == 0x87
            assert ops.publish("$license/status", b"{}") < 0x80  # served (0x10: no subscriber reads a request)
            assert json.loads(ops.wait_message("$license/reply/ops5").payload)["ok"] is True
            assert "Denied PUBLISH from ops5" in broker.log()
        finally:
            ops.close()
