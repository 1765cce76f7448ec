"""broker_config/tls.yaml as shipped (paths and port swapped for the test's): MQTT over TLS with
amqtt's listener options, reached by paho and by ``mosquitto_rr --cafile``; a client that does not
trust the broker's CA gets no connection."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from mqtt_licensing.adapters.amqtt.runner import BrokerThread, load_config
from mqtt_licensing.servers._run import free_port
from tests.helpers.activation import start_vendor
from tests.helpers.tls import LocalCA, make_ca

pytestmark = pytest.mark.timeout(60)

SHIPPED = Path(__file__).resolve().parents[2] / "broker_config" / "tls.yaml"


def _connect(port: int, ca_file: Path) -> int | str:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="tls-paho", protocol=mqtt.MQTTv311)
    client.tls_set(ca_certs=str(ca_file))
    client.username_pw_set("admin", "change-me")
    done = threading.Event()
    result: list[int | str] = []

    def on_connect(_c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        result.append(int(rc.value))
        done.set()

    client.on_connect = on_connect
    try:
        client.connect("127.0.0.1", port)
    except ssl.SSLError as exc:
        return f"tls: {exc.reason}"
    client.loop_start()
    try:
        assert done.wait(10)
        return result[0]
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.fixture
def ca(tmp_path: Path) -> LocalCA:
    return make_ca(tmp_path / "ca")


@pytest.fixture
def tls_broker(tmp_path: Path, ca: LocalCA) -> Iterator[int]:
    cert, key = ca.server_cert(tmp_path / "tls")
    port = free_port()
    with start_vendor(tmp_path / "vendor-data", serve=False):
        folder = tmp_path / "broker_config"
        folder.mkdir()
        text = SHIPPED.read_text()
        for old, new in (
            ("/etc/mqtt-licensing/tls/server.crt", str(cert)),
            ("/etc/mqtt-licensing/tls/server.key", str(key)),
            ("127.0.0.1:8883", f"127.0.0.1:{port}"),
        ):
            assert old in text
            text = text.replace(old, new)
        (folder / "tls.yaml").write_text(text)
        thread = BrokerThread(load_config(folder / "tls.yaml")).start()
        try:
            yield port
        finally:
            thread.stop()


def test_paho_connects_over_tls_with_the_ca(tls_broker: int, ca: LocalCA, tmp_path: Path) -> None:
    assert _connect(tls_broker, ca.cert_file) == 0
    other = make_ca(tmp_path / "other", name="someone else")
    assert str(_connect(tls_broker, other.cert_file)).startswith("tls: CERTIFICATE_VERIFY_FAILED")


@pytest.mark.skipif(shutil.which("mosquitto_rr") is None, reason="needs the mosquitto-clients package")
def test_mosquitto_rr_over_tls(tls_broker: int, ca: LocalCA) -> None:
    argv = ["mosquitto_rr", "-h", "127.0.0.1", "-p", str(tls_broker), "--cafile", str(ca.cert_file)]
    argv += ["-u", "admin", "-P", "change-me", "-V", "mqttv311", "-i", "ops", "-q", "1", "-W", "10", "-N"]
    argv += ["-t", "$license/status", "-e", "$license/reply/ops", "-m", '{"correlation_id": "t1"}']
    done = subprocess.run(argv, capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    reply = json.loads(done.stdout)
    assert (reply["ok"], reply["correlation_id"], reply["status"]["state"]) == (True, "t1", "trial")
