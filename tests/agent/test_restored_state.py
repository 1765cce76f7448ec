"""Issue 10: an offline state.json restored from a backup after a vendor-confirmed deactivation.

The attack as tried on main: back up the state folder of an offline-licensed broker, deactivate
(the deactivation code), the vendor frees the activation with that code, restore the backup,
activate the freed activation on a second broker: 2 brokers served, the vendor showed 1 of 1.
"""

from __future__ import annotations

import json
import shutil

from tests.agent import test_offline_flow as flow
from tests.agent.test_offline_flow import cli, issue, offline_request, operator, vendor_answer
from tests.helpers.broker import MqttClient, start_broker

vendor_dir, air_gapped_broker = flow.vendor_dir, flow.air_gapped_broker  # the same fixtures


def test_a_restored_state_folder_after_an_offline_deactivation_is_refused(tmp_path, vendor_dir, air_gapped_broker):
    broker = air_gapped_broker
    key = issue(vendor_dir, "--model", "offline", "--features", "mqtt_server", "--activations", "1")
    operator(
        broker,
        "activate",
        "--usage-license-file",
        vendor_answer(vendor_dir, offline_request(broker, tmp_path, key), tmp_path),
    )
    assert broker.status()["state"] == "active"
    backup = tmp_path / "backup"
    shutil.copytree(tmp_path / "state", backup)  # the state folder, as a backup tool takes it

    code = json.loads(operator(broker, "deactivate", "--json").stdout)["deactivation_code"]
    code_file = tmp_path / "deactivation.txt"
    code_file.write_text(code)
    assert "free" in cli("vendor", "offline-deactivate", "--data", vendor_dir, "--code", code_file).stdout.lower()

    broker.stop()
    shutil.rmtree(tmp_path / "state")
    shutil.copytree(backup, tmp_path / "state")
    broker.start()
    status = broker.status()
    assert status["state"] == "unlicensed" and status["serving"] is False, status
    assert any(p["code"] == "deactivated" for p in status["problems"]), status["problems"]
    with MqttClient(broker.port, client_id="plant") as c:
        assert c.connect() != 0

    # the freed activation goes to a second broker: now it is the only one serving
    pub = (vendor_dir / "vendor.pub").read_text().strip()
    with start_broker(tmp_path / "second", vendor_url=None, vendor_public_key=pub, trial_seconds=0) as second:
        usage = vendor_answer(vendor_dir, offline_request(second, tmp_path, key, "second.txt"), tmp_path, "u2.txt")
        operator(second, "activate", "--usage-license-file", usage)
        assert second.status()["state"] == "active"
    assert broker.status()["state"] != "active"


def test_a_restored_instance_that_renews_is_refused_by_the_vendor(tmp_path, vendor_dir, air_gapped_broker):
    """The marker is local (deleted with the backup restored, the broker serves the old license);
    the next request code that instance writes tells the vendor, which refuses it as `deactivated`."""
    import os

    broker = air_gapped_broker
    key = issue(vendor_dir, "--model", "offline", "--features", "mqtt_server", "--activations", "1")
    operator(
        broker,
        "activate",
        "--usage-license-file",
        vendor_answer(vendor_dir, offline_request(broker, tmp_path, key), tmp_path),
    )
    backup = tmp_path / "backup"
    shutil.copytree(tmp_path / "state", backup)
    code = json.loads(operator(broker, "deactivate", "--json").stdout)["deactivation_code"]
    (tmp_path / "deactivation.txt").write_text(code)
    cli("vendor", "offline-deactivate", "--data", vendor_dir, "--code", tmp_path / "deactivation.txt")

    broker.stop()
    shutil.rmtree(tmp_path / "state")
    shutil.copytree(backup, tmp_path / "state")
    os.unlink(os.environ["MQTT_LICENSING_TRIAL_MARKER"])  # the local record, gone too
    broker.start()
    assert broker.status()["state"] == "active"  # nothing local is left to tell

    renewal = offline_request(broker, tmp_path, key, "renewal.txt")
    refused = cli(
        "vendor",
        "offline-activate",
        "--data",
        vendor_dir,
        "--request",
        renewal,
        "--out",
        tmp_path / "u.txt",
        check=False,
    )
    assert refused.returncode != 0 and "deactivated" in refused.stderr + refused.stdout, refused
    assert not (tmp_path / "u.txt").exists()


def test_no_deactivation_code_is_handed_out_unrecorded(tmp_path, vendor_dir, air_gapped_broker, monkeypatch):
    """Else an unwritable marker would be the way to keep a restored license serving."""
    broker = air_gapped_broker
    key = issue(vendor_dir, "--model", "offline", "--features", "mqtt_server", "--activations", "1")
    usage = vendor_answer(vendor_dir, offline_request(broker, tmp_path, key), tmp_path)
    operator(broker, "activate", "--usage-license-file", usage)
    monkeypatch.setenv("MQTT_LICENSING_TRIAL_MARKER", "/proc/no-such-dir/trial.json")
    refused = operator(broker, "deactivate", "--json", check=False)
    assert refused.returncode != 0 and "trial_marker_unwritable" in refused.stderr + refused.stdout, refused
    status = broker.status()
    assert status["state"] == "active" and status["offline"]["deactivation_code"] is None
