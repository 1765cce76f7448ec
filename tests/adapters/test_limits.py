"""Timeouts and limits (issue 9 item 5): CONNECT timeout, maximum packet size, keepalive, and
the open-file limit. Each against a real broker with raw MQTT 3.1.1 sockets."""

from __future__ import annotations

import re
import resource
import subprocess
from pathlib import Path

import yaml

from mqtt_licensing.adapters.amqtt.runner import BrokerThread
from mqtt_licensing.servers._run import free_port
from tests.helpers.broker import (
    BrokerHandle,
    MqttClient,
    RawClient,
    broker_config,
    connect_packet,
    start_broker,
    wait_for,
)
from tests.reliability.support import CLI, wait_port


def test_a_socket_that_never_sends_connect_is_closed_after_connect_timeout(tmp_path, vendor):
    with start_broker(tmp_path / "s", vendor=vendor, connect_timeout=1) as broker:
        idle = [RawClient(broker.port) for _ in range(3)]
        try:
            assert all(c.closed_by_broker(timeout=10) for c in idle)
        finally:
            for c in idle:
                c.close()
        with MqttClient(broker.port, client_id="legit") as legit:
            assert legit.connect() == 0
            # One timer sweeps every CONNECT deadline: it ends the next silent socket, and never
            # the connection whose CONNECT was read before its deadline.
            with RawClient(broker.port) as late:
                assert late.closed_by_broker(timeout=10)
            assert legit.subscribe("plain/alive") in (0, 1)
            legit.publish("plain/alive", b"still here")
            assert legit.wait_message("plain/alive").payload == b"still here"


def test_a_connect_cut_off_midway_frees_its_listener_slot(tmp_path, vendor, caplog):
    """A socket closed in the middle of its CONNECT: its slot of the listener's max_connections is
    given back and nothing is logged as unhandled (amqtt's slot stayed taken, with a traceback)."""
    handle = BrokerHandle(tmp_path / "s", vendor=vendor)
    config = handle.config
    config["listeners"]["default"]["max_connections"] = 2
    with BrokerThread(config):
        for _ in range(3):
            with RawClient(handle.port) as cut:
                cut.send(connect_packet("cut-off")[:-3])
        with RawClient(handle.port) as legit:
            assert legit.connect("legit") == 0
    assert "Unhandled exception" not in caplog.text


def oversized_publish_header(topic: str, size: int) -> bytes:
    body_length = 2 + len(topic) + size
    encoded = bytearray()
    n = body_length
    while True:
        byte, n = n % 128, n // 128
        encoded.append(byte | (0x80 if n else 0))
        if not n:
            break
    return b"\x30" + bytes(encoded) + len(topic).to_bytes(2, "big") + topic.encode()


def test_oversized_publish_is_refused_before_it_is_buffered(tmp_path, vendor):
    """amqtt reads a whole PUBLISH (64 MiB: RSS 55 -> 233 MiB) before any size check. The
    connection is closed after the header, while most of the payload was never sent."""
    with (
        start_broker(tmp_path / "s", vendor=vendor, max_packet_size=64 * 1024) as broker,
        MqttClient(broker.port, client_id="reader") as reader,
        MqttClient(broker.port, client_id="writer") as writer,
    ):
        assert reader.connect() == 0 and writer.connect() == 0
        assert reader.subscribe("plain/big") in (0, 1)
        writer.publish("plain/big", b"x" * 60_000)  # under the limit: delivered
        assert len(reader.wait_message("plain/big").payload) == 60_000
        with RawClient(broker.port) as attacker:
            assert attacker.connect("attacker") == 0
            attacker.send(oversized_publish_header("plain/big", 8 * 1024 * 1024) + b"x" * 4096)
            assert attacker.closed_by_broker(timeout=10)
        n = len(reader.messages)
        writer.publish("plain/big", b"after")
        assert reader.wait_message("plain/big", after=n).payload == b"after"


def test_silent_client_is_disconnected_after_one_and_a_half_keepalives_and_its_seat_freed(tmp_path, vendor):
    with start_broker(tmp_path / "s", vendor=vendor, trial_max_connections=1) as broker:
        with RawClient(broker.port) as silent:
            assert silent.connect("silent", keepalive=1) == 0
            with MqttClient(broker.port, client_id="waiting") as refused:
                assert refused.connect() == 5  # the one seat is taken
            assert silent.closed_by_broker(timeout=10)
        wait_for(lambda: broker.status()["connections"] == 0, 10, message="the silent client's seat was not freed")
        with MqttClient(broker.port, client_id="next") as c:
            assert c.connect() == 0


def test_broker_raises_its_open_file_limit_to_the_hard_limit_and_logs_it(tmp_path, vendor):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = min(256, hard)
    port = free_port()
    config = broker_config(port, tmp_path / "state", vendor_url=None, vendor_public_key=vendor.public_key_text)
    path = tmp_path / "broker.yaml"
    path.write_text(yaml.safe_dump(config))
    log = tmp_path / "broker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [CLI, "broker", "-c", str(path)],
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard)),
        )
    try:
        wait_port(port, 20, proc)
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        match = re.search(r"Max open files\s+(\d+)\s+(\d+)", limits)
        assert match is not None
        assert int(match.group(1)) == int(match.group(2)) == hard
        assert f"open-file limit: {hard}" in log.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
