"""VendorAdminClient: the admin API, every method, with and without the token."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.clients.activation import ActivationClient
from mqtt_licensing.clients.admin import VendorAdminClient
from mqtt_licensing.core import labels
from mqtt_licensing.core.codes import armor, unarmor
from mqtt_licensing.core.documents import ActivationCertificate, FloatingCertificate
from mqtt_licensing.core.errors import ErrorCode, LicensingError
from mqtt_licensing.core.keys import key_digest

from .conftest import ActivationApp, signed


def admin(app: ActivationApp, token: str | None = None) -> VendorAdminClient:
    return VendorAdminClient(app.url, token=token or app.token, transport=app.transport())


async def test_license_lifecycle(activation: ActivationApp) -> None:
    async with admin(activation) as a:
        issued = await a.issue(features=["mqtt_server"], max_activations=2, max_connections=10)
        lic, key = issued["license"], issued["key"]
        assert lic["features"] == ["mqtt_server"] and lic["activations_used"] == 0 and key.startswith("MQL1-")
        assert [x["id"] for x in await a.licenses()] == [lic["id"]]
        assert (await a.license(lic["id"]))["activations"] == []

        changed = await a.update(lic["id"], add_features=["mqtt_server_support"], expires_at=None)
        assert changed["features"] == ["mqtt_server", "mqtt_server_support"]
        assert (await a.suspend(lic["id"]))["status"] == "suspended"
        assert (await a.reinstate(lic["id"]))["status"] == "active"

        instance = Ed25519PrivateKey.generate()
        async with ActivationClient(activation.url, transport=activation.transport()) as c:
            act = await c.activate(key, signed(instance, labels.KIND_ACTIVATE, key_digest=key_digest(key)))
        live = await a.activations(lic["id"])
        assert [x["id"] for x in live] == [act["activation_id"]]
        freed = await a.free(act["activation_id"])
        assert freed["freed_reason"] == "freed_by_vendor"
        assert await a.activations(lic["id"]) == []
        assert len(await a.activations(lic["id"], include_freed=True)) == 1

        assert (await a.revoke(lic["id"]))["status"] == "revoked"
        with pytest.raises(LicensingError) as info:
            await a.reinstate(lic["id"])
        assert info.value.code == ErrorCode.BAD_REQUEST
        with pytest.raises(LicensingError) as info:
            await a.license("lic_missing")
        assert info.value.code == ErrorCode.NOT_FOUND


async def test_offline_and_floating_codes(activation: ActivationApp) -> None:
    instance = Ed25519PrivateKey.generate()
    async with admin(activation) as a:
        key = (await a.issue(features=["mqtt_server"], model="offline"))["key"]
        request = signed(instance, labels.KIND_OFFLINE_REQUEST, key_digest=key_digest(key))
        answer = await a.offline_activate(armor(labels.USAGE_REQUEST, request))
        cert = ActivationCertificate.open(
            unarmor(answer["usage_license"], labels.USAGE_LICENSE), activation.service.public_key
        )
        assert cert.activation_id == answer["activation_id"] and answer["reused"] is False
        code = armor(
            labels.DEACTIVATION_CODE,
            signed(instance, labels.KIND_OFFLINE_DEACTIVATION, activation_id=answer["activation_id"]),
        )
        assert (await a.offline_deactivate(code))["freed"] is True
        assert (await a.offline_deactivate(code))["already_free"] is True

        floating_key = (await a.issue(features=["mqtt_server"], model="floating", seats=3))["key"]
        server = Ed25519PrivateKey.generate()
        request = signed(server, labels.KIND_FLOATING_REQUEST, key_digest=key_digest(floating_key))
        issued = await a.floating_issue(armor(labels.FLOATING_REQUEST, request))
        blob = unarmor(issued["certificate"], labels.FLOATING_CERTIFICATE)
        assert FloatingCertificate.open(blob, activation.service.public_key).seats == 3


@pytest.mark.parametrize("token", ["wrong-token", ""])
async def test_without_the_token_nothing_is_read_or_changed(activation: ActivationApp, token: str) -> None:
    async with VendorAdminClient(activation.url, token=token or None, transport=activation.transport()) as a:
        for call in (a.licenses(), a.issue(features=["mqtt_server"]), a.activations()):
            with pytest.raises(LicensingError) as info:
                await call
            assert info.value.code == ErrorCode.UNAUTHORIZED
    assert activation.service.list_licenses() == []
