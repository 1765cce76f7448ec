"""The agent's state folder: the instance identity key and one state file.

* ``identity.key`` - the instance's Ed25519 private key (PEM, mode 0600), made on
  first start. Its fingerprint is the instance identity the vendor sees.
* ``state.json``   - every persisted fact in one file, so one atomic replace
  (write temp, fsync, rename, fsync folder) always leaves a whole snapshot: a
  kill -9 at any moment leaves either the old or the new file, never half of one.

Signed documents are stored as the vendor sent them and re-verified on every
load; nothing read from disk is trusted until its signature checks. A file that
does not parse or verify is moved aside and reported, never a crash loop.

``state.json`` carries a format ``version``. An older one is upgraded in code when read
(:func:`upgrade_v1_to_v2`, :func:`upgrade_v2_to_v3`, :func:`upgrade_v3_to_v4`) and written back in today's format at the
next save; a newer one
stops the agent with ``STATE_TOO_NEW`` and is left untouched, since moving it aside would drop
its license and count the trial as used.

Version 4 adds ``from_config``: what the agent remembers about the license the config asks for
(the standing order it last saw, an operator's deactivate that holds it back, old activations
still to be freed at the vendor; :mod:`.autolease`).

Since version 3 the file carries a ``mac``: HMAC-SHA256 over its content under a key derived
from the identity key (:func:`mac_key`). It makes an edit evident, it hides nothing: a file
whose MAC does not match is handled like a corrupt one (moved aside, the trial counted as
used, reported in ``problems``). A version-2 file has no MAC; the trial marker outside the
folder (:mod:`.marker`) remembers which instances already wrote version 3, so rewriting a
sealed file as version 2 is caught too.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .._atomic import atomic_write
from ..core.documents import ActivationCertificate
from ..core.errors import ErrorCode, LicensingError
from ..core.models import LicenseModel
from ..core.signing import parse_envelope, unb64

log = logging.getLogger(__name__)

STATE_VERSION = 4
_MAC_INFO = b"mqtt-licensing state.json mac"


@dataclass
class ClockRecord:
    """The clock's high-water mark, how far it was stepped back since the last trusted time, and
    whether that went beyond tolerance (see :mod:`.clock`)."""

    last_seen: int | None = None
    tampered: bool = False
    stepped_back: int = 0

    def trust(self) -> None:
        """A vendor answer or a lease vouched for the time: the steps back so far are forgiven."""
        self.tampered = False
        self.stepped_back = 0


def _strings(value: object) -> list[str] | None:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else None


@dataclass
class StoredState:
    """state.json as stored: the trial and clock facts, and the current source's own section.

    ``source`` is ``None`` (the trial) or ``{"model": ..., ...}`` written and read by that
    model's :class:`~mqtt_licensing.agent.sources.LicenseSource`; signed documents in it are
    base64 text of the bytes as signed, re-verified on every load.
    """

    trial_started_at: int
    last_seen: int | None = None
    clock_tampered: bool = False
    source: dict[str, Any] | None = None
    alarms: list[dict[str, Any]] | None = None  # the active alarms (agent/alarms.py); readers before it ignore it
    stepped_back: int = 0  # seconds the clock was set back since the last trusted time (v3)
    usage_high_water: int = 0  # the highest usage sequence used or held by the vendor (readers before it ignore it)
    # The vendor's key rotations/retirements this site accepted (base64 of the signed documents,
    # replayed from the pinned key at load; readers before them ignore the field).
    vendor_key_documents: list[str] | None = None
    # The config's standing order as last seen, an operator's hold on it and the activations a
    # changed key left to free (v4; agent/autolease.py reads and writes it).
    from_config: dict[str, Any] | None = None
    sealed: bool = True  # read from a file with a MAC (False: upgraded from v1 or v2)

    def to_json(self, key: bytes) -> bytes:
        content = {"version": STATE_VERSION, **asdict(self)}
        del content["sealed"]
        content["mac"] = _mac(key, content)
        return json.dumps(content, indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes, key: bytes) -> StoredState:
        """Parse (and upgrade) a state file. ValueError/TypeError: corrupt. STATE_TOO_NEW: a newer format.

        :class:`StateTampered` (a ValueError): the MAC does not match the content."""
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("the state file is not a JSON object")
        version = data.get("version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise ValueError(f"unknown state file version {version!r}")
        sealed = isinstance(version, int) and 3 <= version <= STATE_VERSION  # v3 already carried the MAC
        if sealed:
            mac = data.pop("mac", None)
            if not isinstance(mac, str) or not hmac.compare_digest(mac, _mac(key, data)):
                raise StateTampered("state.json was changed outside mqtt-licensing (its MAC does not match)")
        data.pop("version")
        if version == 1:
            data = upgrade_v3_to_v4(upgrade_v2_to_v3(upgrade_v1_to_v2(data)))
        elif version == 2:
            data = upgrade_v3_to_v4(upgrade_v2_to_v3(data))
        elif version == 3:
            data = upgrade_v3_to_v4(data)
        elif version > STATE_VERSION:
            raise LicensingError(
                ErrorCode.STATE_TOO_NEW,
                f"state.json has format version {version}, newer than this version of mqtt-licensing reads "
                f"({STATE_VERSION}); upgrade mqtt-licensing (the file was left as it is)",
            )
        elif version != STATE_VERSION:
            raise ValueError(f"unknown state file version {version!r}")
        source = data.get("source")
        state = cls(
            trial_started_at=data.get("trial_started_at"),
            last_seen=data.get("last_seen"),
            clock_tampered=bool(data.get("clock_tampered", False)),
            source=source,
            alarms=data.get("alarms") if isinstance(data.get("alarms"), list) else None,
            stepped_back=data.get("stepped_back", 0),
            usage_high_water=data.get("usage_high_water", 0),
            vendor_key_documents=_strings(data.get("vendor_key_documents")),
            from_config=data.get("from_config") if isinstance(data.get("from_config"), dict) else None,
            sealed=sealed,
        )
        state._check()
        return state

    def _check(self) -> None:
        state, source = self, self.source
        if not isinstance(state.trial_started_at, int):
            raise ValueError("trial_started_at is not an integer")
        if state.last_seen is not None and not isinstance(state.last_seen, int):
            raise ValueError("last_seen is not an integer")
        for name in ("stepped_back", "usage_high_water"):
            value = getattr(state, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} is not a non-negative integer")
        if source is not None and not (isinstance(source, dict) and isinstance(source.get("model"), str)):
            raise ValueError("the source section names no model")


def upgrade_v1_to_v2(v1: dict[str, Any]) -> dict[str, Any]:
    """Version 1 kept 14 flat fields shared by all models; version 2 gives the current source its
    own section. Pure: the documents are re-verified when the agent loads the result."""
    certificate = v1.get("certificate")
    features = v1.get("floating_features") or []
    server_url = v1.get("server_url")
    source: dict[str, Any] | None
    if v1.get("lease") or (features and server_url):
        source = {
            "model": str(LicenseModel.FLOATING),
            "server_url": server_url,
            "features": features,
            "lease": v1.get("lease"),
            "last_ok_at": v1.get("last_checkin_ok_at"),
            "failing_since": v1.get("checkin_failing_since"),
            "last_error": v1.get("last_error"),
        }
    elif certificate and _certificate_model(certificate) == LicenseModel.ONLINE:
        source = {
            "model": str(LicenseModel.ONLINE),
            "certificate": certificate,
            "server_url": server_url,
            "vendor_verdict": v1.get("vendor_verdict"),
            "last_checkin_ok_at": v1.get("last_checkin_ok_at"),
            "checkin_failing_since": v1.get("checkin_failing_since"),
            "last_error": v1.get("last_error"),
        }
    elif certificate or v1.get("pending_offline") or v1.get("deactivation_code"):
        source = {
            "model": str(LicenseModel.OFFLINE),
            "certificate": certificate,
            "pending": v1.get("pending_offline"),
            "superseded_nonces": v1.get("superseded_nonces") or [],
            "deactivation_code": v1.get("deactivation_code"),
        }
    else:
        source = None
    return {
        "trial_started_at": v1.get("trial_started_at"),
        "last_seen": v1.get("last_seen"),
        "clock_tampered": v1.get("clock_tampered", False),
        "source": source,
    }


def upgrade_v2_to_v3(v2: dict[str, Any]) -> dict[str, Any]:
    """Version 3 adds the clock's accumulated steps back (none known before) and the MAC, which
    the next save writes."""
    return {**v2, "stepped_back": 0}


def upgrade_v3_to_v4(v3: dict[str, Any]) -> dict[str, Any]:
    """Version 4 adds what the agent remembers of the config's license (none known before: the
    standing order is recorded at the next start, so a key changed across this upgrade is not
    taken for a changed key)."""
    return {**v3, "from_config": None}


class StateTampered(ValueError):
    """state.json does not match its MAC: it was edited, or belongs to another identity key."""


def mac_key(identity: Ed25519PrivateKey) -> bytes:
    """The key state.json's MAC is made with, derived from (never equal to) the identity key."""
    raw = identity.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_MAC_INFO).derive(raw)


