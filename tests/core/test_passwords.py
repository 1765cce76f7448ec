"""Password hashes: ours (scrypt) and Mosquitto's, checked against real `mosquitto_passwd` output."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from mqtt_licensing.core.passwords import dummy_hash_like, hash_password, is_password_hash, verify_password

needs_mosquitto = pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="mosquitto not installed")


def mosquitto_entry(tmp_path, user: str, password: str, *hash_args: str) -> str:
    path = tmp_path / "passwd"
    path.touch()
    subprocess.run(["mosquitto_passwd", *hash_args, "-b", str(path), user, password], check=True, timeout=30)
    name, encoded = path.read_text().strip().split(":", 1)
    assert name == user
    return encoded


@needs_mosquitto
@pytest.mark.parametrize("hash_args", [(), ("-H", "sha512-pbkdf2"), ("-H", "sha512")])
def test_mosquitto_passwd_entries_verify(tmp_path, hash_args):
    encoded = mosquitto_entry(tmp_path, "alice", "s3cret pass", *hash_args)
    assert encoded.startswith("$6$" if "sha512" in hash_args else "$7$")
    assert is_password_hash(encoded)
    assert verify_password("s3cret pass", encoded)
    assert not verify_password("s3cret pasS", encoded)
    assert not verify_password("", encoded)


def test_scrypt_still_verifies():
    encoded = hash_password("pw", n=2**10)
    assert verify_password("pw", encoded) and not verify_password("pW", encoded)


@pytest.mark.parametrize(
    "garbage",
    ["", "plain", "$7$", "$7$abc$x$y", "$7$0$AAAA$AAAA", "$7$999999999$AAAA$AAAA", "$6$!!$AAAA", "scrypt$1$2$3$4$5"],
)
def test_malformed_hashes_never_verify(garbage):
    assert not verify_password("anything", garbage)


def test_dummy_hash_has_the_same_scheme_and_cost():
    pbkdf2 = "$7$101$" + "A" * 16 + "$" + "A" * 88
    dummy = dummy_hash_like(pbkdf2)
    assert dummy.startswith("$7$101$") and is_password_hash(dummy)
    assert dummy_hash_like(hash_password("x", n=2**10)).startswith("scrypt$1024$")
    assert dummy_hash_like("$6$AAAA$AAAA").startswith("$6$")
