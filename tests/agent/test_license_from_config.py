"""A license from configuration (a fleet's image, a Kubernetes Secret): active with no operator
step, one activation across restarts, a typo refused at start in one line."""

from __future__ import annotations

import pytest

from mqtt_licensing.agent.provisioning import configured_key
from mqtt_licensing.cli.format import format_status
from mqtt_licensing.core.errors import LicensingError
from tests.helpers.broker import start_broker, wait_for
from tests.helpers.fakeclock import FakeClock


def used(vendor, key: str) -> int:
    return vendor.service.get_license(vendor.license_id(key))["activations_used"]


def test_a_key_in_the_config_is_activated_at_start_and_kept_across_restarts(tmp_path, vendor):
    key = vendor.issue(max_activations=2)
    broker = start_broker(tmp_path / "s", vendor=vendor, license_key=key, retry_interval=0.2)
    try:
        wait_for(lambda: broker.status()["state"] == "active", message="activated with no operator")
        status = broker.status()
        assert status["license_from"] == "config" and key not in str(status)
        first = status["activation_id"]
        broker.restart()
        wait_for(lambda: broker.status()["state"] == "active")
        assert broker.status()["activation_id"] == first and used(vendor, key) == 1  # no second activation
    finally:
        broker.stop()


def test_the_trial_serves_while_the_vendor_is_away_then_the_key_is_activated(tmp_path, vendor):
    key = vendor.issue()
    vendor.stop()
    broker = start_broker(tmp_path / "s", vendor=vendor, license_key=key, retry_interval=0.2, trial_seconds=600)
    try:
        assert broker.status()["state"] == "trial"
        vendor.start()
        wait_for(lambda: broker.status()["state"] == "active", message="activated once the vendor is back")
    finally:
        broker.stop()


def test_a_key_file_from_the_environment_wins_and_a_typo_is_one_line(tmp_path, vendor):
    key = vendor.issue()
    secret = tmp_path / "license.txt"
    secret.write_text(key + "\n")
    found = configured_key("ignored", None, {"MQTT_LICENSING_LICENSE_KEY_FILE": str(secret)})
    assert found is not None and found.key == key and found.origin == "env" and key not in repr(found)
    typo = key[:-1] + ("A" if key[-1] != "A" else "B")
    with pytest.raises(LicensingError) as err:
        configured_key(typo, None, {})
    assert err.value.message.startswith("license_key: ")
    assert key[:8] not in err.value.message


def key_of(status) -> str | None:
    return status["key"]


def test_a_container_with_the_key_in_its_environment_is_active_and_keeps_one_activation(tmp_path, vendor, monkeypatch):
    """The image carries no key; the deployment's environment does (EMQX, HiveMQ, Chariot's image)."""
    key = vendor.issue(max_activations=1)
    monkeypatch.setenv("MQTT_LICENSING_LICENSE_KEY", key)
    broker = start_broker(tmp_path / "s", vendor=vendor, retry_interval=0.2)
    try:
        wait_for(lambda: broker.status()["state"] == "active", message="active with no operator step")
        first = broker.status()
        assert first["license_from"] == "env" and first["configured"]["origin"] == "env"
        broker.restart()
        wait_for(lambda: broker.status()["state"] == "active")
        assert broker.status()["activation_id"] == first["activation_id"] and used(vendor, key) == 1
    finally:
        broker.stop()


def test_a_changed_key_activates_the_new_license_and_frees_the_old_activation(tmp_path, vendor):
    old, new = vendor.issue(max_activations=1), vendor.issue(max_activations=1)
    broker = start_broker(tmp_path / "s", vendor=vendor, license_key=old, retry_interval=0.2)
    try:
        wait_for(lambda: broker.status()["state"] == "active")
        old_mask = key_of(broker.status())
        broker.stop()
        broker.agent_options["license_key"] = new
        broker.start()
        wait_for(lambda: key_of(broker.status()) not in (old_mask, None), message="the new key activated")
        wait_for(lambda: broker.status()["configured"]["frees_pending"] == [], message="the old one freed")
        assert used(vendor, old) == 0 and used(vendor, new) == 1
        status = broker.status()
        assert status["state"] == "active" and status["license_from"] == "config"
        broker.restart()  # the next start is no change: nothing replaced, nothing activated again
        wait_for(lambda: broker.status()["state"] == "active")
        assert broker.status()["activation_id"] == status["activation_id"] and used(vendor, new) == 1
    finally:
        broker.stop()


