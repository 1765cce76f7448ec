"""The agent's state folder: the instance identity key and one state file.

* ``identity.key`` - the instance's Ed25519 private key (PEM, mode 0600), made on
  first start. Its fingerprint is the instance identity the vendor sees.
* ``state.json``   - every persisted fact in one file, so one atomic replace
  (write temp, fsync, rename, fsync folder) always leaves a whole snapshot: a
  kill -9 at any moment leaves either the old or the new file, never half of one.

Signed documents are stored as the vendor sent them and re-verified on every
load; nothing read from disk is trusted until its signature checks. A file that
does not parse or verify is moved aside and reported, never a crash loop.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..core.errors import ErrorCode, LicensingError

log = logging.getLogger(__name__)

STATE_VERSION = 1


@dataclass
class PersistedState:
    """Facts as stored. Document fields hold base64 text of the signed bytes."""

    trial_started_at: int
    last_seen: int | None = None
    clock_tampered: bool = False
    certificate: str | None = None  # ActivationCertificate (online or offline)
    lease: str | None = None  # floating Lease (carries its FloatingCertificate)
    server_url: str | None = None  # where the certificate or lease came from
    floating_features: list[str] = field(default_factory=list)
    vendor_verdict: str | None = None
    last_checkin_ok_at: int | None = None
    checkin_failing_since: int | None = None
    last_error: dict[str, str] | None = None
    pending_offline: dict[str, Any] | None = None  # {nonce, created_at, request_code}
    superseded_nonces: list[str] = field(default_factory=list)
    deactivation_code: str | None = None

    def to_json(self) -> bytes:
        return json.dumps({"version": STATE_VERSION, **asdict(self)}, indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> PersistedState:
        data = json.loads(raw)
        if not isinstance(data, dict) or data.pop("version", None) != STATE_VERSION:
            raise ValueError("unknown state file version")
        known = set(cls.__dataclass_fields__)
        state = cls(**{k: v for k, v in data.items() if k in known})
        if not isinstance(state.trial_started_at, int):
            raise ValueError("trial_started_at is not an integer")
        return state


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class StateStore:
    """Blocking file I/O; the agent calls it through ``asyncio.to_thread``."""

    def __init__(self, state_dir: str | Path) -> None:
        self.dir = Path(state_dir).expanduser()
        self.identity_path = self.dir / "identity.key"
        self.state_path = self.dir / "state.json"

    def load_identity(self) -> Ed25519PrivateKey:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.identity_path.exists():
            try:
                key = serialization.load_pem_private_key(self.identity_path.read_bytes(), password=None)
            except (ValueError, TypeError):
                key = None
            if not isinstance(key, Ed25519PrivateKey):
                # Without its key the instance cannot prove who it is; refusing to
                # start is better than silently becoming a new instance.
                raise LicensingError(
                    ErrorCode.STATE_CORRUPT,
                    f"{self.identity_path} is not a valid Ed25519 private key; restore it from "
                    "backup, or delete it to start as a new instance (a new activation)",
                )
            return key
        key = Ed25519PrivateKey.generate()
        atomic_write(
            self.identity_path,
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        )
        return key

    def load(self, now: int) -> tuple[PersistedState, list[LicensingError]]:
        """Return the stored state (or a fresh one) and the problems found reading it."""
        if not self.state_path.exists():
            return PersistedState(trial_started_at=now), []
        try:
            return PersistedState.from_json(self.state_path.read_bytes()), []
        except (ValueError, TypeError, OSError) as exc:
            aside = self.state_path.with_name(f"state.json.corrupt-{int(time.time())}")
            try:
                os.replace(self.state_path, aside)
            except OSError:
                aside = self.state_path
            log.error("license state file unreadable (%s); moved to %s", exc, aside)
            # A damaged file must not buy a fresh evaluation period: the trial counts as used.
            problem = LicensingError(
                ErrorCode.STATE_CORRUPT,
                f"the license state file was unreadable and was moved to {aside.name}; activate the license again",
            )
            return PersistedState(trial_started_at=0), [problem]

    def save(self, state: PersistedState) -> None:
        self.write(state.to_json())

    def write(self, data: bytes) -> None:
        """Replace state.json atomically with ``data`` (one writer at a time: the agent serialises calls)."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(self.state_path, data)
