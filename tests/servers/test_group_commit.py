"""Group commit (servers/_batch.py) keeps the exactly-once rules inside one shared transaction.

Each test holds the batch leader busy with a write that waits, queues the requests under test
behind it, and releases it only once all of them are queued: they then run in ONE transaction
(``group.largest`` proves it), the case where a batching bug would let two of them both see
"nonce unseen", "one activation left" or "one seat left"."""

from __future__ import annotations

import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.clients.floating import lease_request
from mqtt_licensing.core import labels
from mqtt_licensing.core.documents import sign_instance_request
from mqtt_licensing.core.errors import ErrorCode, LicensingError
from mqtt_licensing.core.keys import key_digest
from mqtt_licensing.servers._batch import GroupCommit
from mqtt_licensing.servers.activation.schema import request_nonces
from mqtt_licensing.servers.activation.service import ActivationService
from mqtt_licensing.servers.floating.service import FloatingService
from tests.helpers.floating import make_pool_certificate

pytestmark = pytest.mark.timeout(120)


def in_one_batch(
    group: GroupCommit[Any], begin: Callable[[Callable[[Any], Any]], Any], calls: Sequence[Callable[[], Any]]
) -> list[Any]:
    """Run ``calls`` (each one write through ``group``) so that all land in one batch; their
    outcomes (a value, or the LicensingError's code)."""
    group.batching = True  # PostgreSQL runs without it (servers/_batch.py); the rules hold there too
    gate = threading.Event()
    with ThreadPoolExecutor(len(calls) + 1) as pool:
        blocker = pool.submit(begin, lambda _tx: gate.wait(30))
        deadline = time.monotonic() + 30
        while not group._leading:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        futures: list[Future[Any]] = [pool.submit(call) for call in calls]
        while len(group._pending) < len(calls):
            assert time.monotonic() < deadline, "the requests never queued"
            time.sleep(0.005)
        gate.set()
        blocker.result()
        outcomes = []
        for future in futures:
            try:
                outcomes.append(future.result())
            except LicensingError as exc:
                outcomes.append(str(exc.code))
    assert group.largest >= len(calls), "the requests were not committed as one batch"
    return outcomes


@pytest.fixture
def vendor(tmp_path: Path, database_url: str | None) -> Any:
    service = ActivationService.open(tmp_path / "vendor", database_url=database_url)
    yield service
    service.close()


def _activate(service: ActivationService, key: str, identity: Ed25519PrivateKey) -> Any:
    blob = sign_instance_request(
        identity, kind=labels.KIND_ACTIVATE, nonce=secrets.token_hex(16), created_at=int(time.time()),
        key_digest=key_digest(key),
    )  # fmt: skip
    return service.activate(key, blob)


def test_one_check_in_sent_16_times_in_one_batch_is_accepted_once(vendor: ActivationService) -> None:
    _lic, key = vendor.issue_license(features=["mqtt_server"], max_activations=1)
    identity = Ed25519PrivateKey.generate()
    act = _activate(vendor, key, identity)
    blob = sign_instance_request(
        identity, kind=labels.KIND_CHECK_IN, nonce=secrets.token_hex(16), created_at=int(time.time()),
        activation_id=act.activation_id,
    )  # fmt: skip
    outcomes = in_one_batch(vendor.store.group, vendor.store.write, [lambda: vendor.check_in(blob)] * 16)
    assert sum(isinstance(o, bytes) for o in outcomes) == 1
    assert Counter(o for o in outcomes if not isinstance(o, bytes)) == {"bad_request": 15}  # replays


def test_activations_in_one_batch_never_exceed_the_license(vendor: ActivationService) -> None:
    """Activations read the rate limit in a transaction of their own before they queue (a
    refused source never costs a signature check), so they cannot be held behind a busy leader:
    they start together and batch as they arrive."""
    _lic, key = vendor.issue_license(features=["mqtt_server"], max_activations=5)
    identities = [Ed25519PrivateKey.generate() for _ in range(12)]
    start = threading.Barrier(len(identities))

    def activate(identity: Ed25519PrivateKey) -> str:
        start.wait(30)
        try:
            return str(_activate(vendor, key, identity).activation_id)
        except LicensingError as exc:
            return str(exc.code)

    with ThreadPoolExecutor(len(identities)) as pool:
        outcomes = list(pool.map(activate, identities))
    assert Counter("ok" if o.startswith("act_") else o for o in outcomes) == {"ok": 5, "no_activations_left": 7}
    assert len(vendor.list_activations()) == 5


def test_a_refused_request_is_undone_alone_and_the_rest_of_its_batch_commits(vendor: ActivationService) -> None:
    def write(scope: str, fail: bool) -> Callable[[], str]:
        def work(tx: Any) -> str:
            tx.remember_nonce(scope, "n", int(time.time()))
            if fail:
                raise LicensingError(ErrorCode.BAD_REQUEST, "refused after writing")
            return scope

        return lambda: vendor.store.write(work)

    calls = [write(f"s{n}", fail=n % 2 == 1) for n in range(8)]
    outcomes = in_one_batch(vendor.store.group, vendor.store.write, calls)
    assert outcomes == ["s0", "bad_request", "s2", "bad_request", "s4", "bad_request", "s6", "bad_request"]
    with vendor.store.transaction() as tx:
        kept = {row.scope for row in tx.conn.execute(sa.select(request_nonces.c.scope))}
    assert kept == {"s0", "s2", "s4", "s6"}


def test_seats_in_one_batch_never_exceed_the_pool(tmp_path: Path, database_url: str | None) -> None:
    vendor_key = Ed25519PrivateKey.generate()
    service = FloatingService.open(
        tmp_path / "fls", ttl=600, vendor_public_key=vendor_key.public_key(), database_url=database_url
    )
    try:
        service.install_certificate(make_pool_certificate(vendor_key, service.public_key, seats=10))
        brokers = [Ed25519PrivateKey.generate() for _ in range(16)]
        calls = [lambda b=b: service.acquire(lease_request(b, labels.KIND_LEASE_ACQUIRE)) for b in brokers]
        outcomes = in_one_batch(service.store.group, service.store.write, calls)
        assert Counter("lease" if isinstance(o, bytes) else o for o in outcomes) == {"lease": 10, "no_seats": 6}
        assert service.status()["seats"]["used"] == 10
        # one renewal sent many times in one batch: accepted once
        holder = next(b for b, o in zip(brokers, outcomes, strict=True) if isinstance(o, bytes))
        renewal = lease_request(holder, labels.KIND_LEASE_RENEW)
        again = in_one_batch(service.store.group, service.store.write, [lambda: service.renew(renewal)] * 8)
        assert sum(isinstance(o, bytes) for o in again) == 1
    finally:
        service.close()
