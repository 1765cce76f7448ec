"""The trial marker: a second record of the evaluation period, outside the state folder.

Deleting the state folder (or only ``state.json``) must not buy a fresh trial. The marker is a
small JSON file per host (``trial_marker`` in the broker config, else the environment variable
``MQTT_LICENSING_TRIAL_MARKER``, else ``/var/lib/mqtt-licensing/trial.json`` for root and
``~/.local/state/mqtt-licensing/trial.json`` for anyone else) holding the earliest trial start
any instance on this host recorded, and the fingerprints of instances whose state.json is sealed
with a MAC (so a sealed file rewritten in the old unsealed format is caught).

It raises the bar, it is no wall: whoever may delete the state folder may usually delete this
file too (README, "What a local trial can and cannot resist").
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import ErrorCode, LicensingError
from .statefile import StateStore, StateTampered, StoredState, atomic_write

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
        sealed = data.get("sealed")
        return cls(
            started if isinstance(started, int) and not isinstance(started, bool) else None,
            [s for s in sealed if isinstance(s, str)] if isinstance(sealed, list) else [],
        )

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        body = {"version": 1, "trial_started_at": self.trial_started_at, "sealed": sorted(set(self.sealed))}
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
    known = [t for t in (trial_started_at, marker.trial_started_at) if t is not None]
    started = 0 if downgrade else min(known)
    try:
        TrialMarker(started, [*marker.sealed, fingerprint]).write(path)
    except OSError as exc:
        problem = LicensingError(
            ErrorCode.TRIAL_MARKER_UNWRITABLE,
            f"the trial marker {path} cannot be written ({exc.strerror or exc}); set trial_marker in the "
            f"broker config (or {MARKER_ENV}) to a writable file outside the state folder",
        )
        return Reconciled(0 if fresh and marker.trial_started_at is None else started, downgrade, problem)
    return Reconciled(started, downgrade, None)


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
    stored.trial_started_at = marked.trial_started_at
    return stored, problems


__all__ = ["MARKER_ENV", "Reconciled", "TrialMarker", "load_checked", "marker_path", "reconcile"]
