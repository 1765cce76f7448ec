"""Online activation, check-in, deactivation and lifecycle over real HTTP."""

from __future__ import annotations

import os
import stat
import time

import pytest

from mqtt_licensing.clients.activation import ActivationClient
from mqtt_licensing.clients.admin import VendorAdminClient
from mqtt_licensing.core.documents import ActivationCertificate
from mqtt_licensing.core.errors import ErrorCode, LicensingError
from mqtt_licensing.core.keys import format_key, mask_key
from mqtt_licensing.core.signing import public_key_from_text
from tests.helpers.activation import VendorHandle

from .conftest import Instance, ManualClock


async def _activate(vendor: VendorHandle, key: str, inst: Instance) -> tuple[str, ActivationCertificate]:
    async with ActivationClient(vendor.url) as client:
        result = await client.activate(key, inst.activate(key))
    return result["activation_id"], ActivationCertificate.open(result["certificate"], vendor.public_key)


async def _expect(code: ErrorCode, coro: object) -> LicensingError:
    with pytest.raises(LicensingError) as info:
        await coro  # type: ignore[misc]
    assert info.value.code == code, info.value
    return info.value


def test_data_folder_keys(vendor: VendorHandle) -> None:
    key_file, pub_file, token_file = (vendor.data_dir / n for n in ("vendor.key", "vendor.pub", "admin.token"))
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert public_key_from_text(pub_file.read_text()).public_bytes_raw() == vendor.public_key.public_bytes_raw()
    assert (vendor.data_dir / "vendor.db").exists() == (vendor.database_url is None)  # else PostgreSQL


async def test_health_and_noop(http) -> None:
    health = (await http.get("/v1/health")).json()
    assert set(health) == {"ok", "service", "public_key", "fingerprint", "time"}
    assert health["ok"] is True and health["service"] == "activation" and isinstance(health["public_key"], str)
    assert (await http.get("/v1/noop")).json() == {"ok": True}


async def test_activate_then_check_in_sees_added_feature(vendor: VendorHandle) -> None:
    lic, key = vendor.issue_license(features=["mqtt_server"], support_until=2_000_000_000, max_connections=50)
    inst = Instance()
    activation_id, cert = await _activate(vendor, key, inst)
    assert cert.license_id == lic["id"] and cert.model == "online"
    assert cert.features == ("mqtt_server",)
    assert cert.instance_fingerprint == inst.fingerprint
    assert cert.key_mask == mask_key(key) and key not in repr(cert)
    assert cert.support_until == 2_000_000_000 and cert.max_connections == 50
    assert cert.valid_until is not None and 55 <= cert.valid_until - cert.issued_at <= 60

    async with VendorAdminClient(vendor.url, token=vendor.token) as admin:
        updated = await admin.update(lic["id"], add_features=["iot_bridge_snowflake"])
    assert updated["features"] == ["iot_bridge_snowflake", "mqtt_server"]

    async with ActivationClient(vendor.url) as client:
        blob = await client.check_in(inst.check_in(activation_id))
    refreshed = ActivationCertificate.open(blob, vendor.public_key)
    assert refreshed.activation_id == activation_id
    assert refreshed.features == ("iot_bridge_snowflake", "mqtt_server")


async def test_same_instance_reactivation_reuses(vendor: VendorHandle, http) -> None:
    key = vendor.issue(max_activations=1)
    inst = Instance()
    first = await http.post("/v1/activations", json=inst.activation_body(key))
    again = await http.post("/v1/activations", json=inst.activation_body(key))
    assert first.status_code == 201 and again.status_code == 200
    assert first.json()["activation_id"] == again.json()["activation_id"]
    assert again.json()["reused"] is True
    assert len(vendor.service.list_activations()) == 1


async def test_second_instance_refused_then_admitted_after_deactivate(vendor: VendorHandle) -> None:
    key = vendor.issue(max_activations=1)
    one, two = Instance(), Instance()
    activation_id, _ = await _activate(vendor, key, one)
    async with ActivationClient(vendor.url) as client:
        err = await _expect(ErrorCode.NO_ACTIVATIONS_LEFT, client.activate(key, two.activate(key)))
        assert "1 activation" in err.message
        await client.deactivate(one.deactivate(activation_id))
        await _expect(ErrorCode.ALREADY_FREE, client.deactivate(one.deactivate(activation_id)))
        await _expect(ErrorCode.ACTIVATION_NOT_FOUND, client.check_in(one.check_in(activation_id)))
        result = await client.activate(key, two.activate(key))
    assert result["activation_id"] != activation_id


