"""`mqtt-licensing floating serve` as a real process: it starts, serves leases, stops on SIGTERM,
and its leases are still there when it comes back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.clients.floating import lease_request
from mqtt_licensing.core.documents import verify_lease
from mqtt_licensing.core.signing import b64, public_key_to_text, unb64
from mqtt_licensing.servers._run import free_port
from mqtt_licensing.servers.floating.service import FloatingService
from tests.helpers.floating import make_pool_certificate

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[3]


def _serve(data: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mqtt_licensing.cli.main",
            "floating",
            "serve",
            "--data",
            str(data),
            "--port",
            str(port),
            *extra,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1, trust_env=False).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("serve did not come up")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def test_serve_process(tmp_path):
    vendor = Ed25519PrivateKey.generate()
    data = tmp_path / "fls"
    service = FloatingService.open(data)  # creates the server key, as `floating request` would
    cert = make_pool_certificate(vendor, service.public_key, seats=1)
    service.install_certificate(cert, vendor_public_key=vendor.public_key())
    service.close()
    (tmp_path / "vendor.pub").write_text(public_key_to_text(vendor))

    port = free_port()
    inst = Ed25519PrivateKey.generate()
    proc = _serve(data, port, "--ttl", "45", "--vendor-key", str(tmp_path / "vendor.pub"))
    try:
        url = f"http://127.0.0.1:{port}"
        r = httpx.post(f"{url}/v1/leases", json={"request": b64(lease_request(inst, "lease_acquire"))}, trust_env=False)
        assert r.status_code == 200, r.text
        lease, _ = verify_lease(unb64(r.json()["lease"]), vendor.public_key())
        assert lease.ttl == 45
        token = (data / "admin.token").read_text().strip()
        assert httpx.get(f"{url}/v1/admin/status", trust_env=False).status_code == 401
        status = httpx.get(
            f"{url}/v1/admin/status", headers={"Authorization": f"Bearer {token}"}, trust_env=False
        ).json()
        assert status["seats"] == {"total": 1, "used": 1, "free": 0}
    finally:
        _stop(proc)
    assert oct((data / "floating.key").stat().st_mode & 0o777) == "0o600"
    assert oct((data / "admin.token").stat().st_mode & 0o777) == "0o600"

    proc = _serve(data, port)  # back, without --vendor-key: DIR/vendor.pub is pinned
    try:
        r = httpx.post(
            f"http://127.0.0.1:{port}/v1/leases/renew",
            json={"request": b64(lease_request(inst, "lease_renew"))},
            trust_env=False,
        )
        assert r.status_code == 200, r.text
        assert verify_lease(unb64(r.json()["lease"]), vendor.public_key())[0].lease_id == lease.lease_id
        r = httpx.post(
            f"http://127.0.0.1:{port}/v1/leases",
            json={"request": b64(lease_request(Ed25519PrivateKey.generate(), "lease_acquire"))},
            trust_env=False,
        )
        assert r.status_code == 410 and r.json()["error"]["code"] == "no_seats"
    finally:
        _stop(proc)
