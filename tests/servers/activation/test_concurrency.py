"""Exact activation counting: many threads race over real HTTP for a few activations, on SQLite
and on PostgreSQL, against one server and against replicas sharing one database."""

from __future__ import annotations

import secrets
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from mqtt_licensing.core.keys import format_key
from tests.helpers.activation import VendorHandle, start_vendor

from .conftest import Instance

RACERS = 40


@pytest.fixture
def replicas(tmp_path: Path, database_url: str | None) -> Iterator[list[VendorHandle]]:
    """Three servers on one database, each with its own engine and socket, as separate processes
    have (the real-process replicas are in tests/servers/test_replicas.py)."""
    handles = [start_vendor(tmp_path / "vendor", database_url=database_url) for _ in range(3)]
    try:
        yield handles
    finally:
        for handle in handles:
            handle.close()


def _race(
    vendor: VendorHandle | list[VendorHandle], bodies: list[dict[str, str]], path: str = "/v1/activations"
) -> list[httpx.Response]:
    servers = vendor if isinstance(vendor, list) else [vendor]
    barrier = threading.Barrier(len(bodies))

    def one(i: int) -> httpx.Response:
        with httpx.Client(base_url=servers[i % len(servers)].url, timeout=30, trust_env=False) as client:
            barrier.wait()
            return client.post(path, json=bodies[i])

    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        return list(pool.map(one, range(len(bodies))))


def test_exactly_n_activations_succeed(vendor: VendorHandle) -> None:
    n = 7
    key = vendor.issue(max_activations=n)
    instances = [Instance() for _ in range(RACERS)]
    responses = _race(vendor, [inst.activation_body(key) for inst in instances])

    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) == n, statuses
    refused = [r for r in responses if r.status_code != 201]
    assert all(r.status_code == 409 and r.json()["error"]["code"] == "no_activations_left" for r in refused)
    lic_id = vendor.license_id(key)
    activations = vendor.service.list_activations(lic_id)
    assert len(activations) == n
    winners = {r.json()["activation_id"] for r in responses if r.status_code == 201}
    assert winners == {a["id"] for a in activations}


def test_one_instance_racing_itself_gets_one_activation(vendor: VendorHandle) -> None:
    key = vendor.issue(max_activations=3)
    inst = Instance()
    responses = _race(vendor, [inst.activation_body(key) for _ in range(20)])
    assert all(r.status_code in (200, 201) for r in responses), [r.text for r in responses]
    assert sorted(r.status_code for r in responses).count(201) == 1
    assert len({r.json()["activation_id"] for r in responses}) == 1
    assert len(vendor.service.list_activations(vendor.license_id(key))) == 1


def test_50_racers_across_replicas_for_the_last_activation(replicas: list[VendorHandle]) -> None:
    first = replicas[0]
    key = first.issue(max_activations=3)
    assert first.service is not None
    for _ in range(2):  # all but the last activation already taken
        inst = Instance()
        assert first.service.activate(key, inst.activate(key)).reused is False
    responses = _race(replicas, [Instance().activation_body(key) for _ in range(50)])
    assert Counter(r.status_code for r in responses) == {201: 1, 409: 49}
    assert len(first.service.list_activations(first.license_id(key))) == 3


def test_the_key_guessing_limit_holds_across_replicas(replicas: list[VendorHandle]) -> None:
    """60 unknown keys at once from one address, spread over three replicas: at most 10 looked up.
    On PostgreSQL this needs the rate row locked (Tx.lock_rate): unlocked, replicas read the same count."""
    guesser = Instance()
    bodies = [guesser.activation_body(format_key(secrets.token_bytes(15))) for _ in range(60)]
    codes = Counter(r.json()["error"]["code"] for r in _race(replicas, bodies))
    assert set(codes) <= {"key_not_found", "rate_limited"}, codes
    assert codes["key_not_found"] == 10, codes
