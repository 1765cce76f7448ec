"""The lease API over real HTTP refuses what it must: forged, replayed, stale and tampered requests,
malformed input (typed 4xx, never 500), a pool not provisioned or expired or whose stored certificate
no longer verifies, the admin status without its token, a renewal without the chain once presented.
The lease life cycle: test_leases.py."""

from __future__ import annotations

import httpx
import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.clients.floating import FloatingClient, lease_request
from mqtt_licensing.core.documents import Lease, sign_instance_request, verify_lease
from mqtt_licensing.core.errors import ErrorCode, LicensingError
from mqtt_licensing.core.signing import b64, fingerprint
from mqtt_licensing.servers.floating.app import create_app
from tests.helpers.asgi import asgi_client

pytestmark = pytest.mark.timeout(30)

ACQ, RENEW, REL = "lease_acquire", "lease_renew", "lease_release"


async def acquire(client: FloatingClient, key: Ed25519PrivateKey, features=("mqtt_server",), now=None) -> bytes:
    return await client.acquire(lease_request(key, ACQ, features=features, now=now))


async def test_forged_renew_and_release_are_refused(floating):
    fls = floating(seats=2)
    owner, thief = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    async with FloatingClient(fls.url) as client:
        await acquire(client, owner)
        # the thief claims the owner's identity (key and fingerprint) but signs with its own key
        for kind in (RENEW, REL):
            body = {
                "kind": kind,
                "public_key": fingerprint_raw(owner),
                "fingerprint": fingerprint(owner),
                "nonce": "n-" + kind,
                "created_at": fls.service.clock(),
                "features": [],
            }
            from mqtt_licensing.core.signing import sign_document

            forged = sign_document(thief, "instance_request", body)
            with pytest.raises(LicensingError) as err:
                await (client.renew(forged) if kind == RENEW else client.release(forged))
            assert err.value.code == ErrorCode.INVALID_SIGNATURE
        # a self-consistent request of another key does not touch the owner's lease either
        with pytest.raises(LicensingError) as err:
            await client.renew(lease_request(thief, RENEW))
        assert err.value.code == ErrorCode.LEASE_NOT_FOUND
    assert fls.service.status()["seats"]["used"] == 1


def fingerprint_raw(key: Ed25519PrivateKey) -> bytes:
    from mqtt_licensing.core.signing import public_bytes

    return public_bytes(key)


async def test_replayed_and_stale_requests_are_refused(floating):
    fls = floating(seats=2)
    inst = Ed25519PrivateKey.generate()
    async with FloatingClient(fls.url) as client:
        await acquire(client, inst)
        renew = lease_request(inst, RENEW)
        await client.renew(renew)
        with pytest.raises(LicensingError) as err:
            await client.renew(renew)
        assert err.value.code == ErrorCode.BAD_REQUEST and "replay" in err.value.message
        release = lease_request(inst, REL)
        await client.release(release)
        await acquire(client, inst)
        with pytest.raises(LicensingError) as err:  # an old release cannot free the new seat
            await client.release(release)
        assert err.value.code == ErrorCode.BAD_REQUEST
        for skew in (-601, 601):
            with pytest.raises(LicensingError) as err:
                await acquire(client, Ed25519PrivateKey.generate(), now=fls.service.clock() + skew)
            assert err.value.code == ErrorCode.BAD_REQUEST
    assert fls.service.status()["seats"]["used"] == 1


async def test_lease_chain_of_trust(floating, vendor, tmp_path):
    """A lease verifies against the vendor key; one from a pool the vendor did not sign does not."""
    good = floating("good", seats=1)
    impostor_vendor = Ed25519PrivateKey.generate()
    rogue = floating("rogue", seats=1, vendor_key=impostor_vendor)
    inst = Ed25519PrivateKey.generate()
    async with FloatingClient(good.url) as client:
        verify_lease(await acquire(client, inst), vendor.public_key())
    async with FloatingClient(rogue.url) as client:
        rogue_lease = await acquire(client, inst)
    verify_lease(rogue_lease, impostor_vendor.public_key())  # self-consistent...
    with pytest.raises(LicensingError) as err:  # ...but not signed by the pinned vendor
        verify_lease(rogue_lease, vendor.public_key())
    assert err.value.code == ErrorCode.INVALID_SIGNATURE


