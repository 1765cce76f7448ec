"""The trial marker: a second record of the evaluation period, outside the state folder.

Deleting the state folder (or only ``state.json``) must not buy a fresh trial. The marker is a
small JSON file per host (``trial_marker`` in the broker config, else the environment variable
``MQTT_LICENSING_TRIAL_MARKER``, else ``/var/lib/mqtt-licensing/trial.json`` for root and
``~/.local/state/mqtt-licensing/trial.json`` for anyone else) holding the earliest trial start
any instance on this host recorded, the fingerprints of instances whose state.json is sealed
with a MAC (so a sealed file rewritten in the old unsealed format is caught), and the activations
each instance gave up with an offline deactivation code (so a state.json restored from a backup
taken before the deactivation is refused at load: the code may already have freed the activation
at the vendor for another broker). An instance whose own state.json was damaged or edited is
listed under ``trial_used``: that costs its trial, never the host's (the host-wide start only
ever holds a real start time).

It raises the bar, it is no wall: whoever may delete the state folder may usually delete this
file too (README, "What a local trial can and cannot resist").
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._atomic import atomic_write
from ..core.documents import ActivationCertificate
from ..core.errors import ErrorCode, LicensingError
from ..core.signing import parse_envelope, unb64
from .statefile import StateStore, StateTampered, StoredState

log = logging.getLogger(__name__)

MARKER_ENV = "MQTT_LICENSING_TRIAL_MARKER"


def marker_path(configured: str | None) -> Path:
    if configured:
        return Path(configured).expanduser()
    if os.environ.get(MARKER_ENV):
        return Path(os.environ[MARKER_ENV]).expanduser()
    if os.geteuid() == 0:
        return Path("/var/lib/mqtt-licensing/trial.json")
    return Path("~/.local/state/mqtt-licensing/trial.json").expanduser()


@dataclass
class TrialMarker:
    trial_started_at: int | None = None
    sealed: list[str] = field(default_factory=list)
    deactivated: list[str] = field(default_factory=list)  # "<fingerprint>:<activation id>"
    trial_used: list[str] = field(default_factory=list)  # fingerprints whose state.json was damaged

    @classmethod
    def read(cls, path: Path) -> TrialMarker:
        """The marker, or an empty one (missing, or not ours: it is rewritten whole)."""
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError):
            return cls()
        if not isinstance(data, dict):
            return cls()
        started = data.get("trial_started_at")
        lists = [data.get(k) for k in ("sealed", "deactivated", "trial_used")]
        # 0 was written by older versions for a damaged state.json: never a real start.
        real = isinstance(started, int) and not isinstance(started, bool) and started > 0
        return cls(
            started if real else None,
            *([v for v in x if isinstance(v, str)] if isinstance(x, list) else [] for x in lists),
        )

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        body = {
            "version": 1,
            "trial_started_at": self.trial_started_at,
            "sealed": sorted(set(self.sealed)),
            "deactivated": sorted(set(self.deactivated)),  # readers before it ignore the key
            "trial_used": sorted(set(self.trial_used)),
        }
        atomic_write(path, json.dumps(body, indent=1).encode())


@dataclass(frozen=True)
class Reconciled:
    trial_started_at: int
    unsealed_downgrade: bool  # this instance wrote a sealed state.json, and now it is unsealed
    problem: LicensingError | None


def reconcile(path: Path, *, trial_started_at: int, fingerprint: str, sealed: bool, fresh: bool) -> Reconciled:
    """Merge the state file's trial start with the marker's (the earliest wins) and record this
    instance in the marker. ``fresh``: no state file existed; ``sealed``: it carried a MAC.

    Blocking file I/O. A marker that cannot be written costs a *fresh* state its trial: else
    making the path unwritable would be the way around it."""
    marker = TrialMarker.read(path)
    downgrade = not fresh and not sealed and fingerprint in marker.sealed
    # A damaged state.json (start 0) uses up this instance's trial, also after the folder is deleted;
    # the host-wide start keeps only real start times, so other instances keep theirs.
    used = downgrade or trial_started_at <= 0 or fingerprint in marker.trial_used
    real = [t for t in (trial_started_at, marker.trial_started_at) if t is not None and t > 0]
    started = 0 if used else min(real)
    used_list = [*marker.trial_used, fingerprint] if used else marker.trial_used
    try:
        host = TrialMarker(min(real) if real else None, [*marker.sealed, fingerprint], marker.deactivated, used_list)
        host.write(path)
    except OSError as exc:
        problem = _unwritable(path, exc)
        return Reconciled(0 if fresh and marker.trial_started_at is None else started, downgrade, problem)
    return Reconciled(started, downgrade, None)


def _unwritable(path: Path, exc: OSError) -> LicensingError:
    return LicensingError(
        ErrorCode.TRIAL_MARKER_UNWRITABLE,
        f"the trial marker {path} cannot be written ({exc.strerror or exc}); set trial_marker in the "
        f"broker config (or {MARKER_ENV}) to a writable file outside the state folder",
    )


def record_deactivation(configured_marker: str | None, fingerprint: str, activation_id: str) -> None:
    """Remember that this instance gave ``activation_id`` up, before its deactivation code is shown.

    Blocking file I/O. Raises TRIAL_MARKER_UNWRITABLE: no code is handed out unrecorded, else an
    unwritable marker would be the way to keep a restored license serving."""
    path = marker_path(configured_marker)
    marker = TrialMarker.read(path)
    marker.deactivated.append(f"{fingerprint}:{activation_id}")
    try:
        marker.write(path)
    except OSError as exc:
        raise _unwritable(path, exc) from None


def _held_activation(source: dict[str, Any] | None) -> str | None:
    """The activation id a stored source's certificate claims, read without trusting it (the
    source verifies it on load; a forged one is refused there anyway)."""
    if not source or not source.get("certificate"):
        return None
    try:
        body = parse_envelope(unb64(source["certificate"])).unverified_body()
        return ActivationCertificate.from_body(body).activation_id
    except (LicensingError, ValueError, TypeError, KeyError):
        return None


def _given_up(path: Path, fingerprint: str, source: dict[str, Any] | None) -> LicensingError | None:
    held = _held_activation(source)
    if held is None or f"{fingerprint}:{held}" not in TrialMarker.read(path).deactivated:
        return None
    return LicensingError(
        ErrorCode.DEACTIVATED,
        f"state.json holds activation {held}, which this instance gave up with a deactivation code "
        "(the folder was restored from a backup); the license was dropped: activate it again",
    )


def load_checked(
    store: StateStore, key: bytes, fingerprint: str, configured_marker: str | None, now: int
) -> tuple[StoredState, list[LicensingError]]:
    """state.json (see :meth:`StateStore.load`), checked against the trial marker. Blocking I/O."""
    fresh = not store.state_path.exists()
    stored, problems = store.load(now, key)
    marked = reconcile(
        marker_path(configured_marker),
        trial_started_at=stored.trial_started_at,
        fingerprint=fingerprint,
        sealed=stored.sealed,
        fresh=fresh,
    )
    if marked.unsealed_downgrade:
        problems.append(store.set_aside(StateTampered("a sealed state.json was rewritten unsealed")))
        stored = StoredState(trial_started_at=0)
    if marked.problem is not None:
        log.error("%s", marked.problem.message)
        problems.append(marked.problem)
    restored = _given_up(marker_path(configured_marker), fingerprint, stored.source)
    if restored is not None:
        log.error("%s", restored.message)
        problems.append(restored)
        stored.source = None
    stored.trial_started_at = marked.trial_started_at
    return stored, problems


__all__ = ["MARKER_ENV", "Reconciled", "TrialMarker", "load_checked", "marker_path", "reconcile", "record_deactivation"]
