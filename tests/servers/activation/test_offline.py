"""Offline activation, update and deactivation by exchanged codes (admin API and service)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from mqtt_licensing.clients.activation import ActivationClient
from mqtt_licensing.clients.admin import VendorAdminClient
from mqtt_licensing.core import labels
from mqtt_licensing.core.codes import armor, unarmor
from mqtt_licensing.core.documents import ActivationCertificate, sign_instance_request
from mqtt_licensing.core.errors import ErrorCode, LicensingError
from mqtt_licensing.core.keys import key_digest
from tests.helpers.activation import VendorHandle

from .conftest import Instance


def usage_license(vendor: VendorHandle, text: str) -> ActivationCertificate:
    return ActivationCertificate.open(unarmor(text, labels.USAGE_LICENSE), vendor.public_key)


async def _expect(code: ErrorCode, coro: Any) -> LicensingError:
    with pytest.raises(LicensingError) as info:
        await coro
    assert info.value.code == code, info.value
    return info.value


async def test_offline_activate_same_request_twice_and_update(vendor: VendorHandle) -> None:
    expires = int(time.time()) + 86400 * 365
    lic, key = vendor.issue_license(features=["mqtt_server"], model="offline", expires_at=expires)
    inst = Instance()
    code = inst.offline_request_code(key, nonce="nonce-1")
    async with VendorAdminClient(vendor.url, token=vendor.token) as admin:
        first = await admin.offline_activate(code)
        again = await admin.offline_activate(code)
        assert first["reused"] is False and again["reused"] is True
        assert first["activation_id"] == again["activation_id"] and first["license_id"] == lic["id"]
        cert = usage_license(vendor, first["usage_license"])
        assert cert.model == "offline" and cert.request_nonce == "nonce-1"
        assert cert.valid_until == expires and cert.instance_fingerprint == inst.fingerprint
        assert usage_license(vendor, again["usage_license"]).request_nonce == "nonce-1"

        # the vendor adds a feature; the active instance makes a new request: same activation, new nonce
        await admin.update(lic["id"], add_features=["iot_bridge_snowflake"])
        newer = inst.offline_request_code(key, nonce="nonce-2", activation_id=first["activation_id"])
        update = await admin.offline_activate(newer)
        assert update["activation_id"] == first["activation_id"] and update["reused"] is True
        updated = usage_license(vendor, update["usage_license"])
        assert updated.request_nonce == "nonce-2"
        assert updated.features == ("iot_bridge_snowflake", "mqtt_server")
        assert len(await admin.activations(lic["id"])) == 1

        # an older request answered after a newer one would undo the update
        await _expect(
            ErrorCode.REQUEST_SUPERSEDED,
            admin.offline_activate(inst.offline_request_code(key, created_at=int(time.time()) - 3600)),
        )


async def test_offline_requests_may_be_days_old(vendor: VendorHandle) -> None:
    key = vendor.issue(model="offline")
    code = Instance().offline_request_code(key, created_at=int(time.time()) - 5 * 86400)
    async with VendorAdminClient(vendor.url, token=vendor.token) as admin:
        assert (await admin.offline_activate(code))["reused"] is False


async def test_offline_refusals(vendor: VendorHandle) -> None:
    online = vendor.issue(model="online")
    lic, offline = vendor.issue_license(model="offline", max_activations=1)
    async with VendorAdminClient(vendor.url, token=vendor.token) as admin:
        err = await _expect(ErrorCode.WRONG_MODEL, admin.offline_activate(Instance().offline_request_code(online)))
        assert "online" in err.message
        await admin.offline_activate(Instance().offline_request_code(offline))
        await _expect(ErrorCode.NO_ACTIVATIONS_LEFT, admin.offline_activate(Instance().offline_request_code(offline)))

        # tampering: one changed character breaks the checksum; a re-armoured forgery breaks the signature
        code = Instance().offline_request_code(offline)
        lines = code.splitlines()
        lines[1] = ("1" if lines[1][0] != "1" else "2") + lines[1][1:]
        await _expect(ErrorCode.INVALID_CODE, admin.offline_activate("\n".join(lines)))
        await _expect(
            ErrorCode.WRONG_DOCUMENT,
            admin.offline_activate(code.replace(labels.USAGE_REQUEST, labels.DEACTIVATION_CODE)),
        )

        await admin.suspend(lic["id"])
        await _expect(ErrorCode.SUSPENDED, admin.offline_activate(Instance().offline_request_code(offline)))
        unknown = vendor.issue(model="offline")
        vendor.service.update_license(vendor.license_id(unknown), {"expires_at": int(time.time()) - 5})
        await _expect(ErrorCode.EXPIRED, admin.offline_activate(Instance().offline_request_code(unknown)))


async def test_offline_request_with_wrong_kind_refused(vendor: VendorHandle) -> None:
    key = vendor.issue(model="offline")
    inst = Instance()
    blob = inst.request(labels.KIND_ACTIVATE, key_digest=key_digest(key))
    async with VendorAdminClient(vendor.url, token=vendor.token) as admin:
        await _expect(ErrorCode.WRONG_DOCUMENT, admin.offline_activate(armor(labels.USAGE_REQUEST, blob)))


async def test_offline_deactivation_once_replay_and_forgery(vendor: VendorHandle) -> None:
    lic, key = vendor.issue_license(model="offline", max_activations=1)
    inst, forger = Instance(), Instance()
    async with VendorAdminClient(vendor.url, token=vendor.token) as admin:
        activation_id = (await admin.offline_activate(inst.offline_request_code(key)))["activation_id"]

        forged = forger.deactivation_code(activation_id, lic["id"])
        await _expect(ErrorCode.INVALID_SIGNATURE, admin.offline_deactivate(forged))
        assert len(await admin.activations(lic["id"])) == 1

        code = inst.deactivation_code(activation_id, lic["id"])
        first = await admin.offline_deactivate(code)
        assert first["freed"] is True and first["activation_id"] == activation_id
        replay = await admin.offline_deactivate(code)
        assert replay == {**replay, "freed": False, "already_free": True}
        assert (await admin.activations(lic["id"], include_freed=True))[0]["freed_reason"] == "offline_deactivation"

        # the activation is usable elsewhere now
        await admin.offline_activate(Instance().offline_request_code(key))
        await _expect(ErrorCode.ACTIVATION_NOT_FOUND, admin.offline_deactivate(inst.deactivation_code("act_missing")))
        wrong_license = inst.deactivation_code(activation_id, "lic_other")
        await _expect(ErrorCode.BAD_REQUEST, admin.offline_deactivate(wrong_license))


async def test_offline_activation_cannot_check_in_online(vendor: VendorHandle) -> None:
    key = vendor.issue(model="offline")
    inst = Instance()
    result = vendor.service.offline_activate(inst.offline_request_code(key))
    async with ActivationClient(vendor.url) as client:
        await _expect(ErrorCode.WRONG_MODEL, client.check_in(inst.check_in(result.activation_id)))


def test_sign_instance_request_fields_are_what_the_agent_sends(vendor: VendorHandle) -> None:
    """The documented request shape (kind, key_digest, nonce, created_at) is all the vendor needs."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = vendor.issue(model="offline")
    blob = sign_instance_request(
        Ed25519PrivateKey.generate(),
        kind="offline_request",
        nonce="n",
        created_at=int(time.time()),
        key_digest=key_digest(key),
    )
    assert vendor.service.offline_activate(armor(labels.USAGE_REQUEST, blob)).reused is False
