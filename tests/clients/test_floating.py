"""FloatingClient: acquire, renew, release and the admin status of a floating server."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.clients.floating import FloatingClient, lease_request
from mqtt_licensing.core import labels
from mqtt_licensing.core.documents import verify_lease
from mqtt_licensing.core.errors import ErrorCode, LicensingError
from mqtt_licensing.core.signing import fingerprint

from .conftest import FloatingApp


def client(app: FloatingApp, token: str | None = None) -> FloatingClient:
    return FloatingClient(app.url, token=token, transport=app.transport())


async def test_acquire_renew_release(floating: FloatingApp, vendor_key: Ed25519PrivateKey) -> None:
    one, two = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    async with client(floating) as c:
        assert (await c.health())["fingerprint"] == floating.service.fingerprint
        lease, cert = verify_lease(
            await c.acquire(lease_request(one, labels.KIND_LEASE_ACQUIRE, features=["mqtt_server"])),
            vendor_key.public_key(),
        )
        assert lease.instance_fingerprint == fingerprint(one) and cert.seats == 1
        renewed, _ = verify_lease(await c.renew(lease_request(one, labels.KIND_LEASE_RENEW)), vendor_key.public_key())
        assert renewed.lease_id == lease.lease_id

        with pytest.raises(LicensingError) as info:  # the one seat is taken
            await c.acquire(lease_request(two, labels.KIND_LEASE_ACQUIRE))
        assert info.value.code == ErrorCode.NO_SEATS

        assert await c.release(lease_request(one, labels.KIND_LEASE_RELEASE)) is None
        assert await c.release(lease_request(one, labels.KIND_LEASE_RELEASE)) is None  # idempotent
        with pytest.raises(LicensingError) as info:
            await c.renew(lease_request(one, labels.KIND_LEASE_RENEW))
        assert info.value.code == ErrorCode.LEASE_NOT_FOUND
        verify_lease(await c.acquire(lease_request(two, labels.KIND_LEASE_ACQUIRE)), vendor_key.public_key())


async def test_admin_status_needs_the_token(floating: FloatingApp) -> None:
    async with client(floating, token=floating.token) as c:
        status = await c.admin_status()
        assert status["provisioned"] is True and status["seats"] == {"total": 1, "used": 0, "free": 1}
    async with client(floating, token="wrong") as c:
        with pytest.raises(LicensingError) as info:
            await c.admin_status()
        assert info.value.code == ErrorCode.UNAUTHORIZED