@pytest.mark.parametrize("status, code", [("suspended", ErrorCode.SUSPENDED), ("revoked", ErrorCode.REVOKED)])
async def test_suspended_and_revoked_refused(vendor: VendorHandle, status: str, code: ErrorCode) -> None:
    lic, key = vendor.issue_license(max_activations=2)
    inst = Instance()
    activation_id, _ = await _activate(vendor, key, inst)
    vendor.service.set_status(lic["id"], status)
    async with ActivationClient(vendor.url) as client:
        await _expect(code, client.activate(key, Instance().activate(key)))
        await _expect(code, client.activate(key, inst.activate(key)))
        await _expect(code, client.check_in(inst.check_in(activation_id)))
        if status == "suspended":
            vendor.service.set_status(lic["id"], "active")
            await client.check_in(inst.check_in(activation_id))
        else:
            with pytest.raises(LicensingError) as info:
                vendor.service.set_status(lic["id"], "active")
            assert info.value.code == ErrorCode.BAD_REQUEST


async def test_expired_refused(vendor: VendorHandle) -> None:
    now = int(time.time())
    old_key = vendor.issue(expires_at=now - 10)
    async with ActivationClient(vendor.url) as client:
        await _expect(ErrorCode.EXPIRED, client.activate(old_key, Instance().activate(old_key)))

    lic, key = vendor.issue_license(expires_at=now + 3600)
    inst = Instance()
    activation_id, cert = await _activate(vendor, key, inst)
    assert cert.expires_at == now + 3600
    vendor.service.update_license(lic["id"], {"expires_at": now - 1})
    async with ActivationClient(vendor.url) as client:
        await _expect(ErrorCode.EXPIRED, client.check_in(inst.check_in(activation_id)))
        vendor.service.update_license(lic["id"], {"expires_at": None})  # extended: never expires
        await client.check_in(inst.check_in(activation_id))


async def test_vendor_frees_lost_activation_via_admin_api(vendor: VendorHandle) -> None:
    key = vendor.issue(max_activations=1)
    lost, replacement = Instance(), Instance()
    activation_id, _ = await _activate(vendor, key, lost)
    async with VendorAdminClient(vendor.url, token=vendor.token) as admin:
        freed = await admin.free(activation_id)
        assert freed["freed_reason"] == "freed_by_vendor" and freed["active"] is False
        await _expect(ErrorCode.ALREADY_FREE, admin.free(activation_id))
        await _expect(ErrorCode.ACTIVATION_NOT_FOUND, admin.free("act_unknown"))
        assert await admin.activations() == []
        assert len(await admin.activations(include_freed=True)) == 1
    async with ActivationClient(vendor.url) as client:
        err = await _expect(ErrorCode.ACTIVATION_NOT_FOUND, client.check_in(lost.check_in(activation_id)))
        assert "vendor freed it" in err.message
        await client.activate(key, replacement.activate(key))


async def test_forged_check_in_and_deactivate_refused(vendor: VendorHandle) -> None:
    key = vendor.issue()
    owner, forger = Instance(), Instance()
    activation_id, _ = await _activate(vendor, key, owner)
    async with ActivationClient(vendor.url) as client:
        await _expect(ErrorCode.INVALID_SIGNATURE, client.check_in(forger.check_in(activation_id)))
        await _expect(ErrorCode.INVALID_SIGNATURE, client.deactivate(forger.deactivate(activation_id)))
        await _expect(ErrorCode.ACTIVATION_NOT_FOUND, client.check_in(owner.check_in("act_nope")))
        # a check-in request is not an activation request, and vice versa
        await _expect(ErrorCode.WRONG_DOCUMENT, client.check_in(owner.deactivate(activation_id)))
        await _expect(ErrorCode.WRONG_DOCUMENT, client.activate(key, owner.check_in(activation_id)))
        await client.check_in(owner.check_in(activation_id))


async def test_stale_or_future_request_refused(vendor: VendorHandle) -> None:
    key = vendor.issue()
    inst = Instance()
    now = int(time.time())
    async with ActivationClient(vendor.url) as client:
        err = await _expect(ErrorCode.BAD_REQUEST, client.activate(key, inst.activate(key, created_at=now - 3600)))
        assert "clock" in err.message
        await _expect(ErrorCode.BAD_REQUEST, client.activate(key, inst.activate(key, created_at=now + 3600)))
        result = await client.activate(key, inst.activate(key))
        await _expect(
            ErrorCode.BAD_REQUEST, client.check_in(inst.check_in(result["activation_id"], created_at=now - 1000))
        )


