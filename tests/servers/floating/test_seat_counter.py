"""The seat counter (pool.leases_held, migration 0009): an acquire decides "no seat left" from it
instead of counting every live lease, so it must follow every way a lease row comes and goes:
acquire, release, expiry reclaimed by an acquire, the pool's deactivation; and a database
upgraded with leases in it starts with the right count."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.clients.floating import lease_request
from mqtt_licensing.core import labels
from mqtt_licensing.core.errors import ErrorCode, LicensingError
from mqtt_licensing.servers.floating.schema import leases, pool
from mqtt_licensing.servers.floating.service import FloatingService
from tests.helpers.floating import make_pool_certificate

from .conftest import FakeClock

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def service(tmp_path: Path, database_url: str | None, clock: FakeClock) -> Iterator[FloatingService]:
    vendor_key = Ed25519PrivateKey.generate()
    svc = FloatingService.open(
        tmp_path / "fls", ttl=60, clock=clock, vendor_public_key=vendor_key.public_key(), database_url=database_url
    )
    svc.install_certificate(make_pool_certificate(vendor_key, svc.public_key, seats=3))
    yield svc
    svc.close()


def held(service: FloatingService) -> tuple[int, int]:
    """(the counter, the rows it counts)."""
    with service.store.transaction() as tx:
        counter = tx.conn.execute(sa.select(pool.c.leases_held)).scalar_one()
        rows = tx.conn.execute(sa.select(sa.func.count()).select_from(leases)).scalar_one()
    return int(counter), int(rows)


def acquire(service: FloatingService, key: Ed25519PrivateKey, clock: FakeClock) -> str:
    try:
        service.acquire(lease_request(key, labels.KIND_LEASE_ACQUIRE, now=clock.now))
    except LicensingError as exc:
        return str(exc.code)
    return "lease"


def test_the_counter_follows_acquire_release_expiry_and_refuses_past_the_pool(
    service: FloatingService, clock: FakeClock
) -> None:
    a, b, c, d = (Ed25519PrivateKey.generate() for _ in range(4))
    assert [acquire(service, k, clock) for k in (a, b, c, d)] == ["lease"] * 3 + [str(ErrorCode.NO_SEATS)]
    assert held(service) == (3, 3)
    assert acquire(service, a, clock) == "lease"  # the holder again: its own seat, not a new one
    assert held(service) == (3, 3)
    assert service.release(lease_request(b, labels.KIND_LEASE_RELEASE, now=clock.now))
    assert held(service) == (2, 2)
    assert acquire(service, d, clock) == "lease"
    assert acquire(service, b, clock) == str(ErrorCode.NO_SEATS)
    clock.advance(61)  # every lease expired: the next acquire reclaims them all
    assert acquire(service, b, clock) == "lease"
    assert held(service) == (1, 1)
    assert [acquire(service, k, clock) for k in (a, c, d)] == ["lease", "lease", str(ErrorCode.NO_SEATS)]
    assert held(service) == (3, 3)


def test_a_counter_that_drifted_low_would_over_issue(service: FloatingService, clock: FakeClock) -> None:
    """The acquire reads the counter (this test fails if it counted the rows instead): set it
    below the truth by hand and the pool grants a seat too many; the migration's UPDATE puts
    it right again."""
    keys = [Ed25519PrivateKey.generate() for _ in range(3)]
    assert [acquire(service, k, clock) for k in keys] == ["lease"] * 3
    with service.store.transaction() as tx:
        tx.conn.execute(sa.update(pool).values(leases_held=2))
    assert acquire(service, Ed25519PrivateKey.generate(), clock) == "lease"
    with service.store.transaction() as tx:  # what migration 0009 runs on an existing database
        tx.conn.execute(sa.text("UPDATE pool SET leases_held = (SELECT count(*) FROM leases)"))
    assert held(service) == (4, 4)
    assert acquire(service, Ed25519PrivateKey.generate(), clock) == str(ErrorCode.NO_SEATS)
