"""The license's life through Mosquitto: offline activation by exchanged codes, a floating lease,
reactivation and deactivation, enforce_existing
(the agent kicks through the plugin), kill -9 of Mosquitto and its restart, the License page's
MQTT over Mosquitto's websockets listener."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from mqtt_licensing.core.signing import public_key_to_text
from mqtt_licensing.servers._run import free_port
from mqtt_licensing.servers.activation import ActivationService
from tests.helpers.broker import ADMIN, ADMIN_PASSWORD, MqttClient, RawClient, wait_for
from tests.helpers.floating import start_floating
from tests.helpers.mosquitto import MosquittoHandle

CLI = [sys.executable, "-m", "mqtt_licensing.cli.main"]


def cli(*args: Any) -> str:
    result = subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result.stdout


def test_offline_activation_by_files_with_no_vendor_reachable(tmp_path: Path, plugin: Path) -> None:
    vendor_dir = tmp_path / "vendor"
    ActivationService.open(vendor_dir).close()
    air_gapped = SimpleNamespace(
        url=f"http://127.0.0.1:{free_port()}", public_key_text=(vendor_dir / "vendor.pub").read_text().strip()
    )
    key = cli("vendor", "issue", "--data", vendor_dir, "--model", "offline", "--features", "mqtt_server").strip()
    (tmp_path / "license.txt").write_text(key + "\n")
    with MosquittoHandle(tmp_path / "b", plugin, vendor=air_gapped, trial_seconds=0) as broker:
        login = ["--port", broker.port, "--username", ADMIN, "--password", ADMIN_PASSWORD]
        with RawClient(broker.port) as c:
            assert c.connect("plant") == 5  # no license yet
        cli("offline-request", "--key-file", tmp_path / "license.txt", "--out", tmp_path / "request.txt", *login)
        assert broker.status()["state"] == "pending_offline"
        answer = tmp_path / "usage.txt"
        cli("vendor", "offline-activate", "--data", vendor_dir, "--request", tmp_path / "request.txt", "--out", answer)
        cli("activate", "--usage-license-file", answer, *login)
        assert broker.status()["state"] == "active"
        wait_for(lambda: RawClient(broker.port).connect("plant") == 0)


def test_enforce_existing_disconnects_through_the_plugin(tmp_path: Path, plugin: Path, vendor) -> None:
    key = vendor.issue()
    with MosquittoHandle(
        tmp_path / "b", plugin, vendor=vendor, enforce_existing=True, check_in_interval=0.3, trial_seconds=0
    ) as broker:
        with broker.admin() as admin:
            assert admin.request("activate", {"license_key": key})["status"]["state"] == "active"
        with (
            MqttClient(broker.port, client_id="plant-1") as plant,
            MqttClient(broker.port, client_id="root", username=ADMIN, password=ADMIN_PASSWORD) as admin_client,
        ):
            assert plant.connect() == 0 and admin_client.connect() == 0
            vendor.service.set_status(vendor.license_id(key), "revoked")
            assert plant.disconnected.wait(15), "enforce_existing must disconnect non-admins"
            assert not admin_client.disconnected.is_set(), "admins are never disconnected"
            with RawClient(broker.port) as new:
                assert new.connect("new") == 5


def test_kill_9_of_mosquitto_then_restart_keeps_the_license(tmp_path: Path, plugin: Path, vendor) -> None:
    key = vendor.issue(max_connections=5)
    with MosquittoHandle(tmp_path / "b", plugin, vendor=vendor, persistence=True) as broker:
        with broker.admin() as admin:
            assert admin.request("activate", {"license_key": key})["status"]["state"] == "active"
        with RawClient(broker.port) as c:
            assert c.connect("plant-1") == 0
            broker.kill_broker()
        broker.start_broker()  # the agent's link reconnects by itself
        broker.wait_ready()
        status = broker.status()
        assert status["state"] == "active" and status["connections"] == 0
        with RawClient(broker.port) as c:
            assert c.connect("plant-1") == 0
        with MqttClient(broker.port, client_id="dash", username=ADMIN, password=ADMIN_PASSWORD) as watcher:
            assert watcher.connect() == 0
            assert watcher.subscribe("$license/status") == 1  # retained again after the restart
            assert json.loads(watcher.wait_message("$license/status").payload)["state"] == "active"


def test_the_license_page_reaches_the_agent_over_mosquittos_websockets(tmp_path: Path, plugin: Path, vendor) -> None:
    http_port, ws_port = free_port(), free_port()
    with MosquittoHandle(tmp_path / "b", plugin, vendor=vendor, ws_port=ws_port, http_bind=f"127.0.0.1:{http_port}"):
        config = httpx.get(f"http://127.0.0.1:{http_port}/page-config.json", timeout=10).json()
        assert config["ws_port"] == ws_port
        page = httpx.get(f"http://127.0.0.1:{http_port}/", timeout=10)
        assert page.status_code == 200 and "<html" in page.text.lower()
        metrics = httpx.get(f"http://127.0.0.1:{http_port}/metrics", timeout=10).text
        assert 'mqtt_license_state{state="trial"} 1.0' in metrics
        # what the page's MQTT.js does: an admin over MQTT over WebSocket, a status request
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="page-1", transport="websockets", protocol=mqtt.MQTTv311
        )
        client.username_pw_set(ADMIN, ADMIN_PASSWORD)
        replies: list[bytes] = []
        got = threading.Event()
        subscribed = threading.Event()

        def on_message(_c: Any, _u: Any, m: mqtt.MQTTMessage) -> None:
            replies.append(bytes(m.payload))
            got.set()

        client.on_message = on_message
        client.on_subscribe = lambda *_a: subscribed.set()
        client.connect("127.0.0.1", ws_port)
        client.loop_start()
        try:
            client.subscribe("$license/reply/page-1", 1)
            assert subscribed.wait(10)
            client.publish("$license/status", b'{"correlation_id": "p1"}', qos=1)
            assert got.wait(10)
            reply = json.loads(replies[0])
            assert reply["ok"] is True and reply["correlation_id"] == "p1"
            assert reply["status"]["state"] == "trial"
        finally:
            client.disconnect()
            client.loop_stop()
        time.sleep(0.1)


def test_floating_lease_then_reactivate_and_deactivate(tmp_path: Path, plugin: Path) -> None:
    vendor_key = Ed25519PrivateKey.generate()
    pinned = SimpleNamespace(url=None, public_key_text=public_key_to_text(vendor_key))
    with (
        start_floating(tmp_path / "fls", vendor_key=vendor_key, seats=1) as fls,
        MosquittoHandle(tmp_path / "b", plugin, vendor=pinned, trial_seconds=0) as broker,
    ):
        with RawClient(broker.port) as c:
            assert c.connect("plant") == 5
        with broker.admin() as admin:
            reply = admin.request(
                "activate", {"method": "floating", "server_url": fls.url, "features": ["mqtt_server"]}
            )
            assert reply["status"]["state"] == "active" and reply["status"]["model"] == "floating"
            with RawClient(broker.port) as c:
                assert c.connect("plant") == 0
            assert admin.request("reactivate")["status"]["floating"]["lease_id"]
            reply = admin.request("deactivate")
            assert reply["seat_released"] is True and reply["status"]["serving"] is False
        with RawClient(broker.port) as c:
            assert c.connect("plant") == 5  # the rules changed with the reply
