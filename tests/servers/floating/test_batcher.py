"""The lease batch thread (servers/_jobs.py): renewals and releases that arrive together
share one transaction and one thread, with the exactly-once rules of a request on its own: the
second of two requests with one nonce is a replay, a refused request is undone alone and the
others of its batch are kept, and an answer comes only once its transaction committed."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.clients.floating import lease_request
from mqtt_licensing.core import labels
from mqtt_licensing.core.documents import Lease
from mqtt_licensing.core.errors import ErrorCode, LicensingError
from mqtt_licensing.core.signing import b64, load_public_key
from mqtt_licensing.servers._jobs import Job
from mqtt_licensing.servers.floating.app import create_app
from mqtt_licensing.servers.floating.service import FloatingService
from mqtt_licensing.servers.webhooks import Webhooks
from tests.helpers.batches import in_one_batch
from tests.helpers.floating import make_pool_certificate

from .conftest import FakeClock

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def service(tmp_path: Path, database_url: str | None, clock: FakeClock) -> Iterator[FloatingService]:
    vendor_key = Ed25519PrivateKey.generate()
    svc = FloatingService.open(
        tmp_path / "fls", ttl=60, clock=clock, vendor_public_key=vendor_key.public_key(), database_url=database_url
    )
    svc.install_certificate(make_pool_certificate(vendor_key, svc.public_key, seats=5))
    yield svc
    svc.close()


def lease_expiry(service: FloatingService, blob: bytes) -> int:
    lease = Lease.open(blob, load_public_key(service.public_key))
    return lease.expires_at


def test_one_signed_renewal_sent_twice_in_one_batch_is_applied_once(service: FloatingService, clock: FakeClock) -> None:
    key = Ed25519PrivateKey.generate()
    service.acquire(lease_request(key, labels.KIND_LEASE_ACQUIRE, now=clock.now))
    clock.advance(10)
    renewal = lease_request(key, labels.KIND_LEASE_RENEW, now=clock.now)
    outcomes = in_one_batch(service.batcher, [lambda: service.leases.renew_job(renewal)] * 2)
    assert isinstance(outcomes[0], bytes) and lease_expiry(service, outcomes[0]) == clock.now + 60
    assert isinstance(outcomes[1], LicensingError) and "replay" in outcomes[1].message


def test_a_refused_request_is_undone_alone_and_the_rest_of_its_batch_is_kept(
    service: FloatingService, clock: FakeClock
) -> None:
    holder, stranger, leaving = (Ed25519PrivateKey.generate() for _ in range(3))
    for key in (holder, leaving):
        service.acquire(lease_request(key, labels.KIND_LEASE_ACQUIRE, now=clock.now))
    clock.advance(10)
    renew = lease_request(holder, labels.KIND_LEASE_RENEW, now=clock.now)
    foreign = lease_request(stranger, labels.KIND_LEASE_RENEW, now=clock.now)  # holds no lease
    release = lease_request(leaving, labels.KIND_LEASE_RELEASE, now=clock.now)
    outcomes = in_one_batch(
        service.batcher,
        [
            lambda: service.leases.renew_job(renew),
            lambda: service.leases.renew_job(foreign),
            lambda: service.leases.release_job(release),
        ],
    )
    assert isinstance(outcomes[0], bytes)
    assert isinstance(outcomes[1], LicensingError) and outcomes[1].code == ErrorCode.LEASE_NOT_FOUND
    assert outcomes[2] is True
    status = service.status()
    assert [le["renewed_at"] for le in status["leases"]] == [clock.now]  # the renewal committed
    assert status["seats"]["used"] == 1  # and the release


def test_a_request_that_fails_its_checks_before_the_transaction_fails_alone(
    service: FloatingService, clock: FakeClock
) -> None:
    key = Ed25519PrivateKey.generate()
    service.acquire(lease_request(key, labels.KIND_LEASE_ACQUIRE, now=clock.now))
    renewal = lease_request(key, labels.KIND_LEASE_RENEW, now=clock.now)
    outcomes = in_one_batch(
        service.batcher,
        [lambda: service.leases.renew_job(b"not a document"), lambda: service.leases.renew_job(renewal)],
    )
    assert isinstance(outcomes[0], LicensingError) and outcomes[0].code == ErrorCode.INVALID_CODE
    assert isinstance(outcomes[1], bytes)


def test_a_cancelled_request_leaves_the_thread_serving(service: FloatingService, clock: FakeClock) -> None:
    key = Ed25519PrivateKey.generate()
    service.acquire(lease_request(key, labels.KIND_LEASE_ACQUIRE, now=clock.now))
    gate, started = threading.Event(), threading.Event()

    def slow() -> Job[Any, Any]:
        started.set()
        gate.wait(30)
        return service.leases.renew_job(lease_request(key, labels.KIND_LEASE_RENEW, now=clock.now))

    async def run() -> bytes:
        task = asyncio.ensure_future(service.batcher.run(slow))
        await asyncio.sleep(0)
        assert started.wait(30)
        task.cancel()  # its client went away while it ran
        gate.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        return await service.batcher.run(
            lambda: service.leases.renew_job(lease_request(key, labels.KIND_LEASE_RENEW, now=clock.now))
        )

    assert isinstance(asyncio.run(run()), bytes)


def test_an_acquire_refused_for_want_of_a_seat_over_http_queues_seats_exhausted(
    service: FloatingService, clock: FakeClock
) -> None:
    """The refusal rolls its transaction back; the batch thread's failure hook records the event
    in one of its own, as the acquire did on a worker thread."""
    Webhooks(service.store.engine).add("http://127.0.0.1:9/hook", ["floating.seats_exhausted"], clock.now)
    app = create_app(service, "token")

    async def run() -> list[int]:
        codes = []
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fls") as client:
            for _ in range(6):  # the pool has 5 seats
                body = {
                    "request": b64(
                        lease_request(Ed25519PrivateKey.generate(), labels.KIND_LEASE_ACQUIRE, now=clock.now)
                    )
                }
                codes.append((await client.post("/v1/leases", json=body)).status_code)
        return codes

    assert asyncio.run(run()) == [200] * 5 + [410]
    events = [d["event_type"] for d in Webhooks(service.store.engine).deliveries()]
    assert events == ["floating.seats_exhausted"]
