"""The broker's label end to end: real brokers with the agent, a real vendor server and a real
floating server. The label (config, else the host name) is signed into activate, check-in and
lease requests, shown in the broker's own status, and kept by the servers with its history."""

import socket

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.adapters.mosquitto.runner import load_config
from mqtt_licensing.core.signing import public_key_to_text
from tests.helpers.broker import start_broker
from tests.helpers.floating import start_floating

pytestmark = pytest.mark.timeout(60)


def _activation(vendor, key):
    (act,) = vendor.service.list_activations(vendor.license_id(key))
    return act


def test_label_travels_with_activate_and_check_in_and_a_rename_is_kept(tmp_path, vendor):
    key = vendor.issue(max_activations=1)
    with start_broker(tmp_path / "s", vendor=vendor, instance_label="line-7-broker") as broker:
        with broker.admin() as c:
            status = c.request("activate", {"method": "online", "license_key": key})["status"]
        assert status["instance"] == {"fingerprint": broker.agent.fingerprint, "label": "line-7-broker"}
        assert _activation(vendor, key)["label"] == "line-7-broker"
    # The same instance (state folder) renamed in its config: the next check-in carries the new name.
    with start_broker(tmp_path / "s", vendor=vendor, instance_label="line-8-broker") as broker:
        with broker.admin() as c:
            assert c.request("reactivate")["status"]["instance"]["label"] == "line-8-broker"
    act = _activation(vendor, key)
    assert act["label"] == "line-8-broker"
    assert [h["label"] for h in act["label_history"]] == ["line-7-broker", "line-8-broker"]


def test_an_odd_host_name_is_cleaned_and_never_blocks_activation(tmp_path, vendor, monkeypatch):
    odd = "\x1b[31mplant\x1b[0m-" + "x" * 100
    monkeypatch.setattr(socket, "gethostname", lambda: odd)
    key = vendor.issue()
    with start_broker(tmp_path / "s", vendor=vendor) as broker, broker.admin() as c:
        status = c.request("activate", {"method": "online", "license_key": key})["status"]
    assert status["state"] == "active"
    label = status["instance"]["label"]
    assert label.startswith("?[31mplant?[0m-xxx") and len(label) == 64 and label.isprintable()
    assert _activation(vendor, key)["label"] == label


def test_label_travels_with_lease_acquire_and_renew(tmp_path):
    vendor_key = Ed25519PrivateKey.generate()
    with (
        start_floating(tmp_path / "fls", vendor_key=vendor_key, seats=1) as fls,
        start_broker(
            tmp_path / "b",
            vendor_url=None,
            vendor_public_key=public_key_to_text(vendor_key),
            trial_seconds=0,
            instance_label="line-9-broker",
        ) as broker,
    ):
        with broker.admin() as c:
            request = {"method": "floating", "server_url": fls.url, "features": ["mqtt_server"]}
            status = c.request("activate", request)["status"]
        assert status["instance"]["label"] == "line-9-broker"
        (lease,) = fls.service.status()["leases"]
        assert lease["label"] == "line-9-broker" and lease["instance_fingerprint"] == broker.agent.fingerprint


def test_the_mosquitto_agent_yaml_takes_a_label(tmp_path):
    config = tmp_path / "agent.yaml"
    pub = public_key_to_text(Ed25519PrivateKey.generate())
    config.write_text(
        "mosquitto:\n  socket: agent.sock\nagent:\n  state_dir: state\n"
        f"  vendor_public_key: {pub}\n  instance_label: line-7-mosquitto\n"
    )
    _, agent = load_config(config)
    assert agent.settings().instance_label == "line-7-mosquitto"