def _mac(key: bytes, content: dict[str, Any]) -> str:
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key, canonical, hashlib.sha256).hexdigest()


def _certificate_model(text: Any) -> str | None:
    """The model a stored certificate claims, read without trusting it (it is verified on load)."""
    try:
        env = parse_envelope(unb64(text))
        return ActivationCertificate.from_body(env.unverified_body()).model
    except (LicensingError, ValueError, TypeError, KeyError):
        return None


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

    def load(self, now: int, key: bytes) -> tuple[StoredState, list[LicensingError]]:
        """Return the stored state (or a fresh one) and the problems found reading it.

        ``key``: :func:`mac_key` of this instance's identity.

        A file from a newer version raises ``STATE_TOO_NEW`` and stays where it is: moving it
        aside would cost its license and the trial, and the newer version may come back."""
        if not self.state_path.exists():
            return StoredState(trial_started_at=now), []
        try:
            return StoredState.from_json(self.state_path.read_bytes(), key), []
        except (ValueError, TypeError, OSError) as exc:
            return StoredState(trial_started_at=0), [self.set_aside(exc)]

    def set_aside(self, exc: Exception) -> LicensingError:
        """Move an unreadable or edited state.json aside; return the problem to report."""
        aside = self.state_path.with_name(f"state.json.corrupt-{int(time.time())}")
        try:
            os.replace(self.state_path, aside)
        except OSError:
            aside = self.state_path
        log.error("license state file unreadable (%s); moved to %s", exc, aside)
        # A damaged or edited file must not buy a fresh evaluation period: the trial counts as used.
        why = "had been edited or came from another instance" if isinstance(exc, StateTampered) else "was unreadable"
        return LicensingError(
            ErrorCode.STATE_CORRUPT,
            f"the license state file {why} and was moved to {aside.name}; activate the license again",
        )

    def save(self, state: StoredState, key: bytes) -> None:
        self.write(state.to_json(key))

    def write(self, data: bytes) -> None:
        """Replace state.json atomically with ``data`` (one writer at a time: the agent serialises calls)."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(self.state_path, data)
