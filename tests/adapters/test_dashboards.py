"""Dashboard sessions (readers, and the admins of the License page) have their own caps and never
take a licensed seat; a reader may connect while the license does not serve, to see why; a session
over a cap is told so (CONNACK 3 and an event naming the limit), never "wrong password"."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mqtt_licensing.clients.mqtt import LicenseClient
from mqtt_licensing.core.errors import LicensingError
from tests.helpers.broker import ADMIN, ADMIN_PASSWORD, READER, READER_PASSWORD, MqttClient, start_broker

pytestmark = pytest.mark.timeout(60)
CLI = [sys.executable, "-m", "mqtt_licensing.cli.main"]


def _reader(port: int, client_id: str) -> MqttClient:
    return MqttClient(port, client_id=client_id, username=READER, password=READER_PASSWORD)


def test_a_reader_takes_no_seat_and_carries_no_plant_traffic(tmp_path, vendor):
    with start_broker(tmp_path / "s", vendor=vendor, trial_max_connections=1) as broker:
        with _reader(broker.port, "dash") as dash, MqttClient(broker.port, client_id="plc-1") as plc:
            assert dash.connect() == 0
            assert plc.connect() == 0  # the one licensed seat is still free for the plant
            assert broker.status()["connections"] == 1
            assert dash.subscribe("$license/status") == 1
            assert dash.subscribe("plant/#") == 0x80  # a dashboard session is not a free seat
            with MqttClient(broker.port, client_id="plc-2") as over:
                assert over.connect() == 5  # the cap is reached by the plant alone


def test_a_reader_reads_status_while_the_license_does_not_serve(tmp_path, vendor):
    with start_broker(tmp_path / "s", vendor=vendor, trial_seconds=0) as broker:
        with LicenseClient("127.0.0.1", broker.port, username=READER, password=READER_PASSWORD) as reader:
            assert reader.status()["state"] == "unlicensed"
            assert any(e["type"] == "broker_started" for e in reader.recent_events())


def test_a_fifth_admin_is_told_the_real_reason(tmp_path, vendor):
    with start_broker(tmp_path / "s", vendor=vendor, max_admin_connections=2) as broker:
        admins = [
            MqttClient(broker.port, client_id=f"tab-{i}", username=ADMIN, password=ADMIN_PASSWORD) for i in (1, 2)
        ]
        try:
            assert [a.connect() for a in admins] == [0, 0]
            assert admins[0].subscribe("$license/events") == 1
            with MqttClient(broker.port, client_id="tab-3", username=ADMIN, password=ADMIN_PASSWORD) as third:
                assert third.connect() == 3  # server unavailable: not 5, "wrong username or password"
            event = json.loads(admins[0].wait_message("$license/events").payload)
            assert (event["type"], event["reason"], event["username"]) == ("connection_refused", "admin_limit", ADMIN)
            done = subprocess.run(
                [*CLI, "status", "-p", str(broker.port), "-u", ADMIN, "-P", ADMIN_PASSWORD],
                capture_output=True, text=True, timeout=50,
            )  # fmt: skip
            assert done.returncode == 1 and "too many admin or reader sessions" in done.stderr, done.stderr
            assert "--password" not in done.stderr
        finally:
            for admin in admins:
                admin.close()


def test_readers_have_their_own_cap(tmp_path, vendor):
    with start_broker(tmp_path / "s", vendor=vendor, max_reader_connections=1) as broker, broker.admin() as admin:
        with _reader(broker.port, "dash-1") as first, _reader(broker.port, "dash-2") as second:
            assert first.connect() == 0 and second.connect() == 3
        refused = [e for e in admin.recent_events() if e["type"] == "connection_refused"]
        assert [(e["reason"], e["client_id"]) for e in refused] == [("reader_limit", "dash-2")]


def test_a_wrong_password_is_still_not_authorized(tmp_path, vendor):
    with start_broker(tmp_path / "s", vendor=vendor) as broker:
        with MqttClient(broker.port, client_id="x", username=ADMIN, password="wrong") as wrong:
            assert wrong.connect() == 5
        with pytest.raises(LicensingError) as bad:
            LicenseClient("127.0.0.1", broker.port, username=READER, password="wrong").connect()
        assert bad.value.code == "not_authorized"
