"""Exact activation counting: many threads race over real HTTP for a few activations."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.helpers.activation import VendorHandle

from .conftest import Instance

RACERS = 40


def _race(vendor: VendorHandle, bodies: list[dict[str, str]], path: str = "/v1/activations") -> list[httpx.Response]:
    barrier = threading.Barrier(len(bodies))

    def one(body: dict[str, str]) -> httpx.Response:
        with httpx.Client(base_url=vendor.url, timeout=30, trust_env=False) as client:
            barrier.wait()
            return client.post(path, json=body)

    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        return list(pool.map(one, bodies))


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
