"""`floating serve --workers 2` (servers/_workers.py) as a real process on one SQLite file: the
seat count and the nonce rule hold across the workers, and a worker killed -9 is started again."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.clients.floating import lease_request
from mqtt_licensing.core.signing import b64, unb64
from mqtt_licensing.servers.floating.service import FloatingService
from tests.helpers.floating import make_pool_certificate
from tests.servers.activation.test_workers import _post_each, _workers
from tests.servers.replicas import Replica

pytestmark = pytest.mark.timeout(120)

SEATS = 10
RACERS = 16


def test_two_floating_workers_keep_the_seat_count_and_the_nonce_rule(tmp_path: Path) -> None:
    data = tmp_path / "fls"
    vendor = Ed25519PrivateKey.generate()
    service = FloatingService.open(data, vendor_public_key=vendor.public_key())
    try:
        service.install_certificate(make_pool_certificate(vendor, service.public_key, seats=SEATS))
        service.allow("network", "127.0.0.0/8")
    finally:
        service.close()
    server = Replica("floating", data, None, "--workers", "2", "--log-level", "WARNING")
    try:
        workers = _workers(server.proc.pid)
        assert len(workers) == 2
        # 16 instances race for 10 seats, each on its own connection, across both workers.
        keys = [Ed25519PrivateKey.generate() for _ in range(RACERS)]
        bodies = [{"request": b64(lease_request(k, "lease_acquire"))} for k in keys]
        answers = asyncio.run(_post_each(server.url, "/v1/leases", bodies))
        assert Counter(r.status_code for r in answers) == {200: SEATS, 410: RACERS - SEATS}, [r.text for r in answers]
        assert {r.json()["error"]["code"] for r in answers if r.status_code == 410} == {"no_seats"}
        service = FloatingService.open(data)  # the CLI's way in, beside the running server
        try:
            status = service.status()
            assert status["seats"] == {"total": SEATS, "used": SEATS, "free": 0}
            granted = {unb64(r.json()["lease"]) for r in answers if r.status_code == 200}
            assert len(granted) == SEATS
            # 8 copies of one signed renewal, across both workers: applied once, 7 refused as replays.
            holder = next(k for k, r in zip(keys, answers, strict=True) if r.status_code == 200)
            copy = {"request": b64(lease_request(holder, "lease_renew"))}
            renewals = asyncio.run(_post_each(server.url, "/v1/leases/renew", [copy] * 8))
            assert sorted(r.status_code for r in renewals) == [200] + [400] * 7, [r.text for r in renewals]
            assert all("replay" in r.json()["error"]["message"] for r in renewals if r.status_code == 400)
            assert service.status()["seats"]["used"] == SEATS
        finally:
            service.close()

        # A worker killed -9 is started again; the server answers throughout.
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while len(_workers(server.proc.pid) - {victim}) < 2:
            assert time.monotonic() < deadline, "the killed worker was not started again"
            assert httpx.get(f"{server.url}/v1/noop", trust_env=False, timeout=10).status_code == 200
            time.sleep(0.2)
        # The restarted worker serves leases too: every instance renews over fresh connections.
        holders = [k for k, r in zip(keys, answers, strict=True) if r.status_code == 200]
        bodies = [{"request": b64(lease_request(k, "lease_renew"))} for k in holders]
        again = asyncio.run(_post_each(server.url, "/v1/leases/renew", bodies))
        assert [r.status_code for r in again] == [200] * SEATS, [r.text for r in again]
    finally:
        server.stop()
    assert server.proc.returncode == 0
    assert not _workers(server.proc.pid)
