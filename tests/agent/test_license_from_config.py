"""A license from configuration (a fleet's image, a Kubernetes Secret): active with no operator
step, one activation across restarts, a typo refused at start in one line."""

from __future__ import annotations

import pytest

from mqtt_licensing.agent.provisioning import configured_key
from mqtt_licensing.core.errors import LicensingError
from tests.helpers.broker import start_broker, wait_for


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
