"""The lease API over real HTTP: acquire, renew, release, seats, features, expiry, restart.
What it refuses (forged, replayed, tampered, malformed requests; an untrusted pool): test_lease_refusals.py."""

from __future__ import annotations

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.clients.floating import FloatingClient, lease_request
from mqtt_licensing.core.documents import Lease, verify_lease
from mqtt_licensing.core.errors import ErrorCode, LicensingError
from mqtt_licensing.core.signing import b64, fingerprint

pytestmark = pytest.mark.timeout(30)

ACQ, RENEW, REL = "lease_acquire", "lease_renew", "lease_release"


async def acquire(client: FloatingClient, key: Ed25519PrivateKey, features=("mqtt_server",), now=None) -> bytes:
    return await client.acquire(lease_request(key, ACQ, features=features, now=now))


async def test_acquire_renew_release(floating, vendor):
    fls = floating(seats=2, ttl=60)
    inst = Ed25519PrivateKey.generate()
    async with FloatingClient(fls.url) as client:
        blob = await acquire(client, inst)
        lease, cert = verify_lease(blob, vendor.public_key())
        assert lease.instance_fingerprint == fingerprint(inst)
        assert lease.features == ("mqtt_server",)
        assert lease.ttl == 60 and 55 <= lease.expires_at - lease.issued_at <= 60
        assert cert.server_fingerprint == fls.fingerprint and cert.seats == 2

        renewed, _ = verify_lease(await client.renew(lease_request(inst, RENEW)), vendor.public_key())
        assert renewed.lease_id == lease.lease_id
        assert renewed.expires_at >= lease.expires_at
        assert fls.service.status()["seats"] == {"total": 2, "used": 1, "free": 1}

        assert await client.release(lease_request(inst, REL)) is None
        assert fls.service.status()["seats"] == {"total": 2, "used": 0, "free": 2}
        with pytest.raises(LicensingError) as err:
            await client.renew(lease_request(inst, RENEW))
        assert err.value.code == ErrorCode.LEASE_NOT_FOUND
        # releasing again is harmless
        await client.release(lease_request(inst, REL))


async def test_no_features_requested_grants_the_whole_pool(floating, vendor):
    fls = floating(seats=1, features=("mqtt_server", "iot_bridge_snowflake"))
    async with FloatingClient(fls.url) as client:
        lease, _ = verify_lease(await acquire(client, Ed25519PrivateKey.generate(), features=()), vendor.public_key())
    assert lease.features == ("iot_bridge_snowflake", "mqtt_server")


async def test_same_instance_twice_gets_its_seat_back(floating, vendor):
    fls = floating(seats=3)
    inst = Ed25519PrivateKey.generate()
    async with FloatingClient(fls.url) as client:
        first, _ = verify_lease(await acquire(client, inst), vendor.public_key())
        second, _ = verify_lease(
            await acquire(client, inst, features=("mqtt_server", "mqtt_server_support")), vendor.public_key()
        )
    assert second.lease_id == first.lease_id
    assert second.features == ("mqtt_server", "mqtt_server_support")  # re-acquire updates the feature set
    status = fls.service.status()
    assert status["seats"]["used"] == 1 and len(status["leases"]) == 1


async def test_last_seat_then_release(floating):
    fls = floating(seats=3)
    keys = [Ed25519PrivateKey.generate() for _ in range(4)]
    async with FloatingClient(fls.url) as client:
        for key in keys[:3]:
            await acquire(client, key)
        with pytest.raises(LicensingError) as err:
            await acquire(client, keys[3])
        assert err.value.code == ErrorCode.NO_SEATS
        # the raw HTTP status is 410, as Keygen Relay
        raw = await client._http.post("/v1/leases", json={"request": b64(lease_request(keys[3], ACQ))})
        assert raw.status_code == 410 and raw.json()["error"]["code"] == "no_seats"

        await client.release(lease_request(keys[1], REL))
        await acquire(client, keys[3])
        with pytest.raises(LicensingError) as err:
            await acquire(client, keys[1])
        assert err.value.code == ErrorCode.NO_SEATS


async def test_feature_unavailable(floating):
    fls = floating(seats=5, features=("mqtt_server",))
    async with FloatingClient(fls.url) as client:
        with pytest.raises(LicensingError) as err:
            await acquire(client, Ed25519PrivateKey.generate(), features=("mqtt_server", "iot_bridge_snowflake"))
        assert err.value.code == ErrorCode.FEATURE_UNAVAILABLE
        with pytest.raises(LicensingError) as err:
            await acquire(client, Ed25519PrivateKey.generate(), features=("no_such_feature",))
        assert err.value.code == ErrorCode.FEATURE_UNAVAILABLE
    assert fls.service.status()["seats"]["used"] == 0


async def test_expired_leases_are_reclaimed(floating, clock):
    fls = floating(seats=1, ttl=30, clock=clock)
    a, b = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    async with FloatingClient(fls.url) as client:
        await acquire(client, a, now=clock())
        with pytest.raises(LicensingError) as err:
            await acquire(client, b, now=clock())
        assert err.value.code == ErrorCode.NO_SEATS
        clock.advance(29)
        with pytest.raises(LicensingError):
            await acquire(client, b, now=clock())
        clock.advance(1)  # a's lease ends now: its seat is free
        assert fls.service.status()["seats"]["used"] == 0
        lease_b = Lease.from_body(msgpack.unpackb(msgpack.unpackb(await acquire(client, b, now=clock()))["body"]))
        assert lease_b.instance_fingerprint == fingerprint(b)
        with pytest.raises(LicensingError) as err:
            await client.renew(lease_request(a, RENEW, now=clock()))
        assert err.value.code == ErrorCode.LEASE_NOT_FOUND
        assert [le["instance_fingerprint"] for le in fls.service.status()["leases"]] == [fingerprint(b)]


async def test_expired_lease_reclaimed_in_real_time(floating):
    import asyncio
    import time

    fls = floating(seats=1, ttl=2)
    a, b = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    async with FloatingClient(fls.url) as client:
        lease_a = Lease.from_body(msgpack.unpackb(msgpack.unpackb(await acquire(client, a))["body"]))
        with pytest.raises(LicensingError) as err:
            await acquire(client, b)
        assert err.value.code == ErrorCode.NO_SEATS
        await asyncio.sleep(max(lease_a.expires_at - time.time(), 0) + 0.05)
        await acquire(client, b)


async def test_restart_keeps_leases(floating, vendor):
    fls = floating(seats=2, ttl=120)
    inst = Ed25519PrivateKey.generate()
    async with FloatingClient(fls.url) as client:
        lease, _ = verify_lease(await acquire(client, inst), vendor.public_key())
    url = fls.url
    fls.stop()
    async with FloatingClient(url, timeout=2) as client:
        with pytest.raises(LicensingError) as err:
            await client.renew(lease_request(inst, RENEW))
        assert err.value.code == ErrorCode.SERVER_UNREACHABLE
    fls.restart()
    assert fls.url == url
    async with FloatingClient(url) as client:
        renewed, _ = verify_lease(await client.renew(lease_request(inst, RENEW)), vendor.public_key())
        assert renewed.lease_id == lease.lease_id
        again, _ = verify_lease(await acquire(client, inst), vendor.public_key())
        assert again.lease_id == lease.lease_id
    assert fls.service.status()["seats"]["used"] == 1
