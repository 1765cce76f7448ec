"""Online activation end to end: real vendor server, real broker with the agent, real MQTT clients."""

import json
import time

import pytest

from mqtt_licensing.core.errors import LicensingError
from tests.helpers.activation import start_vendor
from tests.helpers.broker import ADMIN, ADMIN_PASSWORD, MqttClient, start_broker
from tests.helpers.fakeclock import FakeClock

SUPPORT_END = 1893456000  # 2030-01-01


def activate(broker, key):
    with broker.admin() as c:
        return c.request("activate", {"method": "online", "license_key": key})["status"]


def test_activate_from_key_file_and_status(tmp_path, vendor):
    key = vendor.issue(features=["mqtt_server", "mqtt_server_support"], support_until=SUPPORT_END)
    key_file = tmp_path / "license.txt"
    key_file.write_text(f"\n  {key.lower()}  \n")  # as it arrives by mail: whitespace, any case
    with start_broker(tmp_path / "state", vendor=vendor) as broker:
        status = activate(broker, key_file.read_text())
        assert status["state"] == "active" and status["serving"] is True
        assert status["model"] == "online"
        assert status["features"] == ["mqtt_server", "mqtt_server_support"]
        assert status["support_until"] == "2030-01-01T00:00:00Z"
        assert status["key"].startswith(key[:10]) and "*****" in status["key"] and status["key"] != key
        assert status["license_id"] == vendor.license_id(key)
        assert status["instance"]["fingerprint"] == broker.agent.fingerprint
        assert status["check_in"]["last_ok_at"] is not None


def test_typo_in_key_is_caught_before_any_network_call(tmp_path):
    with start_vendor(tmp_path / "vendor") as vendor:
        key = vendor.issue()
        vendor.stop()  # a network call would fail with server_unreachable, not invalid_key
        typo = key[:-1] + ("A" if key[-1] != "A" else "B")
        with start_broker(tmp_path / "state", vendor=vendor) as broker, broker.admin() as c:
            with pytest.raises(LicensingError) as err:
                c.request("activate", {"license_key": typo})
            assert err.value.code == "invalid_key"


def test_reactivate_pulls_new_features_without_restart(tmp_path, vendor):
    key = vendor.issue(features=["mqtt_server"])
    with start_broker(
        tmp_path / "state",
        vendor=vendor,
        client_classes={"bridge": {"features": ["iot_bridge_snowflake"], "usernames": ["snow"]}},
    ) as broker:
        activate(broker, key)
        with MqttClient(broker.port, client_id="bridge1", username="snow") as bridge:
            assert bridge.connect() == 5  # no iot_bridge_snowflake yet
        vendor.service.update_license(vendor.license_id(key), {"add_features": ["iot_bridge_snowflake"]})
        with broker.admin() as c:
            status = c.request("reactivate")["status"]
        assert "iot_bridge_snowflake" in status["features"]
        with MqttClient(broker.port, client_id="bridge2", username="snow") as bridge:
            assert bridge.connect() == 0


def test_deactivate_frees_the_activation_for_another_instance(tmp_path, vendor):
    key = vendor.issue(max_activations=1)
    with start_broker(tmp_path / "a", vendor=vendor) as a, start_broker(tmp_path / "b", vendor=vendor) as b:
        assert activate(a, key)["state"] == "active"
        with b.admin() as c, pytest.raises(LicensingError) as err:
            c.request("activate", {"license_key": key})
        assert err.value.code == "no_activations_left"
        with a.admin() as c:
            status = c.request("deactivate")["status"]
        assert status["state"] in ("trial", "unlicensed") and status["license_id"] is None
        assert activate(b, key)["state"] == "active"


def test_activating_again_on_the_same_instance_uses_no_second_activation(tmp_path, vendor):
    key = vendor.issue(max_activations=1)
    with start_broker(tmp_path / "a", vendor=vendor) as a:
        first = activate(a, key)
        second = activate(a, key)
        assert first["activation_id"] == second["activation_id"]


def ticking(broker, clock: FakeClock):
    """The broker's agent on ``clock``, its own loop asleep (tick_interval=3600): the test ticks."""
    broker.agent.clock = clock

    def tick(seconds: float) -> str:
        clock.advance(seconds)
        broker.call(broker.agent.tick())
        return str(broker.agent.evaluation.state)

    return tick


@pytest.mark.parametrize("verdict", ["suspended", "revoked"])
def test_suspended_and_revoked_keys(tmp_path, vendor, verdict):
    key = vendor.issue()
    with start_broker(
        tmp_path / "state", vendor=vendor, check_in_interval=60, retry_interval=30, tick_interval=3600
    ) as broker:
        tick = ticking(broker, FakeClock())
        activate(broker, key)
        vendor.service.set_status(vendor.license_id(key), verdict)
        assert tick(30) == "active"  # no check-in is due yet
        assert tick(31) == verdict  # the check-in learns it: the license stops serving
        with MqttClient(broker.port, client_id="late") as late:
            assert late.connect() == 5
        # and a fresh activation of such a key is refused with its code
        with start_broker(tmp_path / "other", vendor=vendor) as other, other.admin() as c:
            with pytest.raises(LicensingError) as err:
                c.request("activate", {"license_key": key})
            assert err.value.code == verdict


