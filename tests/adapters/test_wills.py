"""Only the agent publishes on ``$license/...`` (issue 9 item 3). A will is the one thing a
client can make amqtt publish without passing the publish path: amqtt broadcast and retained
it on any topic, so a dropped connection could forge the retained status, an event or a reply.

The rule chosen: a will on a ``$`` topic is dropped when it would fire (the client keeps its
connection; nothing is published or retained), through TCP and WebSocket listeners alike.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from websockets.sync.client import connect as ws_connect

from mqtt_licensing.adapters.amqtt.runner import BrokerThread
from mqtt_licensing.servers._run import free_port
from tests.helpers.broker import (
    ADMIN,
    ADMIN_PASSWORD,
    READER,
    READER_PASSWORD,
    MqttClient,
    RawClient,
    broker_config,
    connect_packet,
    wait_for,
)

FORGED = b'{"state": "active", "forged": true}'
WILLS = [
    ("$license/status", FORGED, True),
    ("$license/events", b'{"event": "forged"}', False),
    ("$license/reply/ops", b'{"ok": true, "forged": true}', False),
    ("$license/status", b"", True),  # an empty retained will would clear the status
    ("plain/will", b"control", False),  # the control: wills still work elsewhere
]


def will_over_tcp(port: int, client_id: str, will: tuple[str, bytes, bool]) -> None:
    with RawClient(port) as c:
        assert c.connect(client_id, will=will) == 0
    # closed without DISCONNECT: the will fires


def will_over_websocket(port: int, client_id: str, will: tuple[str, bytes, bool]) -> None:
    with ws_connect(f"ws://127.0.0.1:{port}/", subprotocols=["mqtt"], open_timeout=10) as ws:  # type: ignore[list-item]
        ws.send(connect_packet(client_id, will=will))
        connack = ws.recv(timeout=10)
        assert isinstance(connack, bytes) and connack[:4] == b"\x20\x02\x00\x00"


async def _all_disconnected(thread: BrokerThread, client_ids: list[str]) -> bool:
    """On the broker's loop: none of these clients has a connected session."""
    assert thread.broker is not None
    sessions = thread.broker.sessions
    return all(cid not in sessions or sessions[cid][0].transitions.state != "connected" for cid in client_ids)


@pytest.mark.parametrize("transport", ["tcp", "websocket"])
def test_a_will_never_forges_license_status_events_or_replies(tmp_path, vendor, transport):
    tcp_port, ws_port = free_port(), free_port()
    config = broker_config(
        tcp_port,
        tmp_path / "s",
        vendor_url=vendor.url,
        vendor_public_key=vendor.public_key_text,
        ws_allow_anonymous=True,
    )
    config["listeners"]["ws"] = {"type": "ws", "bind": f"127.0.0.1:{ws_port}"}
    send_will: Callable[[int, str, tuple[str, bytes, bool]], None]
    send_will, port = (will_over_tcp, tcp_port) if transport == "tcp" else (will_over_websocket, ws_port)
    with (
        BrokerThread(config) as thread,
        MqttClient(tcp_port, client_id="dash", username=READER, password=READER_PASSWORD) as reader,
        MqttClient(tcp_port, client_id="ops", username=ADMIN, password=ADMIN_PASSWORD) as admin,
        MqttClient(tcp_port, client_id="plain") as plain,  # readers may use $license/... only
    ):
        assert reader.connect() == 0 and admin.connect() == 0 and plain.connect() == 0
        assert reader.subscribe("$license/status") == 1 and reader.subscribe("$license/events") == 1
        assert plain.subscribe("plain/will") in (0, 1)
        assert admin.subscribe("$license/reply/ops") == 1
        original = reader.wait_message("$license/status").payload
        n_reader, n_admin = len(reader.messages), len(admin.messages)
        for i, will in enumerate(WILLS):
            send_will(port, f"attacker-{i}", will)
        assert plain.wait_message("plain/will").payload == b"control"
        # Every attacker's connection has ended, so each will was dropped or queued by now. A later
        # message for each victim is then broadcast after any of them: the reply to a refused
        # reactivate for the admin, and its command_failed event for the reader.
        attackers = [f"attacker-{i}" for i in range(len(WILLS))]
        wait_for(lambda: thread.call(_all_disconnected(thread, attackers)), message="attackers still connected")
        admin.publish("$license/reactivate", b'{"correlation_id": "after-the-wills"}')
        wait_for(lambda: any(b"after-the-wills" in m.payload for m in admin.messages[n_admin:]))
        wait_for(lambda: any(b"command_failed" in m.payload for m in reader.messages[n_reader:]))
        later = [m for m in reader.messages[n_reader:] if m.topic.startswith("$")]
        # The agent's own messages only (the refusal may republish the status): none forged, none empty.
        assert [m.payload for m in later if b"forged" in m.payload or not m.payload] == []
        assert [m.topic for m in later if b"command_failed" in m.payload] == ["$license/events"]
        assert [b"after-the-wills" in m.payload for m in admin.messages[n_admin:]] == [True]
        with MqttClient(tcp_port, client_id="late", username=READER, password=READER_PASSWORD) as late:
            assert late.connect() == 0
            assert late.subscribe("$license/status") == 1
            # the retained status is the agent's (the refusal may have republished it): not forged, not emptied
            retained = json.loads(late.wait_message("$license/status").payload)
            assert "forged" not in retained and retained["state"] == json.loads(original)["state"]
