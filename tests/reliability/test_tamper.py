"""Codes and documents: every single-character change is detected, never accepted.

The codes and documents are real ones, made by the real components: license keys by the
vendor service, a usage request code and a deactivation code by a broker's agent over
MQTT, the usage license by the vendor from that request, an online activation certificate
by the vendor, a floating certificate and a lease by a real floating server over HTTP.

* Text (license key, usage request, usage license, deactivation code): every position is
  replaced by every character of the code alphabet plus look-alikes and punctuation; keys
  also get every single deletion and insertion. A variant must either fail with
  ``invalid_key`` / ``invalid_code`` / ``wrong_document``, or decode to exactly the same
  bytes (case, the O/0 and I/L/1 look-alikes and line breaks are the same code by design)
  - in which case nothing was changed.
* Bytes (certificate, usage license, floating certificate, lease, signed requests): every
  byte XOR each single bit and 0xFF, every truncation and an appended byte must fail with
  ``invalid_code`` / ``invalid_signature`` / ``wrong_document``.
* End to end, samples of the tampered codes go through the real paths (MQTT to the agent,
  the vendor's offline endpoints) and change nothing.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.clients.floating import FloatingClient, lease_request
from mqtt_licensing.core import labels
from mqtt_licensing.core.codes import armor, unarmor
from mqtt_licensing.core.documents import (
    ActivationCertificate,
    FloatingCertificate,
    open_instance_request,
    sign_instance_request,
    verify_lease,
)
from mqtt_licensing.core.errors import LicensingError
from mqtt_licensing.core.keys import key_digest, normalize_key
from mqtt_licensing.core.signing import load_public_key
from tests.helpers.broker import start_broker
from tests.helpers.floating import start_floating
from tests.reliability.support import SCALE

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
REPLACEMENTS = sorted(set(CROCKFORD + CROCKFORD.lower() + "ILOUilou-=!>*#_.~ \t\n\r/+é"))
TEXT_CODES = {"invalid_code", "wrong_document"}
BLOB_CODES = {"invalid_code", "invalid_signature", "wrong_document"}
PER_POSITION = 12  # replacements per position of the long codes (x RELIABILITY_SCALE)
MASKS = (0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xFF)


def instance_key(state_dir: Any) -> Ed25519PrivateKey:
    """The instance identity as the agent stores it (identity.key, PEM)."""
    key = serialization.load_pem_private_key((state_dir / "identity.key").read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return key


def substitutions(text: str, per_position: int | None = None):
    """Every position, replaced by every character of REPLACEMENTS - or, for long codes, by
    ``per_position`` of them, rotating through the whole set from one position to the next."""
    for i, ch in enumerate(text):
        if per_position is None or per_position * SCALE >= len(REPLACEMENTS):
            reps = REPLACEMENTS
        else:
            step = len(REPLACEMENTS) // (per_position * SCALE) or 1
            reps = [REPLACEMENTS[(i + k * step) % len(REPLACEMENTS)] for k in range(per_position * SCALE)]
        for rep in reps:
            if rep != ch:
                yield i, text[:i] + rep + text[i + 1 :]


def byte_mutations(blob: bytes):
    for i in range(len(blob)):
        for mask in MASKS:
            changed = bytearray(blob)
            changed[i] ^= mask
            yield f"byte {i} ^ {mask:#04x}", bytes(changed)
    for n in range(len(blob)):
        yield f"truncated to {n}", blob[:n]
    yield "appended byte", blob + b"\x00"


def assert_text_tamper_detected(code: str, label: str, blob: bytes, verify: Callable[[bytes], Any]) -> dict[str, int]:
    """Every substitution: rejected by the armour, or the same bytes; different bytes must fail verify()."""
    assert unarmor(code, label) == blob
    counts = {"rejected": 0, "same_code": 0}
    for i, variant in substitutions(code, per_position=PER_POSITION):
        try:
            decoded = unarmor(variant, label)
        except LicensingError as exc:
            assert exc.code in TEXT_CODES, (i, exc)
            counts["rejected"] += 1
            continue
        if decoded == blob:
            counts["same_code"] += 1  # case, O/0, I/L/1 or line layout: the same code
            continue
        with pytest.raises(LicensingError) as err:  # pragma: no cover - a checksum collision
            verify(decoded)
        assert err.value.code in BLOB_CODES
        counts["rejected"] += 1
    assert counts["rejected"] > counts["same_code"]
    return counts


def assert_blob_tamper_detected(blob: bytes, verify: Callable[[bytes], Any]) -> int:
    verify(blob)  # the genuine one verifies
    accepted = []
    n = 0
    for what, changed in byte_mutations(blob):
        n += 1
        try:
            verify(changed)
        except LicensingError as exc:
            assert exc.code in BLOB_CODES, (what, exc)
            continue
        accepted.append(what)
    assert accepted == [], f"{len(accepted)} of {n} changed blobs were accepted, e.g. {accepted[:5]}"
    return n


# -- the real documents ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def documents(tmp_path_factory):
    from tests.helpers.activation import start_vendor

    tmp = tmp_path_factory.mktemp("tamper")
    out: dict[str, Any] = {}
    with start_vendor(tmp / "vendor") as vendor:
        out["vendor_key"] = vendor.public_key
        out["keys"] = [vendor.issue() for _ in range(12)]
        # online: an activation request and the certificate it earns
        instance = Ed25519PrivateKey.generate()
        request = sign_instance_request(
            instance,
            kind=labels.KIND_ACTIVATE,
            nonce=secrets.token_hex(16),
            created_at=int(time.time()),
            key_digest=key_digest(out["keys"][0]),
        )
        out["activate_request"] = request
        out["certificate"] = vendor.service.activate(out["keys"][0], request).certificate
        # offline: the whole exchange through a broker's agent and the vendor
        offline_key = vendor.issue(model="offline")
        with start_broker(tmp / "state", vendor=vendor) as broker, broker.admin() as admin:
            out["request_code"] = admin.request("offline_request", {"license_key": offline_key})["request_code"]
            out["usage_license"] = vendor.service.offline_activate(out["request_code"]).usage_license
            admin.request("activate", {"method": "offline", "usage_license": out["usage_license"]})
            out["deactivation_code"] = admin.request("deactivate")["deactivation_code"]
            out["instance_public_key"] = instance_key(tmp / "state").public_key()
        # floating: a lease from a real floating server, over HTTP
        test_vendor = Ed25519PrivateKey.generate()
        out["floating_vendor_key"] = test_vendor.public_key()
        with start_floating(tmp / "fls", vendor_key=test_vendor, seats=2) as fls:
            import asyncio

            async def acquire() -> bytes:
                async with FloatingClient(fls.url) as client:
                    return await client.acquire(
                        lease_request(instance, labels.KIND_LEASE_ACQUIRE, features=["mqtt_server"])
                    )

            out["lease"] = asyncio.run(acquire())
            lease, _ = verify_lease(out["lease"], test_vendor.public_key())
            out["floating_certificate"] = lease.certificate
    return out


# -- text codes ----------------------------------------------------------------------------------


def test_every_single_character_change_to_a_license_key(documents):
    rejected = same = 0
    for key in documents["keys"]:
        canonical = normalize_key(key)
        variants = [v for _, v in substitutions(key)]
        variants += [key[:i] + key[i + 1 :] for i in range(len(key))]  # deletions
        variants += [key[:i] + ch + key[i:] for i in range(len(key) + 1) for ch in CROCKFORD]  # insertions
        for variant in variants:
            try:
                result = normalize_key(variant)
            except LicensingError as exc:
                assert exc.code == "invalid_key", (variant, exc)
                rejected += 1
                continue
            assert result == canonical, f"{variant!r} is accepted as ANOTHER key"
            same += 1  # a dash or space moved, a letter's case, O for 0, I/L for 1
    print(f"license keys: {rejected} variants rejected, {same} the same key in another spelling")
    assert rejected > 20 * same


def test_every_single_character_change_to_a_usage_request_code(documents):
    code = documents["request_code"]
    blob = unarmor(code, labels.USAGE_REQUEST)
    counts = assert_text_tamper_detected(
        code, labels.USAGE_REQUEST, blob, lambda b: open_instance_request(b, labels.KIND_OFFLINE_REQUEST)
    )
    print(f"usage request ({len(code)} chars): {counts}")


def test_every_single_character_change_to_a_usage_license(documents):
    code = documents["usage_license"]
    blob = unarmor(code, labels.USAGE_LICENSE)
    counts = assert_text_tamper_detected(
        code, labels.USAGE_LICENSE, blob, lambda b: ActivationCertificate.open(b, documents["vendor_key"])
    )
    print(f"usage license ({len(code)} chars): {counts}")


def test_every_single_character_change_to_a_deactivation_code(documents):
    code = documents["deactivation_code"]
    blob = unarmor(code, labels.DEACTIVATION_CODE)
    key = documents["instance_public_key"]
    counts = assert_text_tamper_detected(
        code, labels.DEACTIVATION_CODE, blob, lambda b: open_instance_request(b, labels.KIND_OFFLINE_DEACTIVATION, key)
    )
    print(f"deactivation code ({len(code)} chars): {counts}")


# -- signed blobs (what a valid checksum around a changed document would carry) -------------------


def test_every_single_byte_change_to_an_activation_certificate(documents):
    n = assert_blob_tamper_detected(
        documents["certificate"], lambda b: ActivationCertificate.open(b, documents["vendor_key"])
    )
    print(f"activation certificate: {n} changed blobs, all rejected")


def test_every_single_byte_change_to_a_usage_license_document(documents):
    blob = unarmor(documents["usage_license"], labels.USAGE_LICENSE)
    n = assert_blob_tamper_detected(blob, lambda b: ActivationCertificate.open(b, documents["vendor_key"]))
    print(f"usage license document: {n} changed blobs, all rejected")


def test_every_single_byte_change_to_a_floating_certificate(documents):
    n = assert_blob_tamper_detected(
        documents["floating_certificate"], lambda b: FloatingCertificate.open(b, documents["floating_vendor_key"])
    )
    print(f"floating certificate: {n} changed blobs, all rejected")


def test_every_single_byte_change_to_a_lease(documents):
    n = assert_blob_tamper_detected(documents["lease"], lambda b: verify_lease(b, documents["floating_vendor_key"]))
    print(f"lease: {n} changed blobs, all rejected")


def test_every_single_byte_change_to_signed_instance_requests(documents):
    # first contact: verified against the key the request carries
    n = assert_blob_tamper_detected(
        documents["activate_request"], lambda b: open_instance_request(b, labels.KIND_ACTIVATE)
    )
    # later: against the key on record
    blob = unarmor(documents["deactivation_code"], labels.DEACTIVATION_CODE)
    key = documents["instance_public_key"]
    n += assert_blob_tamper_detected(blob, lambda b: open_instance_request(b, labels.KIND_OFFLINE_DEACTIVATION, key))
    print(f"signed instance requests: {n} changed blobs, all rejected")


# -- end to end: tampered codes through the real paths change nothing ---------------------------


def _flip_char(code: str, label: str, index: int) -> str:
    """A single-character change inside the base32 body (never a look-alike of the original)."""
    lines = code.splitlines()
    body = [i for i, ln in enumerate(lines) if ln and not ln.startswith(("-----", "="))]
    row = body[index % len(body)]
    col = (index * 7) % len(lines[row])
    old = lines[row][col]
    new = next(c for c in CROCKFORD if c not in (old, old.upper(), "0" if old in "Oo" else "", "1"))
    lines[row] = lines[row][:col] + new + lines[row][col + 1 :]
    return "\n".join(lines) + "\n"


def _reflip(code: str, label: str, index: int) -> str:
    """The same document with one byte changed, re-armoured with a VALID checksum."""
    blob = bytearray(unarmor(code, label))
    blob[(index * 37) % len(blob)] ^= 0x04
    return armor(label, bytes(blob))


def test_tampered_codes_through_the_agent_and_the_vendor_change_nothing(tmp_path):
    from tests.helpers.activation import start_vendor

    with (
        start_vendor(tmp_path / "vendor") as vendor,
        start_broker(tmp_path / "state", vendor=vendor, trial_seconds=0) as broker,
        broker.admin() as admin,
    ):
        key = vendor.issue(model="offline")
        license_id = vendor.license_id(key)
        request_code = admin.request("offline_request", {"license_key": key})["request_code"]
        # tampered request codes: the vendor refuses them and records nothing
        for i in range(8):
            for bad in (
                _flip_char(request_code, labels.USAGE_REQUEST, i),
                _reflip(request_code, labels.USAGE_REQUEST, i),
            ):
                with pytest.raises(LicensingError) as err:
                    vendor.service.offline_activate(bad)
                assert err.value.code in TEXT_CODES | BLOB_CODES | {"bad_request"}
        assert vendor.service.list_activations(license_id, include_freed=True) == []
        usage_license = vendor.service.offline_activate(request_code).usage_license
        # tampered usage licenses: the agent refuses each with its code and keeps not serving
        for i in range(8):
            for bad in (
                _flip_char(usage_license, labels.USAGE_LICENSE, i),
                _reflip(usage_license, labels.USAGE_LICENSE, i),
            ):
                with pytest.raises(LicensingError) as err:
                    admin.request("activate", {"method": "offline", "usage_license": bad})
                assert err.value.code in TEXT_CODES | BLOB_CODES, err.value
        assert admin.status()["state"] == "pending_offline"
        assert (
            admin.request("activate", {"method": "offline", "usage_license": usage_license})["status"]["state"]
            == "active"
        )
        code = admin.request("deactivate")["deactivation_code"]
        # tampered deactivation codes: the activation stays in use
        for i in range(8):
            for bad in (_flip_char(code, labels.DEACTIVATION_CODE, i), _reflip(code, labels.DEACTIVATION_CODE, i)):
                with pytest.raises(LicensingError) as err:
                    vendor.service.offline_deactivate(bad)
                assert err.value.code in TEXT_CODES | BLOB_CODES | {"bad_request"}
        (act,) = vendor.service.list_activations(license_id)
        assert act["active"]
        assert vendor.service.offline_deactivate(code).freed is True
        assert vendor.service.list_activations(license_id) == []


def test_load_public_key_rejects_every_changed_length():
    raw = bytes(32)
    for n in (0, 31, 33, 64):
        with pytest.raises(LicensingError):
            load_public_key(raw[:n] if n < 32 else raw + bytes(n - 32))
