"""Vendor key rotation: a site follows a rotation its pinned key endorses, and a retirement ends a key."""

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.core import keyring
from mqtt_licensing.core.documents import TrialRecord
from mqtt_licensing.core.errors import ErrorCode, LicensingError
from mqtt_licensing.core.signing import fingerprint


def record(key: Ed25519PrivateKey) -> bytes:
    return TrialRecord("f", 1, "n", 2).sign(key)


def test_a_pinned_key_verifies_its_documents_and_refuses_an_unknown_signer():
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    ring = keyring.VendorKeys.pinned(old.public_key())
    assert ring.open(TrialRecord, record(old)).trial_started_at == 1
    with pytest.raises(LicensingError) as err:
        ring.open(TrialRecord, record(new))
    assert err.value.code == ErrorCode.INVALID_SIGNATURE
    assert "rotation document never reached it" in err.value.message


def test_a_rotation_signed_by_the_pinned_key_adds_the_new_key():
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    ring = keyring.VendorKeys.pinned(old.public_key()).accept_rotation(keyring.rotation(old, new, 10))
    assert ring.open(TrialRecord, record(new)).instance_fingerprint == "f"
    assert ring.open(TrialRecord, record(old)).instance_fingerprint == "f"


def test_a_rotation_signed_by_a_stranger_is_refused():
    old, new, mallory = (Ed25519PrivateKey.generate() for _ in range(3))
    ring = keyring.VendorKeys.pinned(old.public_key())
    with pytest.raises(LicensingError):
        ring.accept_rotation(keyring.rotation(mallory, new, 10))
    assert set(ring.keys) == {fingerprint(old)}


def test_after_retirement_the_old_keys_documents_are_refused_and_it_survives_a_restart():
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    ring = keyring.VendorKeys.pinned(old.public_key()).accept_rotation(keyring.rotation(old, new, 10))
    ring = ring.accept_retirement(keyring.retirement(new, fingerprint(old), 20))
    with pytest.raises(LicensingError, match="retired"):
        ring.open(TrialRecord, record(old))
    # The site's config still pins the old key: what it stored wins over the pin.
    again = keyring.VendorKeys.from_json(ring.to_json(), old.public_key())
    with pytest.raises(LicensingError, match="retired"):
        again.open(TrialRecord, record(old))
    assert again.open(TrialRecord, record(new)).issued_at == 2


def test_a_key_cannot_retire_itself_or_leave_a_site_without_keys():
    old = Ed25519PrivateKey.generate()
    with pytest.raises(LicensingError):
        keyring.retirement(old, fingerprint(old), 1)


def test_documents_carried_in_a_certificate_or_a_lease_are_learnt_only_when_they_verify():
    """Offline sites and leasing brokers learn rotations from what the vendor signs for them."""
    from mqtt_licensing.core.documents import FloatingCertificate, Lease
    from mqtt_licensing.core.signing import public_bytes

    old, new, mallory, server = (Ed25519PrivateKey.generate() for _ in range(4))
    fcert = FloatingCertificate(
        license_id="l",
        key_mask="m",
        activation_id="a",
        server_fingerprint=fingerprint(server),
        server_public_key=public_bytes(server),
        seats=1,
        features=("mqtt_server",),
        issued_at=1,
        valid_until=None,
        key_documents=(keyring.rotation(mallory, mallory, 9), keyring.rotation(old, new, 10)),
    ).sign(new)
    lease = Lease("lease", "f", ("mqtt_server",), 1, 2, 1, fcert).sign(server)
    ring = keyring.KeyRing(old.public_key())
    assert ring.accept_carried(lease) is True  # the rotation the pinned key signed, through the lease
    assert set(ring.keys.keys) == {fingerprint(old), fingerprint(new)}  # the stranger's adds nothing
    assert FloatingCertificate.open(fcert, ring).seats == 1
    assert keyring.carried(b"not a document") == []
