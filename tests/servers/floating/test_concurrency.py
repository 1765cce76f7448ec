"""Seat accounting is exact under concurrency: 50 instances racing for 10 seats get exactly 10 leases."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.clients.floating import FloatingClient, lease_request
from mqtt_licensing.core.documents import verify_lease
from mqtt_licensing.core.errors import LicensingError
from mqtt_licensing.core.signing import b64
from tests.helpers.floating import start_floating

pytestmark = pytest.mark.timeout(60)


async def _race(urls: list[str], keys: list[Ed25519PrivateKey]) -> list[bytes | str]:
    clients = [FloatingClient(url, timeout=30) for url in urls]
    start = asyncio.Event()

    async def one(i: int, key: Ed25519PrivateKey) -> bytes | str:
        request = lease_request(key, "lease_acquire", features=("mqtt_server",))
        await start.wait()
        try:
            return await clients[i % len(clients)].acquire(request)
        except LicensingError as exc:
            return str(exc.code)

    tasks = [asyncio.create_task(one(i, key)) for i, key in enumerate(keys)]
    await asyncio.sleep(0.05)
    start.set()
    try:
        return await asyncio.gather(*tasks)
    finally:
        for client in clients:
            await client.aclose()


async def test_50_instances_race_for_10_seats(floating, vendor):
    fls = floating(seats=10)
    keys = [Ed25519PrivateKey.generate() for _ in range(50)]
    results = await _race([fls.url], keys)
    leases = [r for r in results if isinstance(r, bytes)]
    assert Counter(r for r in results if isinstance(r, str)) == {"no_seats": 40}
    assert len(leases) == 10
    ids = {verify_lease(blob, vendor.public_key())[0].lease_id for blob in leases}
    assert len(ids) == 10
    status = fls.service.status()
    assert status["seats"] == {"total": 10, "used": 10, "free": 0}
    # and everyone racing again (the 10 holders included) changes nothing
    results = await _race([fls.url], keys)
    assert sum(isinstance(r, bytes) for r in results) == 10
    assert {verify_lease(b, vendor.public_key())[0].lease_id for b in results if isinstance(b, bytes)} == ids


async def test_three_replicas_on_one_database_stay_exact(tmp_path, vendor, database_url):
    """Three server processes' worth (three engines, three HTTP servers) over one database:
    50 instances race for the last seat."""
    a = start_floating(tmp_path / "shared", vendor_key=vendor, seats=7, database_url=database_url)
    others = [
        start_floating(tmp_path / "shared", vendor_public_key=vendor.public_key(), database_url=database_url)
        for _ in range(2)
    ]
    try:
        assert {a.fingerprint} == {o.fingerprint for o in others}
        first = [Ed25519PrivateKey.generate() for _ in range(6)]
        assert sum(isinstance(r, bytes) for r in await _race([a.url], first)) == 6
        keys = [Ed25519PrivateKey.generate() for _ in range(50)]
        results = await _race([a.url] + [o.url for o in others], keys)
        assert Counter(r if isinstance(r, str) else "lease" for r in results) == {"lease": 1, "no_seats": 49}
        assert a.service.status()["seats"]["used"] == 7
    finally:
        a.stop()
        for o in others:
            o.stop()


def test_threads_race_with_same_instances_repeating(floating):
    """Threads with blocking HTTP: 30 instances, each acquiring 3 times at once, 10 seats."""
    fls = floating(seats=10)
    keys = [Ed25519PrivateKey.generate() for _ in range(30)]
    barrier = threading.Barrier(90)
    outcomes: list[tuple[int, int, str]] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        key = keys[i % 30]
        body = {"request": b64(lease_request(key, "lease_acquire"))}
        with httpx.Client(base_url=fls.url, timeout=30, trust_env=False) as http:
            barrier.wait()
            response = http.post("/v1/leases", json=body)
        code = "ok" if response.status_code == 200 else response.json()["error"]["code"]
        with lock:
            outcomes.append((i % 30, response.status_code, code))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(90)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(outcomes) == 90
    assert {code for _, _, code in outcomes} <= {"ok", "no_seats"}
    winners = {i for i, _, code in outcomes if code == "ok"}
    assert len(winners) == 10
    assert fls.service.status()["seats"]["used"] == 10
