"""Replicas as real processes on one PostgreSQL database: a race spread over them never
over-issues, kill -9 of one mid-race loses nothing and double-counts nothing, and brokers with
the replicas of a floating server in their config stay ``active`` when one dies. A fleet of 200
renewing through a kill -9: test_replica_soak.py."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.clients.floating import lease_request
from mqtt_licensing.core.documents import verify_lease
from mqtt_licensing.core.signing import b64, public_key_to_text, unb64
from mqtt_licensing.servers.activation.service import ActivationService
from mqtt_licensing.servers.floating.service import FloatingService
from tests.helpers.broker import start_broker, wait_for
from tests.helpers.floating import make_pool_certificate

from .activation.conftest import Instance
from .replicas import Replica, start_replicas

pytestmark = pytest.mark.timeout(120)

RACERS = 60
CAPACITY = 30


def _race_with_a_kill(
    replicas: list[Replica], post: Any, cut: list[int] | None = None
) -> list[tuple[int, int, dict[str, Any]]]:
    """RACERS posts spread over the replicas; replica 0 is killed (-9) as soon as the first answer
    arrives, so some of its requests are cut off in flight. Those are sent again to replica 1 (a
    new signed request, as a client retrying would); their numbers go to ``cut``. Returns (racer,
    status, body) per racer."""
    first_answer = threading.Event()
    barrier = threading.Barrier(RACERS)

    def one(i: int) -> tuple[int, int, dict[str, Any]]:
        with httpx.Client(timeout=30, trust_env=False) as http:
            barrier.wait()
            try:
                response = post(http, replicas[i % len(replicas)].url, i)
            except httpx.HTTPError:
                if cut is not None:
                    cut.append(i)
                response = post(http, replicas[1].url, i)  # the client's retry, on a survivor
            first_answer.set()
            return i, response.status_code, response.json()

    with ThreadPoolExecutor(max_workers=RACERS) as pool:
        futures = [pool.submit(one, i) for i in range(RACERS)]
        first_answer.wait(30)
        replicas[0].kill()
        return [f.result() for f in futures]


def test_vendor_replicas_race_and_a_killed_replica_loses_nothing(tmp_path: Path, pg_cluster: Any) -> None:
    url = pg_cluster.new_database()
    service = ActivationService.open(tmp_path / "vendor", database_url=url)
    _lic, key = service.issue_license(features=["mqtt_server"], max_activations=CAPACITY)
    replicas = start_replicas("vendor", 3, tmp_path / "vendor", url)
    instances = [Instance() for _ in range(RACERS)]
    try:
        cut: list[int] = []
        results = _race_with_a_kill(
            replicas,
            lambda http, base, i: http.post(f"{base}/v1/activations", json=instances[i].activation_body(key)),
            cut,
        )
        # any racer whose answer was lost with the killed process asks again: it gets its own
        # activation back if it had been committed ("reused"), never a second one
        again = [
            (i, r.status_code, r.json())
            for i, status, _ in results
            if status not in (200, 201, 409)
            for r in [httpx.post(f"{replicas[2].url}/v1/activations", json=instances[i].activation_body(key))]
        ]
        print(f"{len(cut)} requests cut off by the kill, {len(again)} answered with an error")
        final = {i: (status, body) for i, status, body in results + again}
        won = {i: body["activation_id"] for i, (status, body) in final.items() if status in (200, 201)}
        refused = [body["error"]["code"] for status, body in final.values() if status == 409]
        assert len(won) == CAPACITY and refused == ["no_activations_left"] * (RACERS - CAPACITY), final
        live = service.list_activations(service.list_licenses()[0]["id"])
        assert sorted(a["id"] for a in live) == sorted(won.values())
        assert {a["instance_fingerprint"] for a in live} == {instances[i].fingerprint for i in won}
    finally:
        for r in replicas:
            r.stop()
        service.close()


def test_floating_replicas_race_and_a_killed_replica_loses_nothing(tmp_path: Path, pg_cluster: Any) -> None:
    url = pg_cluster.new_database()
    vendor = Ed25519PrivateKey.generate()
    service = FloatingService.open(tmp_path / "fls", database_url=url, vendor_public_key=vendor.public_key())
    service.install_certificate(make_pool_certificate(vendor, service.public_key, seats=CAPACITY))
    replicas = start_replicas("floating", 3, tmp_path / "fls", url)
    keys = [Ed25519PrivateKey.generate() for _ in range(RACERS)]

    def acquire(http: httpx.Client, base: str, i: int) -> httpx.Response:
        return http.post(f"{base}/v1/leases", json={"request": b64(lease_request(keys[i], "lease_acquire"))})

    try:
        cut: list[int] = []
        results = _race_with_a_kill(replicas, acquire, cut)
        with httpx.Client(timeout=30, trust_env=False) as http:
            again = [
                (i, r.status_code, r.json())
                for i, s, _ in results
                if s not in (200, 410)
                for r in [acquire(http, replicas[2].url, i)]
            ]
        print(f"{len(cut)} requests cut off by the kill, {len(again)} answered with an error")
        final = {i: (status, body) for i, status, body in results + again}
        assert Counter(status for status, _ in final.values()) == {200: CAPACITY, 410: RACERS - CAPACITY}, final
        leases = [
            verify_lease(unb64(body["lease"]), vendor.public_key())[0]
            for status, body in final.values()
            if status == 200
        ]
        assert len({lease.lease_id for lease in leases}) == CAPACITY
        status = service.status()
        assert status["seats"] == {"total": CAPACITY, "used": CAPACITY, "free": 0}
        assert sorted(le["lease_id"] for le in status["leases"]) == sorted(lease.lease_id for lease in leases)
    finally:
        for r in replicas:
            r.stop()
        service.close()


def test_brokers_stay_active_when_a_floating_replica_dies(tmp_path: Path, pg_cluster: Any) -> None:
    url = pg_cluster.new_database()
    vendor = Ed25519PrivateKey.generate()
    service = FloatingService.open(tmp_path / "fls", database_url=url, vendor_public_key=vendor.public_key())
    service.install_certificate(make_pool_certificate(vendor, service.public_key, seats=3))
    a, b = start_replicas("floating", 2, tmp_path / "fls", url, "--ttl", "6")  # renewed every 2 s
    brokers = []
    try:
        brokers = [
            start_broker(
                tmp_path / f"broker{i}",
                vendor_url=None,
                vendor_public_key=public_key_to_text(vendor),
                trial_seconds=0,
                floating_server_url=[a.url, b.url],
                retry_interval=0.3,
            )
            for i in range(3)
        ]
        for broker in brokers:
            wait_for(lambda broker=broker: broker.agent.evaluation.state == "active", timeout=15)
            assert broker.status()["floating"]["server"] == a.url
        first_leases = {broker.status()["floating"]["lease_id"] for broker in brokers}
        states: list[str] = []
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                states.extend(broker.agent.evaluation.state for broker in brokers)
                stop.wait(0.05)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            a.kill()
            for broker in brokers:  # each renews its lease with the survivor
                wait_for(lambda broker=broker: broker.status()["floating"]["server"] == b.url, timeout=20)
        finally:
            stop.set()
            watcher.join(5)
        assert states and set(states) == {"active"}, Counter(states)
        assert {broker.status()["floating"]["lease_id"] for broker in brokers} == first_leases  # renewed, not re-leased
        assert service.status()["seats"]["used"] == 3
    finally:
        for broker in brokers:
            broker.stop()
        a.stop()
        b.stop()
        service.close()