def test_vendor_frees_a_lost_activation(tmp_path, vendor):
    key = vendor.issue(max_activations=1)
    lost = start_broker(tmp_path / "lost", vendor=vendor)
    activation_id = activate(lost, key)["activation_id"]
    lost.stop()  # the server is destroyed without deactivating
    with start_broker(tmp_path / "new", vendor=vendor) as new:
        with new.admin() as c, pytest.raises(LicensingError):
            c.request("activate", {"license_key": key})
        vendor.service.free_activation(activation_id)
        assert activate(new, key)["state"] == "active"


def test_freed_activation_is_noticed_at_check_in(tmp_path, vendor):
    key = vendor.issue()
    with start_broker(
        tmp_path / "s", vendor=vendor, check_in_interval=60, trial_seconds=0, tick_interval=3600
    ) as broker:
        tick = ticking(broker, FakeClock())
        activation_id = activate(broker, key)["activation_id"]
        vendor.service.free_activation(activation_id)
        assert tick(61) == "unlicensed"
        status = broker.status()
        assert status["license_id"] is None


def test_vendor_down_grace_then_back_then_past_deadline(tmp_path):
    clock = FakeClock()  # the vendor's and the agent's: a certificate lasts an hour of it
    with start_vendor(tmp_path / "vendor", certificate_lifetime=3600, clock=clock.seconds) as vendor:
        key = vendor.issue()
        with start_broker(
            tmp_path / "s", vendor=vendor, check_in_interval=60, retry_interval=30, trial_seconds=0, tick_interval=3600
        ) as broker:
            tick = ticking(broker, clock)
            activate(broker, key)
            vendor.stop()
            assert tick(61) == "grace"
            status = broker.status()
            assert status["serving"] is True and status["deadline"] is not None
            assert status["check_in"]["failing_since"] is not None
            assert status["check_in"]["last_error"]["code"] == "server_unreachable"
            with MqttClient(broker.port, client_id="during-grace") as c:
                assert c.connect() == 0
            vendor.start()
            assert tick(31) == "active"  # the retry reaches it: a fresh certificate, another hour
            vendor.stop()
            assert tick(61) == "grace"
            assert tick(3600) == "expired"
            with MqttClient(broker.port, client_id="after-deadline") as c:
                assert c.connect() == 5
            assert broker.status()["serving"] is False


def test_restart_keeps_the_activation_without_network(tmp_path, vendor):
    key = vendor.issue(features=["mqtt_server", "iot_bridge_snowflake"])
    broker = start_broker(tmp_path / "state", vendor=vendor, trial_seconds=0)
    try:
        before = activate(broker, key)
        vendor.stop()  # no network on the way back up
        broker.restart()
        after = broker.status()
        assert after["state"] == "active"
        assert after["activation_id"] == before["activation_id"]
        assert after["features"] == before["features"]
        assert after["instance"]["fingerprint"] == before["instance"]["fingerprint"]
    finally:
        broker.stop()


def test_status_is_retained_and_readable_by_readers_only(tmp_path, vendor):
    from tests.helpers.broker import READER, READER_PASSWORD

    key = vendor.issue()
    with start_broker(tmp_path / "state", vendor=vendor) as broker:
        activate(broker, key)
        with MqttClient(broker.port, client_id="dash", username=READER, password=READER_PASSWORD) as dash:
            assert dash.connect() == 0
            assert dash.subscribe("$license/status") == 1
            doc = json.loads(dash.wait_message("$license/status").payload)
            assert doc["state"] == "active" and key not in json.dumps(doc)
            assert dash.subscribe("$license/events") == 1
        with MqttClient(broker.port, client_id="nosy") as nosy:
            assert nosy.connect() == 0
            assert nosy.subscribe("$license/status") == 0x80
            assert nosy.subscribe("$license/#") == 0x80


def test_events_announce_transitions_and_refusals(tmp_path, vendor):
    with start_broker(tmp_path / "state", vendor=vendor, trial_seconds=0) as broker:
        with MqttClient(broker.port, client_id="watcher", username=ADMIN, password=ADMIN_PASSWORD) as w:
            assert w.connect() == 0
            assert w.subscribe("$license/events") == 1
            with MqttClient(broker.port, client_id="refused-one") as r:
                assert r.connect() == 5
            event = json.loads(w.wait_message("$license/events").payload)
            assert event["type"] == "connection_refused"
            assert event["client_id"] == "refused-one" and event["reason"] == "not_licensed"
            activate(broker, vendor.issue())
            deadline = time.monotonic() + 10
            seen: list[str] = []
            while time.monotonic() < deadline and not {"activated", "state_changed"} <= set(seen):
                seen = [json.loads(m.payload)["type"] for m in w.messages]
                time.sleep(0.05)
            assert "activated" in seen and "state_changed" in seen
