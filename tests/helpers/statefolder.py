"""Edit a state folder the way a customer with a text editor and this source code could: the
content changed, the MAC recomputed with the instance's own identity key (issue 10)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.agent.statefile import StoredState, mac_key


def identity_mac_key(state_dir: Path) -> bytes:
    key = serialization.load_pem_private_key((state_dir / "identity.key").read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return mac_key(key)


def read_state(state_dir: Path) -> StoredState:
    return StoredState.from_json((state_dir / "state.json").read_bytes(), identity_mac_key(state_dir))


def resealed_edit(state_dir: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    """Apply ``edit`` to state.json's content and seal it again, as the agent would have."""
    state = read_state(state_dir)
    content = json.loads(state.to_json(identity_mac_key(state_dir)))
    edit(content)
    del content["mac"], content["version"]
    edited = StoredState(**content)
    (state_dir / "state.json").write_bytes(edited.to_json(identity_mac_key(state_dir)))