def test_an_operators_deactivate_survives_a_restart_until_an_admin_activates(tmp_path, vendor):
    key = vendor.issue(max_activations=1)
    options = {"license_key": key, "retry_interval": 30, "tick_interval": 3600, "trial_seconds": 600}
    broker = start_broker(tmp_path / "s", vendor=vendor, **options)
    try:
        wait_for(lambda: broker.status()["state"] == "active")  # the loop's first step
        with broker.admin() as c:
            c.request("deactivate")
        broker.restart()
        clock = FakeClock()
        broker.agent.clock = clock
        for _ in range(3):  # several retry intervals, a step each: the configured key is not used again
            clock.advance(31)
            broker.call(broker.agent.tick())
            status = broker.status()
            assert status["state"] == "trial" and used(vendor, key) == 0, status
        assert status["configured"]["held_back"].startswith("deactivated by an operator")
        assert "until an admin activates or the key in the config changes" in status["configured"]["held_back"]
        assert "Configured:" in format_status(status) and "deactivated by an operator" in format_status(status)
        with broker.admin() as c:
            c.request("activate", {"license_key": key})
        assert broker.status()["configured"]["held_back"] is None
        broker.restart()
        wait_for(lambda: broker.status()["state"] == "active")
        assert used(vendor, key) == 1
    finally:
        broker.stop()


def test_a_changed_key_clears_an_operators_hold(tmp_path, vendor):
    old, new = vendor.issue(), vendor.issue()
    broker = start_broker(tmp_path / "s", vendor=vendor, license_key=old, retry_interval=0.2)
    try:
        wait_for(lambda: broker.status()["state"] == "active")
        with broker.admin() as c:
            c.request("deactivate")
        broker.stop()
        broker.agent_options["license_key"] = new
        broker.start()
        wait_for(lambda: broker.status()["state"] == "active", message="the new key is used")
        assert used(vendor, new) == 1 and used(vendor, old) == 0
    finally:
        broker.stop()


def test_a_usage_license_file_is_installed_at_start_and_a_bad_one_is_one_line(tmp_path, vendor, monkeypatch):
    """The offline counterpart: the vendor's answer to this instance's request code, mounted as a file."""
    key = vendor.issue(model="offline")
    broker = start_broker(tmp_path / "s", vendor=vendor, trial_seconds=600)
    try:
        with broker.admin() as c:
            code = c.request("offline_request", {"license_key": key})["request_code"]
        answer = tmp_path / "usage-license.txt"
        answer.write_text(vendor.service.offline_activate(code).usage_license + "\n")
        broker.stop()
        broker.agent_options["usage_license_file"] = str(answer)
        broker.start()
        status = broker.status()  # installed before the broker's first status: no wait
        assert status["state"] == "active" and status["model"] == "offline" and status["last_failure"] is None
        broker.restart()  # held now: the file is not applied again (its request is answered)
        status = broker.status()
        assert status["state"] == "active" and status["last_failure"] is None
    finally:
        broker.stop()
    garbage = tmp_path / "garbage.txt"
    garbage.write_text("not a usage license\n")
    monkeypatch.setenv("MQTT_LICENSING_USAGE_LICENSE_FILE", str(garbage))
    with start_broker(tmp_path / "t", vendor=vendor, trial_seconds=600) as other:
        status = other.status()
        assert status["state"] == "trial", status  # the trial serves
        failure = status["last_failure"]
        assert failure["message"].startswith("MQTT_LICENSING_USAGE_LICENSE_FILE: ") and "\n" not in failure["message"]


def test_while_the_vendor_is_away_a_changed_key_leaves_the_old_license_serving(tmp_path, vendor):
    old, new = vendor.issue(max_activations=1), vendor.issue(max_activations=1)
    broker = start_broker(tmp_path / "s", vendor=vendor, license_key=old, retry_interval=0.2)
    try:
        wait_for(lambda: broker.status()["state"] == "active")
        held = broker.status()["activation_id"]
        broker.stop()
        vendor.stop()
        broker.agent_options["license_key"] = new
        broker.start()
        wait_for(lambda: (broker.status()["configured"] or {}).get("last_error") is not None, message="tried")
        status = broker.status()
        assert status["state"] == "active" and status["activation_id"] == held  # no surprise stop
        assert status["configured"]["last_error"]["code"] == "server_unreachable"
        broker.restart()  # a restart meanwhile still knows the key changed
        assert broker.status()["activation_id"] == held
        vendor.start()
        wait_for(lambda: broker.status()["activation_id"] != held, message="the new key once the vendor is back")
        wait_for(lambda: broker.status()["configured"]["frees_pending"] == [], message="the old one freed")
        assert used(vendor, old) == 0 and used(vendor, new) == 1
    finally:
        broker.stop()
