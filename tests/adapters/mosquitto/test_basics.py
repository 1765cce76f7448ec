"""The plugin and the agent beside Mosquitto: activation, status, gating."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.broker import MqttClient
from tests.helpers.mosquitto import MosquittoHandle


def test_activate_online_then_gated_at_the_cap(tmp_path: Path, plugin: Path, vendor) -> None:
    key = vendor.issue(features=["mqtt_server"], max_connections=2)
    with MosquittoHandle(tmp_path / "b", plugin, vendor=vendor) as broker:
        with broker.admin() as admin:
            reply = admin.request("activate", {"license_key": key})
        assert reply["status"]["state"] == "active"
        clients = [MqttClient(broker.port, client_id=f"c{i}") for i in range(3)]
        try:
            codes = [c.connect() for c in clients]
        finally:
            for c in clients:
                c.client.disconnect()
                c.client.loop_stop()
        assert codes == [0, 0, 5]
