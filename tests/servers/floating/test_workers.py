"""`floating serve --workers 2` (servers/_workers.py) as a real process on one SQLite file: the
seat count and the nonce rule hold across the workers, and a worker killed -9 is started again."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections import Counter
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.clients.floating import lease_request
from mqtt_licensing.core.signing import b64, unb64
from mqtt_licensing.servers.floating.service import FloatingService
from tests.helpers.floating import make_pool_certificate
from tests.helpers.workers import kill_one_and_see_it_restarted, post_each, worker_pids
from tests.servers.replicas import Replica

pytestmark = pytest.mark.timeout(120)

SEATS = 10
RACERS = 16


def _sockets_of(pid: int) -> set[int]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    return inodes


def _tcp(port: int, state: str) -> list[list[str]]:
    """/proc/net/tcp rows on local ``port`` in ``state`` (0A listening, 01 established)."""
    rows = (row.split() for row in Path("/proc/net/tcp").read_text().splitlines()[1:])
    return [f for f in rows if f[3] == state and int(f[1].split(":")[1], 16) == port]


def _listening(port: int) -> int:
    return len(_tcp(port, "0A"))


def _spread(workers: set[int], port: int, n: int = 16) -> list[int]:
    """How many of ``n`` connections opened at once each worker accepted (each answers a no-op first)."""
    conns = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(n)]
    try:
        for conn in conns:
            conn.sendall(b"GET /v1/noop HTTP/1.1\r\nHost: test\r\n\r\n")
        for conn in conns:
            assert conn.recv(65536).startswith(b"HTTP/1.1 200")
        served = {int(f[9]) for f in _tcp(port, "01")}
        return sorted(len(_sockets_of(pid) & served) for pid in workers)
    finally:
        for conn in conns:
            conn.close()


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
        workers = worker_pids(server.proc.pid)
        assert len(workers) == 2
        # Connections opened together reach both workers: each listens on a socket of its own
        # (SO_REUSEPORT). On one shared socket the first worker woken accepted them all, half the time.
        deadline = time.monotonic() + 30
        while _listening(server.port) < 2:  # each worker listens once its app is built
            assert time.monotonic() < deadline, "the second worker does not listen"
            time.sleep(0.1)
        for _ in range(4):
            spread = _spread(workers, server.port)
            assert sum(spread) == 16 and min(spread) > 0, spread
        # 16 instances race for 10 seats, each on its own connection, across both workers.
        keys = [Ed25519PrivateKey.generate() for _ in range(RACERS)]
        bodies = [{"request": b64(lease_request(k, "lease_acquire"))} for k in keys]
        answers = asyncio.run(post_each(server.url, "/v1/leases", bodies))
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
            renewals = asyncio.run(post_each(server.url, "/v1/leases/renew", [copy] * 8))
            assert sorted(r.status_code for r in renewals) == [200] + [400] * 7, [r.text for r in renewals]
            assert all("replay" in r.json()["error"]["message"] for r in renewals if r.status_code == 400)
            assert service.status()["seats"]["used"] == SEATS
        finally:
            service.close()

        # A worker killed -9 is started again; the server answers throughout.
        kill_one_and_see_it_restarted(server.proc.pid, server.url, workers)
        # The restarted worker serves leases too: every instance renews over fresh connections.
        holders = [k for k, r in zip(keys, answers, strict=True) if r.status_code == 200]
        bodies = [{"request": b64(lease_request(k, "lease_renew"))} for k in holders]
        again = asyncio.run(post_each(server.url, "/v1/leases/renew", bodies))
        assert [r.status_code for r in again] == [200] * SEATS, [r.text for r in again]
    finally:
        server.stop()
    assert server.proc.returncode == 0
    assert not worker_pids(server.proc.pid)
