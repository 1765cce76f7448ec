"""Feature gating on CONNECT (BRIEF §5), counted by the agent itself."""

from typing import Any

import pytest

from tests.helpers.broker import ADMIN, ADMIN_PASSWORD, MqttClient, connected_clients, start_broker, wait_for
from tests.helpers.fakeclock import FakeClock


def activate(broker, key):
    with broker.admin() as c:
        return c.request("activate", {"license_key": key})["status"]


def test_trial_limit(tmp_path, vendor):
    with start_broker(tmp_path / "s", vendor=vendor, trial_max_connections=3) as broker:
        assert broker.status()["state"] == "trial"
        with connected_clients(broker.port, 3):
            with MqttClient(broker.port, client_id="fourth") as fourth:
                assert fourth.connect() == 5
            with MqttClient(broker.port, client_id="root", username=ADMIN, password=ADMIN_PASSWORD) as admin:
                assert admin.connect() == 0  # admins never count and are never refused
        # the slots come back when clients leave
        wait_for(lambda: broker.agent.status_document()["connections"] == 0)
        with MqttClient(broker.port, client_id="later") as later:
            assert later.connect() == 0


def test_trial_start_is_persisted_across_restart(tmp_path, vendor):
    broker = start_broker(tmp_path / "s", vendor=vendor)
    try:
        started = broker.status()["trial"]["started_at"]
        broker.restart()
        assert broker.status()["trial"]["started_at"] == started
    finally:
        broker.stop()


def test_trial_cannot_be_configured_longer_or_larger(tmp_path, vendor):
    from mqtt_licensing.agent.config import AgentConfig
    from mqtt_licensing.core.errors import LicensingError

    too_much: list[dict[str, Any]] = [{"trial_seconds": 7201}, {"trial_max_connections": 26}]
    for bad in too_much:
        cfg = AgentConfig(state_dir=str(tmp_path), vendor_public_key=vendor.public_key_text, **bad)
        with pytest.raises(LicensingError):
            cfg.validate()


def test_unlicensed_refuses_non_admins_but_admits_admins(tmp_path, vendor):
    with start_broker(tmp_path / "s", vendor=vendor, trial_seconds=0) as broker:
        assert broker.status()["state"] == "unlicensed"
        with MqttClient(broker.port, client_id="user") as user:
            assert user.connect() == 5
        with MqttClient(broker.port, client_id="root", username=ADMIN, password=ADMIN_PASSWORD) as admin:
            assert admin.connect() == 0
        with MqttClient(broker.port, client_id="fake-root", username=ADMIN, password="wrong") as fake:
            assert fake.connect() == 5
        # and the admin can license the broker from there
        activate(broker, vendor.issue())
        with MqttClient(broker.port, client_id="user2") as user:
            assert user.connect() == 0


def test_max_connections(tmp_path, vendor):
    key = vendor.issue(max_connections=2)
    with start_broker(tmp_path / "s", vendor=vendor) as broker:
        assert activate(broker, key)["max_connections"] == 2
        with connected_clients(broker.port, 2):
            with MqttClient(broker.port, client_id="third") as third:
                assert third.connect() == 5
            with MqttClient(broker.port, client_id="root", username=ADMIN, password=ADMIN_PASSWORD) as admin:
                assert admin.connect() == 0


def test_bridge_client_needs_its_feature(tmp_path, vendor):
    key = vendor.issue(features=["mqtt_server"])
    classes = {"snowflake": {"features": ["iot_bridge_snowflake"], "client_id_prefixes": ["snowflake-"]}}
    with start_broker(tmp_path / "s", vendor=vendor, client_classes=classes) as broker:
        activate(broker, key)
        with MqttClient(broker.port, client_id="snowflake-bridge-1") as bridge:
            assert bridge.connect() == 5
        with MqttClient(broker.port, client_id="plain-client") as plain:
            assert plain.connect() == 0


def test_license_without_mqtt_server_serves_no_clients(tmp_path, vendor):
    vendor.service.catalogue.update_feature("mqtt_server_support", requires=[])  # a vendor whose support stands alone
    key = vendor.issue(features=["mqtt_server_support"])
    with start_broker(tmp_path / "s", vendor=vendor) as broker:
        activate(broker, key)
        with MqttClient(broker.port, client_id="plain") as plain:
            assert plain.connect() == 5


@pytest.mark.parametrize("enforce", [False, True])
def test_existing_connections_on_lapse(tmp_path, vendor, enforce):
    key = vendor.issue()
    clock = FakeClock()
    with start_broker(
        tmp_path / "s",
        vendor=vendor,
        enforce_existing=enforce,
        check_in_interval=60,
        trial_seconds=0,
        tick_interval=3600,  # the loop sleeps after its first step: the test ticks
    ) as broker:
        broker.agent.clock = clock
        activate(broker, key)
        with (
            MqttClient(broker.port, client_id="plant-1") as plant,
            MqttClient(broker.port, client_id="root", username=ADMIN, password=ADMIN_PASSWORD) as admin,
        ):
            assert plant.connect() == 0 and admin.connect() == 0
            vendor.service.set_status(vendor.license_id(key), "revoked")
            clock.advance(61)
            broker.call(broker.agent.tick())  # the check-in learns it; enforcement runs in the same step
            assert broker.agent.evaluation.state == "revoked"
            if enforce:
                assert plant.disconnected.wait(10), "enforce_existing must disconnect non-admins"
            else:
                broker.call(broker.agent.tick())  # another step: enforcement runs on every one
                assert plant.subscribe("plant/#") == 1  # existing clients are kept by default
                plant.publish("plant/temp", b"21.5")  # and still served, both ways
                assert plant.wait_message("plant/temp").payload == b"21.5"
                assert not plant.disconnected.is_set()
            assert not admin.disconnected.is_set(), "admins are never disconnected"
            with MqttClient(broker.port, client_id="new") as new:
                assert new.connect() == 5
