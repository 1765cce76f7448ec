"""Connection overage (issue 11 item 2): a license may admit ⌊cap × (1 + overage)⌋ non-admins."""

import dataclasses

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.core.documents import ActivationCertificate, FloatingCertificate, Lease
from mqtt_licensing.core.errors import ErrorCode, LicensingError
from mqtt_licensing.core.gate import Refusal, connection_ceiling, decide
from mqtt_licensing.core.state import Evaluation, Facts, LicenseState, Limits, evaluate
from tests.core.test_core import cert

NEED = frozenset({"mqtt_server"})


def active(max_connections, overage=0.0):
    return Evaluation(
        LicenseState.ACTIVE, "licensed", ("mqtt_server",), max_connections, model="online", overage=overage
    )


@pytest.mark.parametrize(
    ("cap", "overage", "ceiling"),
    [
        (4, 0.0, 4),
        (4, 0.5, 6),
        (4, 0.1, 4),  # ⌊4.4⌋
        (10, 0.1, 11),  # 10 × 1.1 is 11.000000000000002 as floats; counted exactly
        (100, 0.1, 110),
        (3, 0.7, 5),
        (45, 0.4, 63),  # 45 × 1.4 is 62.99999999999999 as floats: a float floor would give 62
        (25, 0.16, 29),
        (7, 1.0, 14),
        (0, 1.0, 0),
        (None, 0.5, None),
        (4, 5.0, 8),  # never more than double, whatever a document says
        (4, -1.0, 4),
        (4, float("nan"), 4),
    ],
)
def test_ceiling(cap, overage, ceiling):
    assert connection_ceiling(active(cap, overage)) == ceiling


def test_admits_past_the_cap_up_to_the_ceiling_and_flags_it():
    ev = active(4, 0.5)
    below = decide(ev, is_admin=False, required_features=NEED, current_connections=3)
    assert below.allowed and not below.over_cap
    for current in (4, 5):
        over = decide(ev, is_admin=False, required_features=NEED, current_connections=current)
        assert over.allowed and over.over_cap and over.refusal is None
    refused = decide(ev, is_admin=False, required_features=NEED, current_connections=6)
    assert not refused.allowed and refused.refusal == Refusal.CONNECTION_LIMIT
    assert "(4, 6 with overage)" in refused.message
    assert decide(ev, is_admin=True, required_features=NEED, current_connections=60).allowed


def test_no_overage_refuses_at_the_cap():
    refused = decide(active(4), is_admin=False, required_features=NEED, current_connections=4)
    assert (
        refused.refusal == Refusal.CONNECTION_LIMIT
        and refused.message == "the licensed connection limit (4) is reached"
    )


def test_overage_never_serves_a_license_that_does_not_serve():
    expired = dataclasses.replace(active(4, 1.0), state=LicenseState.EXPIRED)
    assert (
        decide(expired, is_admin=False, required_features=NEED, current_connections=0).refusal == Refusal.NOT_LICENSED
    )


def test_evaluation_carries_the_certificate_overage():
    limits = Limits(trial_seconds=100, trial_max_connections=3)
    ev = evaluate(Facts(trial_started_at=0, certificate=cert(max_connections=4, overage=0.5)), 5, limits)
    assert (ev.max_connections, ev.overage, connection_ceiling(ev)) == (4, 0.5, 6)
    grace = evaluate(
        Facts(trial_started_at=0, certificate=cert(max_connections=4, overage=0.5), checkin_failing_since=1), 5, limits
    )
    assert grace.state == LicenseState.GRACE and connection_ceiling(grace) == 6
    assert evaluate(Facts(trial_started_at=0), 5, limits).overage == 0.0  # the trial has none


def test_lease_evaluation_carries_the_floating_certificate_overage():
    vendor, server = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    floating = FloatingCertificate(
        license_id="lic",
        key_mask="m",
        activation_id="act",
        server_fingerprint="srv",
        server_public_key=b"k",
        seats=2,
        features=("mqtt_server",),
        issued_at=0,
        valid_until=None,
        max_connections=10,
        overage=0.25,
    )
    blob = floating.sign(vendor)
    lease = Lease("l", "fp", ("mqtt_server",), 0, 1000, 100, blob)
    assert Lease.open(lease.sign(server), server.public_key()) == lease
    held = FloatingCertificate.open(blob, vendor.public_key())
    ev = evaluate(Facts(trial_started_at=0, lease=lease, floating_certificate=held), 5, Limits())
    assert connection_ceiling(ev) == 12


def test_old_certificates_without_the_field_mean_no_overage():
    key = Ed25519PrivateKey.generate()
    body = cert(max_connections=4).to_body()
    del body["overage"]
    old = ActivationCertificate.from_body(body)
    assert old.overage == 0.0
    signed = ActivationCertificate.open(cert(max_connections=4, overage=0.5).sign(key), key.public_key())
    assert signed.overage == 0.5


@pytest.mark.parametrize("value", ["0.5", True, None, [0.5]])
def test_a_certificate_overage_must_be_a_number(value):
    body = {**cert().to_body(), "overage": value}
    with pytest.raises(LicensingError) as err:
        ActivationCertificate.from_body(body)
    assert err.value.code == ErrorCode.WRONG_DOCUMENT
