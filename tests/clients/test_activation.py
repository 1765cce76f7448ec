"""ActivationClient: the public API an agent and a floating server use."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.clients.activation import ActivationClient
from mqtt_licensing.core import labels
from mqtt_licensing.core.documents import ActivationCertificate, FloatingCertificate, Verdict
from mqtt_licensing.core.errors import ErrorCode, LicensingError
from mqtt_licensing.core.keys import key_digest
from mqtt_licensing.core.signing import fingerprint

from .conftest import ActivationApp, signed


def client(app: ActivationApp) -> ActivationClient:
    return ActivationClient(app.url, transport=app.transport())


async def test_activate_check_in_deactivate(activation: ActivationApp) -> None:
    _lic, key = activation.service.issue_license(features=["mqtt_server"])
    instance = Ed25519PrivateKey.generate()
    vendor = activation.service.public_key
    async with client(activation) as c:
        assert (await c.health())["public_key"] == activation.service.public_key_text
        first = await c.activate(key, signed(instance, labels.KIND_ACTIVATE, key_digest=key_digest(key)))
        assert first["reused"] is False and isinstance(first["certificate"], bytes)
        cert = ActivationCertificate.open(first["certificate"], vendor)
        assert cert.activation_id == first["activation_id"] and cert.instance_fingerprint == fingerprint(instance)
        again = await c.activate(key, signed(instance, labels.KIND_ACTIVATE, key_digest=key_digest(key)))
        assert again["reused"] is True and again["activation_id"] == first["activation_id"]

        act = first["activation_id"]
        refreshed = await c.check_in(signed(instance, labels.KIND_CHECK_IN, activation_id=act))
        assert ActivationCertificate.open(refreshed, vendor).activation_id == act
        assert await c.deactivate(signed(instance, labels.KIND_DEACTIVATE, activation_id=act)) is None

        with pytest.raises(LicensingError) as info:
            await c.deactivate(signed(instance, labels.KIND_DEACTIVATE, activation_id=act))
        assert info.value.code == ErrorCode.ALREADY_FREE and info.value.code.means_already_free

        # a refusal that stops the instance comes with the vendor's signed verdict as evidence
        request = signed(instance, labels.KIND_CHECK_IN, activation_id=act)
        with pytest.raises(LicensingError) as info:
            await c.check_in(request)
        assert info.value.code == ErrorCode.ACTIVATION_NOT_FOUND and info.value.evidence is not None
        verdict = Verdict.open(info.value.evidence, vendor)
        assert verdict.verdict == "activation_not_found" and verdict.activation_id == act


async def test_floating_activate_and_check_in_return_the_certificate(activation: ActivationApp) -> None:
    _lic, key = activation.service.issue_license(features=["mqtt_server"], model="floating", seats=4)
    server = Ed25519PrivateKey.generate()
    async with client(activation) as c:
        blob = await c.floating_activate(key, signed(server, labels.KIND_FLOATING_ACTIVATE, key_digest=key_digest(key)))
        cert = FloatingCertificate.open(blob, activation.service.public_key)
        assert cert.seats == 4 and cert.server_fingerprint == fingerprint(server)
        request = signed(server, labels.KIND_FLOATING_CHECK_IN, activation_id=cert.activation_id)
        again = FloatingCertificate.open(await c.floating_check_in(request), activation.service.public_key)
        assert again.activation_id == cert.activation_id


async def test_server_errors_keep_their_code(activation: ActivationApp) -> None:
    _lic, key = activation.service.issue_license(features=["mqtt_server"], model="offline")
    instance = Ed25519PrivateKey.generate()
    async with client(activation) as c:
        with pytest.raises(LicensingError) as info:
            await c.activate(key, signed(instance, labels.KIND_ACTIVATE, key_digest=key_digest(key)))
        assert info.value.code == ErrorCode.WRONG_MODEL
        with pytest.raises(LicensingError) as info:
            await c.activate("MQL1-" + "0" * 30, b"")
        assert info.value.code == ErrorCode.INVALID_KEY
