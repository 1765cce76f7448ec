"""Provisioning floating license servers: online activation and offline certificate codes."""

from __future__ import annotations

from typing import Any

import pytest

from mqtt_licensing.clients.activation import ActivationClient
from mqtt_licensing.clients.admin import VendorAdminClient
from mqtt_licensing.core import labels
from mqtt_licensing.core.codes import armor, unarmor
from mqtt_licensing.core.documents import FloatingCertificate
from mqtt_licensing.core.errors import ErrorCode, LicensingError
from mqtt_licensing.core.keys import key_digest
from mqtt_licensing.core.signing import public_bytes
from tests.helpers.activation import VendorHandle

from .conftest import Instance


async def _expect(code: ErrorCode, coro: Any) -> LicensingError:
    with pytest.raises(LicensingError) as info:
        await coro
    assert info.value.code == code, info.value
    return info.value


async def test_online_floating_activation_and_check_in(vendor: VendorHandle) -> None:
    lic, key = vendor.issue_license(features=["mqtt_server"], model="floating", seats=10, expires_at=2_000_000_000)
    server = Instance()
    async with ActivationClient(vendor.url) as client:
        blob = await client.floating_activate(
            key, server.request(labels.KIND_FLOATING_ACTIVATE, key_digest=key_digest(key))
        )
        cert = FloatingCertificate.open(blob, vendor.public_key)
        assert cert.license_id == lic["id"] and cert.seats == 10 and cert.features == ("mqtt_server",)
        assert cert.server_public_key == public_bytes(server.key) and cert.server_fingerprint == server.fingerprint
        assert cert.expires_at == 2_000_000_000 and cert.valid_until == cert.issued_at + 60  # a lifetime, refreshed

        vendor.service.update_license(lic["id"], {"seats": 25, "add_features": ["iot_bridge_snowflake"]})
        refreshed = FloatingCertificate.open(
            await client.floating_check_in(
                server.request(labels.KIND_FLOATING_CHECK_IN, activation_id=cert.activation_id)
            ),
            vendor.public_key,
        )
        assert refreshed.seats == 25 and refreshed.features == ("iot_bridge_snowflake", "mqtt_server")
        assert refreshed.activation_id == cert.activation_id

        # a floating activation is not an online one
        await _expect(ErrorCode.WRONG_MODEL, client.check_in(server.check_in(cert.activation_id)))
        # one activation (one floating server) by default
        other = Instance()
        await _expect(
            ErrorCode.NO_ACTIVATIONS_LEFT,
            client.floating_activate(key, other.request(labels.KIND_FLOATING_ACTIVATE, key_digest=key_digest(key))),
        )
        # deactivating the floating server returns its activation
        await client.deactivate(server.deactivate(cert.activation_id))
        await client.floating_activate(key, other.request(labels.KIND_FLOATING_ACTIVATE, key_digest=key_digest(key)))


async def test_floating_endpoint_refuses_other_models(vendor: VendorHandle) -> None:
    key = vendor.issue(model="online")
    async with ActivationClient(vendor.url) as client:
        await _expect(
            ErrorCode.WRONG_MODEL,
            client.floating_activate(
                key, Instance().request(labels.KIND_FLOATING_ACTIVATE, key_digest=key_digest(key))
            ),
        )


async def test_offline_floating_certificate(vendor: VendorHandle) -> None:
    lic, key = vendor.issue_license(features=["mqtt_server", "iot_bridge_snowflake"], model="floating", seats=3)
    server = Instance()
    code = server.floating_request_code(key)
    async with VendorAdminClient(vendor.url, token=vendor.token) as admin:
        result = await admin.floating_issue(code)
        again = await admin.floating_issue(code)
        online_key = vendor.issue(model="online")
        await _expect(ErrorCode.WRONG_MODEL, admin.floating_issue(Instance().floating_request_code(online_key)))
        usage_request = Instance().request(labels.KIND_OFFLINE_REQUEST, key_digest=key_digest(key))
        await _expect(ErrorCode.WRONG_DOCUMENT, admin.floating_issue(armor(labels.FLOATING_REQUEST, usage_request)))
    assert again["activation_id"] == result["activation_id"] and result["license_id"] == lic["id"]
    assert result["certificate"].startswith(f"-----BEGIN {labels.FLOATING_CERTIFICATE}-----")
    cert = FloatingCertificate.open(unarmor(result["certificate"], labels.FLOATING_CERTIFICATE), vendor.public_key)
    assert cert.seats == 3 and cert.server_fingerprint == server.fingerprint
    assert cert.features == ("iot_bridge_snowflake", "mqtt_server")
    assert cert.request_nonce is not None and cert.valid_until is None
