"""A pending offline request never stops a serving broker (issue 11 item 3): the trial serves on
while a request waits (also across a restart), and ``offline-cancel`` withdraws the request so
that a late usage license answering it is refused."""

import pytest

from mqtt_licensing.core.errors import LicensingError
from tests.helpers.broker import MqttClient, start_broker

from .test_offline_flow import (  # noqa: F401
    air_gapped_broker,
    cli,
    issue,
    offline_request,
    operator,
    vendor_answer,
    vendor_dir,
)


def test_trial_serves_on_while_a_request_is_pending_and_cancel_drops_it(tmp_path, vendor_dir):  # noqa: F811
    key = issue(vendor_dir, "--model", "offline", "--features", "mqtt_server")
    pub = (vendor_dir / "vendor.pub").read_text().strip()
    with start_broker(tmp_path / "state", vendor_url=None, vendor_public_key=pub) as broker:
        request = offline_request(broker, tmp_path, key)
        status = broker.status()
        assert status["state"] == "trial" and status["offline"]["pending_request_at"]
        with MqttClient(broker.port, client_id="plant-1") as plant:
            assert plant.connect() == 0

        broker.restart()
        status = broker.status()
        assert status["state"] == "trial" and status["offline"]["request_code"].strip() == request.read_text().strip()
        with MqttClient(broker.port, client_id="plant-2") as plant:
            assert plant.connect() == 0

        usage = vendor_answer(vendor_dir, request, tmp_path)
        cancelled = operator(broker, "offline-cancel")
        assert "Cancelled" in cancelled.stdout
        status = broker.status()
        assert status["state"] == "trial" and not (status.get("offline") or {}).get("pending_request_at")

        late = operator(broker, "activate", "--usage-license-file", usage, check=False)
        assert late.returncode != 0 and "request_superseded" in late.stderr
        again = operator(broker, "offline-cancel", check=False)
        assert again.returncode != 0 and "no_pending_request" in again.stderr
        assert broker.status()["state"] == "trial"


def test_a_request_while_trial_is_over_is_pending_offline_and_cancel_leaves_it_unlicensed(tmp_path, vendor_dir):  # noqa: F811
    key = issue(vendor_dir, "--model", "offline", "--features", "mqtt_server")
    pub = (vendor_dir / "vendor.pub").read_text().strip()
    with start_broker(tmp_path / "state", vendor_url=None, vendor_public_key=pub, trial_seconds=0) as broker:
        offline_request(broker, tmp_path, key)
        assert broker.status()["state"] == "pending_offline"
        operator(broker, "offline-cancel")
        assert broker.status()["state"] == "unlicensed"


def test_readme_offline_step_6_deactivate_out_writes_the_code_and_status_gives_it_again(
    tmp_path,
    vendor_dir,  # noqa: F811
    air_gapped_broker,  # noqa: F811
):
    broker = air_gapped_broker
    key = issue(vendor_dir, "--model", "offline", "--features", "mqtt_server")
    operator(
        broker,
        "activate",
        "--usage-license-file",
        vendor_answer(vendor_dir, offline_request(broker, tmp_path, key), tmp_path),
    )
    written = tmp_path / "code.txt"
    out = operator(broker, "deactivate", "--out", written)
    code = written.read_text()
    assert "DEACTIVATION CODE" in code and code.strip() in out.stdout
    status = operator(broker, "status")
    assert "mqtt-licensing status --code-out FILE" in status.stdout
    again = tmp_path / "again.txt"
    operator(broker, "status", "--code-out", again)
    assert again.read_text().strip() == code.strip()
    freed = cli("vendor", "offline-deactivate", "--data", vendor_dir, "--code", written)
    assert freed.returncode == 0


def test_a_vendor_refusal_is_visible_in_status_and_the_trial_serves_on(tmp_path, vendor):
    online = vendor.issue(max_activations=1)
    offline = vendor.issue(model="offline", max_activations=1)
    with start_broker(tmp_path / "a", vendor=vendor) as first:
        request = offline_request(first, tmp_path, offline, "a.txt")
        vendor.service.offline_activate(request.read_text())  # uses up the one offline activation
        operator(first, "activate", "--key", online)  # and the one online activation
    with start_broker(tmp_path / "b", vendor=vendor) as broker:
        refused = operator(broker, "activate", "--key", online, check=False)
        assert refused.returncode == 1 and "no_activations_left" in refused.stderr
        status = broker.status()
        assert status["state"] == "trial" and status["serving"] is True
        failure = status["last_failure"]
        assert failure["operation"] == "activate" and failure["code"] == "no_activations_left" and failure["at"]
        assert "Last failure:" in operator(broker, "status").stdout

        # offline: the vendor refuses the request code; the trial serves on, the request can be dropped
        request = offline_request(broker, tmp_path, offline, "b.txt")
        with pytest.raises(LicensingError) as no_more:
            vendor.service.offline_activate(request.read_text())
        assert no_more.value.code == "no_activations_left"
        told = cli("vendor", "offline-activate", "--data", vendor.data_dir, "--request", request, check=False)
        assert told.returncode == 1 and "no_activations_left" in told.stderr and "offline-cancel" in told.stderr
        assert broker.status()["state"] == "trial"
        operator(broker, "offline-cancel")
        status = broker.status()
        assert status["state"] == "trial" and status["last_failure"] is None  # a success clears it
