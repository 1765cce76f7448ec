"""Both servers' /metrics and request logs (issue 13), scraped over real sockets while real brokers
activate, lose their server (grace, lease at risk) and recover."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.core.errors import LicensingError
from mqtt_licensing.core.signing import public_key_to_text
from mqtt_licensing.servers._run import free_port
from tests.helpers.activation import start_vendor
from tests.helpers.broker import start_broker, wait_for
from tests.helpers.floating import start_floating

REQUESTS_LOG = "mqtt_licensing.servers.requests"


def scrape(url: str) -> dict[str, float]:
    response = httpx.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    values: dict[str, float] = {}
    for line in response.text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def op(server: str, operation: str, outcome: str) -> str:
    return f'mqtt_license_server_operations_total{{operation="{operation}",outcome="{outcome}",server="{server}"}}'


def alarm_codes(broker) -> set[str]:
    return {a["code"] for a in broker.status()["alarms"]}


@pytest.mark.timeout(90)
def test_activation_server_metrics_and_logs_through_activate_grace_recovery(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger=REQUESTS_LOG)
    with start_vendor(tmp_path / "vendor") as vendor:
        key = vendor.issue()
        with start_broker(tmp_path / "b", vendor=vendor, check_in_interval=1, retry_interval=0.3) as broker:
            with broker.admin() as c:
                assert c.request("activate", {"license_key": key})["status"]["state"] == "active"
                with pytest.raises(LicensingError):
                    c.request("activate", {"license_key": vendor.issue()})  # already activated: refused here
            wrong = key[:6] + ("B" if key[6] == "A" else "A") + key[7:]
            refused = httpx.post(f"{vendor.url}/v1/activations", json={"license_key": wrong, "request": "AAAA"})
            assert refused.status_code >= 400
            m = scrape(vendor.url)
            assert m[op("activation", "activate", "ok")] == 1
            assert m['mqtt_license_server_activations{state="active"}'] == 1
            assert any(k.startswith("mqtt_license_server_request_duration_seconds_bucket") for k in m)
            admin = httpx.get(f"{vendor.url}/v1/admin/licenses", headers={"Authorization": f"Bearer {vendor.token}"})
            assert admin.status_code == 200

            vendor.stop()
            wait_for(lambda: broker.status()["state"] == "grace", timeout=10)
            wait_for(lambda: "check_in_failing" in alarm_codes(broker), timeout=10)
            vendor.start()
            wait_for(lambda: broker.status()["state"] == "active", timeout=10)
            wait_for(lambda: "check_in_failing" not in alarm_codes(broker), timeout=10)
            m = scrape(vendor.url)  # a new process of the server: its counters start again
            assert m[op("activation", "check_in", "ok")] >= 1

    lines = [r.getMessage() for r in caplog.records if r.name == REQUESTS_LOG]
    created = [line for line in lines if line.startswith("POST /v1/activations 201")]
    assert len(created) == 1 and f"license_id={vendor.license_id(key)}" in created[0], lines
    assert "activation_id=" in created[0]
    assert any(line.startswith("POST /v1/activations/check-in 200") for line in lines)
    assert any(" error=" in line and line.startswith("POST /v1/activations 4") for line in lines)
    assert any(line.startswith("GET /v1/admin/licenses 200") for line in lines)
    everything = "\n".join(r.getMessage() for r in caplog.records)
    assert key not in everything and wrong not in everything and vendor.token not in everything


@pytest.mark.timeout(90)
def test_floating_server_metrics_and_agent_alarms_no_seat_and_lease_at_risk(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger=REQUESTS_LOG)
    vendor_key = Ed25519PrivateKey.generate()
    options = {
        "trial_seconds": 0,
        "vendor_url": None,
        "vendor_public_key": public_key_to_text(vendor_key),
        "retry_interval": 0.3,
        "floating_features": ["mqtt_server"],
    }
    with start_floating(tmp_path / "fls", vendor_key=vendor_key, seats=1, ttl=6) as fls:
        with start_broker(tmp_path / "a", floating_server_url=fls.url, **options) as a:
            wait_for(lambda: a.status()["state"] == "active", timeout=10)
            with start_broker(tmp_path / "b", floating_server_url=fls.url, **options) as b:
                wait_for(lambda: "no_seat" in alarm_codes(b), timeout=10)
                m = scrape(fls.url)
                assert m["mqtt_license_floating_seats"] == 1 and m["mqtt_license_floating_seats_used"] == 1
                assert m[op("floating", "lease_acquire", "ok")] == 1
                assert m[op("floating", "lease_acquire", "no_seats")] >= 1

            fls.stop()
            wait_for(lambda: "lease_at_risk" in alarm_codes(a), timeout=10)
            at_risk = next(x for x in a.status()["alarms"] if x["code"] == "lease_at_risk")
            assert at_risk["severity"] == "critical"
            assert at_risk["deadline"] == a.status()["floating"]["lease_expires_at"]
            fls.restart()
            wait_for(lambda: "lease_at_risk" not in alarm_codes(a), timeout=10)
            assert a.status()["state"] == "active"
            m = scrape(fls.url)
            assert m[op("floating", "lease_renew", "ok")] >= 1
    lines = [r.getMessage() for r in caplog.records if r.name == REQUESTS_LOG]
    assert any(line.startswith("POST /v1/leases 410") and "error=no_seats" in line for line in lines), lines


@pytest.mark.timeout(90)
def test_vendor_serve_logs_one_json_object_per_request(tmp_path):
    port = free_port()
    root = Path(__file__).resolve().parents[2]
    cmd = [sys.executable, "-m", "mqtt_licensing.cli.main", "vendor", "serve", "--data", str(tmp_path / "v")]
    init = [sys.executable, "-m", "mqtt_licensing.cli.main", "vendor", "init", str(tmp_path / "v")]
    subprocess.run(init, cwd=root, capture_output=True, timeout=60, check=True)  # serve needs a vendor data folder
    proc = subprocess.Popen(
        [*cmd, "--port", str(port), "--log-format", "json"],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: proc.poll() is not None or _up(url), timeout=45)  # a loaded machine starts slowly
        assert proc.poll() is None, "vendor serve exited"
        secret = "MQL1-THIS1-SHOUL-DNEVE-RBELO-GGED0-00000"
        assert httpx.post(f"{url}/v1/activations", json={"license_key": secret, "request": "AAAA"}).status_code >= 400
        token = (tmp_path / "v" / "metrics.token").read_text().strip()
        assert httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    lines = [json.loads(line) for line in err.decode().splitlines() if line.startswith("{")]
    requests = [line for line in lines if line["logger"] == REQUESTS_LOG]
    refused = next(line for line in requests if line["route"] == "/v1/activations")
    assert refused["method"] == "POST" and refused["status"] >= 400 and refused["error"]
    assert isinstance(refused["duration_ms"], float) and refused["level"] == "info"
    assert secret not in err.decode()


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/v1/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