async def test_tampered_lease_is_refused(floating, vendor):
    fls = floating(seats=1)
    async with FloatingClient(fls.url) as client:
        blob = await acquire(client, Ed25519PrivateKey.generate())
    outer = msgpack.unpackb(blob)
    body = msgpack.unpackb(outer["body"])
    body["expires_at"] += 10 * 365 * 86400
    outer["body"] = msgpack.packb(body, use_bin_type=True)
    with pytest.raises(LicensingError) as err:
        verify_lease(msgpack.packb(outer, use_bin_type=True), vendor.public_key())
    assert err.value.code == ErrorCode.INVALID_SIGNATURE
    flipped = bytearray(blob)
    flipped[-5] ^= 0x01
    with pytest.raises(LicensingError):
        verify_lease(bytes(flipped), vendor.public_key())
    # a lease re-signed by the floating server key for a wider feature set than the pool has
    lease = Lease.from_body(body)
    wide = Lease(
        lease.lease_id,
        lease.instance_fingerprint,
        ("iot_bridge_snowflake", "mqtt_server"),
        lease.issued_at,
        lease.expires_at,
        lease.ttl,
        lease.certificate,
    ).sign(fls.service.signing_key)
    with pytest.raises(LicensingError) as err:
        verify_lease(wide, vendor.public_key())
    assert err.value.code == ErrorCode.FEATURE_UNAVAILABLE


async def test_bad_input_gets_typed_4xx_never_500(floating):
    fls = floating(seats=1)
    inst = Ed25519PrivateKey.generate()
    cases = [
        ("/v1/leases", b"not json", 400, "bad_request"),
        ("/v1/leases", b"[1, 2]", 400, "bad_request"),
        ("/v1/leases", b"{}", 400, "bad_request"),
        ("/v1/leases", b'{"request": 42}', 400, "invalid_field"),
        ("/v1/leases", b'{"request": "AAAA"}', 400, "invalid_code"),
        ("/v1/leases/renew", b'{"request": "' + b64(b"\x93garbage").encode() + b'"}', 400, "invalid_code"),
        ("/v1/leases", b'{"request": "' + b64(lease_request(inst, RENEW)).encode() + b'"}', 400, "wrong_document"),
        (
            "/v1/leases/release",
            b'{"request": "' + b64(msgpack.packb({"typ": "lease"})).encode() + b'"}',
            400,
            "invalid_code",
        ),
        ("/v1/leases", b"x" * (300 * 1024), 413, "payload_too_large"),
    ]
    async with asgi_client(create_app(fls.service, fls.token)) as http:  # in-process: no socket needed
        for path, body, status, code in cases:
            response = await http.post(path, content=body, headers={"content-type": "application/json"})
            assert (response.status_code, response.json()["error"]["code"]) == (status, code), (path, body[:40])
        wrong_type = sign_instance_request(inst, kind=ACQ, nonce="n", created_at="yesterday")
        response = await http.post("/v1/leases", json={"request": b64(wrong_type)})
        assert response.status_code == 400 and response.json()["error"]["code"] == "wrong_document"
        response = await http.get("/v1/leases")
        assert response.status_code == 405 and response.json()["error"]["code"] == "bad_request"
        response = await http.get("/v1/nothing")
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
        assert (await http.get("/v1/health")).json()["ok"] is True
        assert (await http.get("/v1/noop")).json() == {"ok": True}


async def test_not_provisioned_and_expired_pool(floating, vendor, clock):
    bare = floating("bare", vendor_key=None)
    inst = Ed25519PrivateKey.generate()
    async with FloatingClient(bare.url) as client:
        with pytest.raises(LicensingError) as err:
            await acquire(client, inst)
        assert err.value.code == ErrorCode.NOT_PROVISIONED
        raw = await client._http.post("/v1/leases", json={"request": b64(lease_request(inst, ACQ))})
        assert raw.status_code == 503

    fls = floating("ending", seats=2, ttl=600, clock=clock, expires_at=int(clock()) + 100)
    async with FloatingClient(fls.url) as client:
        lease, _ = verify_lease(await acquire(client, inst, now=clock()), vendor.public_key())
        assert lease.expires_at == int(clock()) + 100  # never beyond the license term
        clock.advance(100)
        with pytest.raises(LicensingError) as err:
            await acquire(client, Ed25519PrivateKey.generate(), now=clock())
        assert err.value.code == ErrorCode.EXPIRED
        with pytest.raises(LicensingError) as err:
            await client.renew(lease_request(inst, RENEW, now=clock()))
        assert err.value.code == ErrorCode.EXPIRED