async def test_request_for_another_key_refused(vendor: VendorHandle) -> None:
    key, other = vendor.issue(), vendor.issue()
    async with ActivationClient(vendor.url) as client:
        await _expect(ErrorCode.BAD_REQUEST, client.activate(key, Instance().activate(other)))


async def test_wrong_model_tells_what_to_do(vendor: VendorHandle) -> None:
    offline = vendor.issue(model="offline")
    floating = vendor.issue(model="floating", seats=3)
    async with ActivationClient(vendor.url) as client:
        err = await _expect(ErrorCode.WRONG_MODEL, client.activate(offline, Instance().activate(offline)))
        assert "usage request" in err.message
        err = await _expect(ErrorCode.WRONG_MODEL, client.activate(floating, Instance().activate(floating)))
        assert "floating license server" in err.message


async def test_invalid_and_unknown_keys(vendor: VendorHandle) -> None:
    key = vendor.issue()
    typo = key[:-1] + ("A" if key[-1] != "A" else "B")
    inst = Instance()
    async with ActivationClient(vendor.url) as client:
        await _expect(ErrorCode.INVALID_KEY, client.activate(typo, inst.activate(key)))
        await _expect(ErrorCode.INVALID_KEY, client.activate("hello", inst.activate(key)))
        # the same key pasted in lower case, without dashes, with spaces: still the key
        pasted = " " + key.replace("-", "").lower() + "\n"
        await client.activate(pasted, inst.activate(key))


async def test_rate_limit_on_failed_keys(clocked_vendor: VendorHandle, clock: ManualClock) -> None:
    vendor = clocked_vendor
    good = vendor.issue(max_activations=5)
    async with ActivationClient(vendor.url) as client:
        for i in range(10):
            if i % 2:
                await _expect(ErrorCode.INVALID_KEY, client.activate("MQL1-" + "0" * 30, b""))
            else:
                unknown = format_key(os.urandom(15))
                await _expect(ErrorCode.KEY_NOT_FOUND, client.activate(unknown, Instance().activate(unknown)))
        # the window is used up: even a good key is refused from this address
        err = await _expect(ErrorCode.RATE_LIMITED, client.activate(good, Instance().activate(good)))
        assert "retry in" in err.message
        clock.advance(30)
        await _expect(ErrorCode.RATE_LIMITED, client.activate(good, Instance().activate(good)))
        clock.advance(31)
        await client.activate(good, Instance().activate(good))


async def test_restart_keeps_state_and_port(vendor: VendorHandle) -> None:
    key = vendor.issue()
    inst = Instance()
    activation_id, _ = await _activate(vendor, key, inst)
    url, pub = vendor.url, vendor.public_key_text
    vendor.stop()
    async with ActivationClient(vendor.url, timeout=2) as client:
        await _expect(ErrorCode.SERVER_UNREACHABLE, client.check_in(inst.check_in(activation_id)))
    vendor.restart()
    assert vendor.url == url and vendor.public_key_text == pub
    async with ActivationClient(vendor.url) as client:
        cert = ActivationCertificate.open(await client.check_in(inst.check_in(activation_id)), vendor.public_key)
    assert cert.activation_id == activation_id


async def test_a_chain_once_presented_is_required_afterwards(vendor: VendorHandle) -> None:
    """Main: a copy checking in without the ``chain`` field was taken for an agent from before
    chains: 4 rounds of HTTP 200 under policy suspend, each with a fresh certificate."""
    lic, key = vendor.issue_license()
    vendor.service.update_license(lic["id"], {"clone_policy": "suspend"})
    inst = Instance()
    act_id, cert = await _activate(vendor, key, inst)
    async with ActivationClient(vendor.url) as client:
        blob = await client.check_in(inst.check_in(act_id, chain=cert.chain))  # the original, as agents do
        assert ActivationCertificate.open(blob, vendor.public_key).chain not in (None, cert.chain)
        refused = await _expect(ErrorCode.CLONED, client.check_in(inst.check_in(act_id)))  # the copy, no chain
    assert refused.evidence is not None  # a signed verdict: the agent acts on it
    [act] = vendor.service.list_activations(lic["id"])
    assert act["clone_count"] == 1
