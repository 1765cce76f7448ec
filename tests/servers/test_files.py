"""The data folder: secrets owner-only, every write atomic, nothing half-written left behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.core.errors import ErrorCode, LicensingError
from mqtt_licensing.core.signing import public_key_to_text
from mqtt_licensing.servers._files import atomic_write, load_or_create_signing_key, load_or_create_token
from mqtt_licensing.servers.floating.service import FloatingService


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_key_and_token_are_owner_only_and_stable(tmp_path: Path) -> None:
    key = load_or_create_signing_key(tmp_path, "vendor")
    token = load_or_create_token(tmp_path)
    assert _mode(tmp_path / "vendor.key") == 0o600 and _mode(tmp_path / "admin.token") == 0o600
    assert (tmp_path / "vendor.pub").read_text() == public_key_to_text(key) + "\n"
    again = load_or_create_signing_key(tmp_path, "vendor")
    assert public_key_to_text(again) == public_key_to_text(key) and load_or_create_token(tmp_path) == token
    assert sorted(p.name for p in tmp_path.iterdir()) == ["admin.token", "vendor.key", "vendor.pub"]


@pytest.mark.parametrize("kind", ["garbage", "ec"])
def test_a_key_file_that_is_not_an_ed25519_key_is_refused_with_a_code(tmp_path: Path, kind: str) -> None:
    if kind == "garbage":
        pem = b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"
    else:
        pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    (tmp_path / "vendor.key").write_bytes(pem)
    with pytest.raises(LicensingError) as info:
        load_or_create_signing_key(tmp_path, "vendor")
    assert info.value.code == ErrorCode.STATE_CORRUPT and "vendor.key" in info.value.message
    assert (tmp_path / "vendor.key").read_bytes() == pem  # never replaced by a new key


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "admin.token"
    atomic_write(target, b"old\n")

    with pytest.raises(TypeError):
        atomic_write(target, object())  # type: ignore[arg-type]
    assert target.read_bytes() == b"old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["admin.token"]
    assert _mode(target) == 0o600


def test_the_pinned_vendor_key_is_written_atomically_and_readable(tmp_path: Path) -> None:
    vendor = Ed25519PrivateKey.generate()
    service = FloatingService.open(tmp_path, vendor_public_key=vendor.public_key())
    try:
        pinned = tmp_path / "vendor.pub"
        assert pinned.read_text() == public_key_to_text(vendor) + "\n" and _mode(pinned) == 0o644
        other = Ed25519PrivateKey.generate()
        service.pin_vendor_key(other.public_key())
        assert public_key_to_text(service.vendor_key()) == public_key_to_text(other)  # type: ignore[arg-type]
        assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    finally:
        service.close()


def test_the_folder_is_created_when_missing(tmp_path: Path) -> None:
    data = tmp_path / "a" / "b"
    load_or_create_token(data)
    assert os.path.isdir(data) and _mode(data / "admin.token") == 0o600
