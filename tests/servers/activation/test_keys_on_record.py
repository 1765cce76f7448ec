"""The public keys of activations remembered per process (servers/activation/keys_on_record.py):
requests of a known activation are verified before their transaction, and nothing that can change
is remembered - a freed, revoked or suspended activation is refused on the very next request."""

from __future__ import annotations

import pytest

from mqtt_licensing.core import labels
from mqtt_licensing.core.documents import ActivationCertificate, HeartbeatAck, Verdict
from mqtt_licensing.core.errors import ErrorCode, LicensingError
from tests.helpers.activation import VendorHandle

from .conftest import Instance

TERMS = {"heartbeat_interval": 10, "release_after": 30}


def _activated(vendor: VendorHandle, **terms: object) -> tuple[Instance, str, str]:
    service = vendor.service
    lic, key = service.issue_license(features=["mqtt_server"], max_activations=2, **terms)
    inst = Instance()
    result = service.activate(key, inst.activate(key))
    return inst, result.activation_id, lic["id"]


def _beat(vendor: VendorHandle, inst: Instance, activation_id: str) -> HeartbeatAck:
    blob = vendor.service.heartbeat(inst.request(labels.KIND_HEARTBEAT, activation_id=activation_id))
    return HeartbeatAck.open(blob, vendor.public_key)


def _refused(call: object, *args: object) -> LicensingError:
    with pytest.raises(LicensingError) as info:
        call(*args)  # type: ignore[operator]
    return info.value


def test_a_known_activation_is_verified_before_its_transaction(vendor: VendorHandle) -> None:
    keys = vendor.service.ctx.keys
    inst, act_id, _lic = _activated(vendor, **TERMS)
    before = len(keys)
    _beat(vendor, inst, act_id)  # the first request of the activation fills its entry
    assert len(keys) == before + 1
    presented = keys.present(inst.request(labels.KIND_HEARTBEAT, activation_id=act_id), labels.KIND_HEARTBEAT)
    assert presented.verified is not None  # verified with no transaction open
    # Another identity naming this activation is refused before any transaction, as it was inside one.
    forger = Instance()
    exc = _refused(keys.present, forger.request(labels.KIND_HEARTBEAT, activation_id=act_id), labels.KIND_HEARTBEAT)
    assert exc.code == ErrorCode.INVALID_SIGNATURE
    exc = _refused(vendor.service.check_in, forger.check_in(act_id))
    assert exc.code == ErrorCode.INVALID_SIGNATURE


@pytest.mark.parametrize("change", ["freed", "revoked", "suspended"])
def test_a_change_is_seen_on_the_next_request_with_the_key_remembered(vendor: VendorHandle, change: str) -> None:
    service = vendor.service
    inst, act_id, lic_id = _activated(vendor, **TERMS)
    _beat(vendor, inst, act_id)
    ActivationCertificate.open(service.check_in(inst.check_in(act_id)), vendor.public_key)
    assert service.ctx.keys.present(inst.check_in(act_id), labels.KIND_CHECK_IN).verified is not None
    if change == "freed":
        service.free_activation(act_id)
    else:
        service.set_status(lic_id, change)
    expected = {
        "freed": ErrorCode.ACTIVATION_NOT_FOUND,
        "revoked": ErrorCode.REVOKED,
        "suspended": ErrorCode.SUSPENDED,
    }[change]
    for call, blob in (
        (service.heartbeat, inst.request(labels.KIND_HEARTBEAT, activation_id=act_id)),
        (service.check_in, inst.check_in(act_id)),
    ):
        exc = _refused(call, blob)
        assert exc.code == expected
        assert exc.evidence is not None  # still a signed verdict for the instance
        assert Verdict.open(exc.evidence, vendor.public_key).verdict == str(expected)


def test_the_table_is_bounded(vendor: VendorHandle) -> None:
    keys = vendor.service.ctx.keys
    keys.limit = 2
    for _ in range(3):
        inst, act_id, _lic = _activated(vendor, **TERMS)
        _beat(vendor, inst, act_id)
        _beat(vendor, inst, act_id)  # verified early or anew: answered the same
        assert 1 <= len(keys) <= 2
