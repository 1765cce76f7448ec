"""Connection overage (issue 11 item 2), end to end: vendor terms from the vendor CLI, carried in
the signed certificate, enforced by a real broker on real CONNECTs."""

import json

from mqtt_licensing.cli.main import main
from tests.helpers.broker import ADMIN, ADMIN_PASSWORD, MqttClient, connected_clients, start_broker, wait_for


def vendor_cli(vendor, capsys, *argv):
    capsys.readouterr()
    rc = main(["vendor", *argv, "--data", str(vendor.data_dir)])
    out = capsys.readouterr().out
    assert rc == 0, out
    return out


def overage_events(watcher):
    events = [json.loads(m.payload) for m in watcher.messages if m.topic == "$license/events"]
    return [e for e in events if e["type"] == "connection_overage"]


def test_cap_4_with_half_overage_admits_6_and_reactivate_takes_new_terms(tmp_path, vendor, capsys):
    key = vendor_cli(vendor, capsys, "issue", "--features", "mqtt_server", "--max-connections", "4", "--overage", "0.5")
    key = key.strip()
    license_id = vendor.license_id(key)
    with start_broker(tmp_path / "s", vendor=vendor, trial_seconds=0) as broker:
        with broker.admin() as c:
            status = c.request("activate", {"license_key": key})["status"]
        assert status["max_connections"] == 4
        assert status["overage"] == {"fraction": 0.5, "allowed": 6}
        assert status["connections_over_cap"] is False
        with MqttClient(broker.port, client_id="watch", username=ADMIN, password=ADMIN_PASSWORD) as watcher:
            assert watcher.connect() == 0
            assert watcher.subscribe("$license/events") == 1
            with connected_clients(broker.port, 4):
                assert broker.status()["connections_over_cap"] is False
                assert overage_events(watcher) == []
                with connected_clients(broker.port, 2, prefix="over"):
                    wait_for(lambda: overage_events(watcher), message="no connection_overage event")
                    (event,) = overage_events(watcher)  # the second one past the cap is coalesced
                    assert event["client_id"] == "over0"
                    assert (event["connections"], event["max_connections"], event["allowed"]) == (5, 4, 6)
                    assert event["count"] == 1
                    doc = broker.status()
                    assert (doc["connections"], doc["connections_over_cap"]) == (6, True)
                    with MqttClient(broker.port, client_id="seventh") as seventh:
                        assert seventh.connect() == 5
                    with MqttClient(broker.port, client_id="root", username=ADMIN, password=ADMIN_PASSWORD) as root:
                        assert root.connect() == 0  # admins never count

                # the vendor grants double the cap; a reactivate brings the new terms
                shown = vendor_cli(vendor, capsys, "update", license_id, "--overage", "1")
                assert "100% over max connections" in shown
                with broker.admin() as c:
                    status = c.request("reactivate")["status"]
                assert status["overage"] == {"fraction": 1.0, "allowed": 8}
                with connected_clients(broker.port, 4, prefix="more"):
                    with MqttClient(broker.port, client_id="ninth") as ninth:
                        assert ninth.connect() == 5

                vendor_cli(vendor, capsys, "update", license_id, "--overage", "0")
                with broker.admin() as c:
                    status = c.request("reactivate")["status"]
                assert status["overage"] is None
                with MqttClient(broker.port, client_id="fifth") as fifth:
                    assert fifth.connect() == 5  # no headroom left: the cap is the cap again


def test_vendor_refuses_an_overage_outside_0_to_1(vendor, capsys):
    for bad in ("1.5", "-0.1", "lots"):
        try:
            main(["vendor", "issue", "--features", "mqtt_server", "--overage", bad, "--data", str(vendor.data_dir)])
        except SystemExit as exit_:
            assert exit_.code == 2
        else:
            raise AssertionError(f"--overage {bad} was accepted")
    assert "must be from 0 to 1" in capsys.readouterr().err
