"""Issue 10 on the vendor server: every signed request is accepted once, and the vendor key signs
a Verdict only for a request that verified against the key on record.

Main: a captured check-in replayed 5 times was accepted 5 times; a captured activate request
replayed after the instance deactivated took the activation again; an unsigned check-in naming a
made-up activation id got a Verdict, signed by the vendor key, for exactly those values."""

from __future__ import annotations

import pytest

from mqtt_licensing.clients.activation import ActivationClient
from mqtt_licensing.core.documents import Verdict
from mqtt_licensing.core.errors import ErrorCode, LicensingError
from tests.helpers.activation import VendorHandle

from .conftest import Instance


async def _refused(coro: object) -> LicensingError:
    with pytest.raises(LicensingError) as info:
        await coro  # type: ignore[misc]
    return info.value


async def test_a_captured_check_in_is_accepted_once(vendor: VendorHandle) -> None:
    key, inst = vendor.issue(), Instance()
    async with ActivationClient(vendor.url) as client:
        activation_id = (await client.activate(key, inst.activate(key)))["activation_id"]
        captured = inst.check_in(activation_id)
        assert await client.check_in(captured)
        for _ in range(5):
            refused = await _refused(client.check_in(captured))
            assert refused.code == ErrorCode.BAD_REQUEST and "replay" in refused.message
        assert await client.check_in(inst.check_in(activation_id))  # a new request is fine


async def test_a_captured_activate_request_cannot_take_the_activation_back(vendor: VendorHandle) -> None:
    key, inst = vendor.issue(max_activations=1), Instance()
    async with ActivationClient(vendor.url) as client:
        captured = inst.activate(key)
        activation_id = (await client.activate(key, captured))["activation_id"]
        await client.deactivate(inst.deactivate(activation_id))
        refused = await _refused(client.activate(key, captured))
        assert refused.code == ErrorCode.BAD_REQUEST and "replay" in refused.message
        other = Instance()  # the freed activation is free for the next instance
        assert (await client.activate(key, other.activate(key)))["reused"] is False


async def test_a_captured_deactivation_is_accepted_once(vendor: VendorHandle) -> None:
    key, inst = vendor.issue(), Instance()
    async with ActivationClient(vendor.url) as client:
        activation_id = (await client.activate(key, inst.activate(key)))["activation_id"]
        captured = inst.deactivate(activation_id)
        await client.deactivate(captured)
        refused = await _refused(client.deactivate(captured))
        assert refused.code == ErrorCode.BAD_REQUEST and "replay" in refused.message


async def test_no_verdict_for_a_made_up_activation_or_a_stranger_s_signature(vendor: VendorHandle) -> None:
    lic, key = vendor.issue_license()
    owner, stranger = Instance(), Instance()
    async with ActivationClient(vendor.url) as client:
        activation_id = (await client.activate(key, owner.activate(key)))["activation_id"]
        vendor.service.set_status(lic["id"], "revoked")
        made_up = await _refused(client.check_in(stranger.check_in("act_0123456789abcdef")))
        assert made_up.code == ErrorCode.ACTIVATION_NOT_FOUND and made_up.evidence is None
        forged = await _refused(client.check_in(stranger.check_in(activation_id)))
        assert forged.code == ErrorCode.INVALID_SIGNATURE and forged.evidence is None
        # the owner's own, verified request gets its signed verdict
        request = owner.check_in(activation_id)
        revoked = await _refused(client.check_in(request))
    assert revoked.code == ErrorCode.REVOKED and revoked.evidence is not None
    verdict = Verdict.open(revoked.evidence, vendor.public_key)
    assert (verdict.verdict, verdict.activation_id, verdict.instance_fingerprint) == (
        "revoked",
        activation_id,
        owner.fingerprint,
    )