async def test_stored_certificate_is_reverified_against_the_pinned_key(floating, vendor, tmp_path):
    fls = floating(seats=2)
    inst = Ed25519PrivateKey.generate()
    async with FloatingClient(fls.url) as client:
        await acquire(client, inst)
        # someone swaps the pinned vendor key: the installed certificate no longer verifies
        from mqtt_licensing.core.signing import public_key_to_text

        other = Ed25519PrivateKey.generate()
        (fls.data_dir / "vendor.pub").write_text(public_key_to_text(other) + "\n")
        with pytest.raises(LicensingError) as err:
            await client.renew(lease_request(inst, RENEW))
        assert err.value.code == ErrorCode.NOT_PROVISIONED
        (fls.data_dir / "vendor.pub").write_text(public_key_to_text(vendor) + "\n")
        await client.renew(lease_request(inst, RENEW))


async def test_pool_shrinks_on_new_certificate(floating, vendor, clock):
    from tests.helpers.floating import make_pool_certificate

    fls = floating(seats=3, clock=clock)
    keys = [Ed25519PrivateKey.generate() for _ in range(3)]
    async with FloatingClient(fls.url) as client:
        for key in keys:
            await acquire(client, key, now=clock())
            clock.advance(1)
        fls.provision(make_pool_certificate(vendor, fls.public_key, seats=2, features=("mqtt_server",)))
        await client.renew(lease_request(keys[0], RENEW, now=clock()))
        await client.renew(lease_request(keys[1], RENEW, now=clock()))
        with pytest.raises(LicensingError) as err:  # the youngest lease lost its seat
            await client.renew(lease_request(keys[2], RENEW, now=clock()))
        assert err.value.code == ErrorCode.NO_SEATS
        clock.advance(1)
        with pytest.raises(LicensingError) as err:  # features the pool lost cannot be renewed
            fls.provision(make_pool_certificate(vendor, fls.public_key, seats=2, features=("mqtt_server_support",)))
            await client.renew(lease_request(keys[0], RENEW, now=clock()))
        assert err.value.code == ErrorCode.FEATURE_UNAVAILABLE


async def test_admin_status_requires_the_token(floating):
    fls = floating(seats=4)
    inst = Ed25519PrivateKey.generate()
    async with FloatingClient(fls.url) as client:
        await acquire(client, inst)
        with pytest.raises(LicensingError) as err:
            await client.admin_status()
        assert err.value.code == ErrorCode.UNAUTHORIZED
    async with FloatingClient(fls.url, token="wrong") as client:
        with pytest.raises(LicensingError) as err:
            await client.admin_status()
        assert err.value.code == ErrorCode.UNAUTHORIZED
    async with httpx.AsyncClient(base_url=fls.url, trust_env=False) as http:
        assert (await http.get("/v1/admin/status")).status_code == 401
        assert (await http.get("/v1/admin/status", headers={"Authorization": "Basic x"})).status_code == 401
    async with FloatingClient(fls.url, token=fls.token) as client:
        status = await client.admin_status()
    assert status["pool"]["license_id"] == "lic_test"
    assert status["pool"]["seats"] == 4 and status["seats"] == {"total": 4, "used": 1, "free": 3}
    assert status["leases"][0]["instance_fingerprint"] == fingerprint(inst)
    assert status["server_fingerprint"] == fls.fingerprint


async def test_a_renewal_chain_once_presented_is_required_afterwards(floating, vendor):
    """Main: a copy renewing without the ``chain`` field was taken for an agent from before
    chains and kept its seat, under policy suspend."""
    import secrets
    import time

    fls = floating(seats=2)
    fls.service.set_clone_policy("suspend")
    inst = Ed25519PrivateKey.generate()

    def renewal(chain: str | None) -> bytes:
        nonce, now = secrets.token_hex(16), int(time.time())
        return sign_instance_request(inst, kind=RENEW, nonce=nonce, created_at=now, features=(), chain=chain)

    async with FloatingClient(fls.url) as client:
        lease, _ = verify_lease(await acquire(client, inst), vendor.public_key())
        renewed, _ = verify_lease(await client.renew(renewal(lease.chain)), vendor.public_key())  # the original
        with pytest.raises(LicensingError) as err:
            await client.renew(renewal(None))  # the copy, without the chain
        assert err.value.code == ErrorCode.CLONED and err.value.evidence is not None
        with pytest.raises(LicensingError) as err:
            await client.renew(renewal(renewed.chain))  # both copies are suspended
        assert err.value.code == ErrorCode.CLONED
    assert fls.service.status()["seats"]["used"] == 0
