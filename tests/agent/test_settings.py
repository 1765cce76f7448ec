"""The agent's config is checked and parsed once, into frozen settings: the pinned vendor key and
the password file are read at construction, never again while the agent runs."""

from __future__ import annotations

import dataclasses

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.agent import AgentConfig, LicensingAgent
from mqtt_licensing.core.errors import LicensingError
from mqtt_licensing.core.passwords import hash_password
from mqtt_licensing.core.signing import public_key_to_text


async def test_files_named_by_the_config_are_read_once(tmp_path):
    vendor_pub = tmp_path / "vendor.pub"
    vendor_pub.write_text(public_key_to_text(Ed25519PrivateKey.generate().public_key()))
    passwords = tmp_path / "passwd"
    passwords.write_text(f"plc:{hash_password('plc-secret', n=2**10)}\n")
    config = AgentConfig(state_dir=str(tmp_path / "s"), vendor_public_key=str(vendor_pub), password_file=str(passwords))
    agent = LicensingAgent(config)
    vendor_pub.unlink()
    passwords.write_text("not a hashed entry\n")  # a file edited after start changes nothing now
    await agent.load()
    decision = await agent.admit("c1", client_id="plc-1", username="plc", password="plc-secret")
    assert decision.allowed
    with pytest.raises(LicensingError) as err:  # while a fresh parse reports each file in one line
        config.settings()
    assert err.value.code == "invalid_field" and "\n" not in err.value.message
    await agent.stop()


def test_settings_are_frozen(tmp_path):
    config = AgentConfig(
        state_dir=str(tmp_path), vendor_public_key=public_key_to_text(Ed25519PrivateKey.generate().public_key())
    )
    settings = config.settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.limits = settings.limits  # type: ignore[misc]
    with pytest.raises(TypeError):
        settings.user_hashes["intruder"] = "x"  # type: ignore[index]
    assert settings.floating_servers == () and settings.http.timeout == config.http_timeout
