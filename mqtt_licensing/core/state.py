"""The agent's license state machine, as pure functions of facts and time.

The agent persists *facts* (when the trial started, the verified certificate or
lease it holds, how check-ins went, what the clock last said). The *state* is
never stored: :func:`evaluate` derives it from the facts and ``now``, so a
restart, a missed timer or a clock jump can never leave a stale state behind.

    trial --activate--> active <--check-in fails / succeeds--> grace --deadline--> expired
      |                   |
      +--2 h--> unlicensed +--vendor says so--> revoked / suspended / expired

    pending_offline: an offline request is outstanding and nothing else serves (a held
                     license or the running trial keeps serving while a request is pending)
    clock_tampered:  the clock ran back; not serving until an online check-in succeeds
    floating:        active while the lease holds, unlicensed once it has expired
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from .documents import ActivationCertificate, FloatingCertificate, Lease
from .features import MQTT_SERVER, Feature, baseline


class LicenseState(StrEnum):
    TRIAL = "trial"
    ACTIVE = "active"
    GRACE = "grace"
    EXPIRED = "expired"
    UNLICENSED = "unlicensed"
    PENDING_OFFLINE = "pending_offline"
    SUSPENDED = "suspended"
    REVOKED = "revoked"
    CLOCK_TAMPERED = "clock_tampered"


SERVING_STATES = frozenset({LicenseState.TRIAL, LicenseState.ACTIVE, LicenseState.GRACE})

TRIAL_MAX_SECONDS = 2 * 3600
TRIAL_MAX_CONNECTIONS = 25
# A wider tolerance would let the clock be set back by days without a mark.
MAX_CLOCK_TOLERANCE = 3600


@dataclass(frozen=True)
class Limits:
    """Operator-tunable limits. The trial may only be made shorter or smaller."""

    trial_seconds: int = TRIAL_MAX_SECONDS
    trial_max_connections: int = TRIAL_MAX_CONNECTIONS
    clock_tolerance: int = 300

    def __post_init__(self) -> None:
        if not 0 <= self.trial_seconds <= TRIAL_MAX_SECONDS:
            raise ValueError(f"trial_seconds must be between 0 and {TRIAL_MAX_SECONDS}")
        if not 0 <= self.trial_max_connections <= TRIAL_MAX_CONNECTIONS:
            raise ValueError(f"trial_max_connections must be between 0 and {TRIAL_MAX_CONNECTIONS}")
        if not 0 <= self.clock_tolerance <= MAX_CLOCK_TOLERANCE:
            raise ValueError(f"clock_tolerance must be between 0 and {MAX_CLOCK_TOLERANCE} seconds")


@dataclass(frozen=True)
class Facts:
    """Everything the agent knows about its license. Documents here are already verified."""

    trial_started_at: int
    certificate: ActivationCertificate | None = None
    lease: Lease | None = None
    floating_certificate: FloatingCertificate | None = None
    vendor_verdict: str | None = None  # "revoked" | "suspended" | "expired" | "cloned" | "released": the server said so
    checkin_failing_since: int | None = None
    pending_offline_at: int | None = None
    clock_tampered: bool = False
    # A vendor-signed heartbeat ack's valid_until: extends the certificate's (heartbeats refresh no certificate).
    valid_until: int | None = None


@dataclass(frozen=True)
class Evaluation:
    state: LicenseState
    reason: str
    features: tuple[str, ...] = ()
    max_connections: int | None = None
    deadline: int | None = None  # when the current state ends by itself, if it does
    model: str | None = None
    support_until: int | None = None
    expires_at: int | None = None
    overage: float = 0.0  # the license's headroom past max_connections (0..1), see gate.connection_ceiling
    # The granted features' definitions (signed in the certificate) and what every non-admin client
    # needs; precomputed here so that a CONNECT never resolves anything.
    definitions: tuple[Feature, ...] = ()
    baseline: frozenset[str] = frozenset({MQTT_SERVER})

    @property
    def serving(self) -> bool:
        return self.state in SERVING_STATES

    @property
    def serves_clients(self) -> bool:
        """Whether the license's features let any non-admin client connect (the trial always does)."""
        return self.model == "trial" or self.baseline <= set(self.features)

    def definition(self, name: str) -> Feature | None:
        return next((d for d in self.definitions if d.name == name), None)


def _granted(table: dict[str, Feature], features: tuple[str, ...]) -> tuple[tuple[Feature, ...], frozenset[str]]:
    granted = {name: table[name] for name in sorted(features) if name in table}
    return tuple(granted.values()), baseline(granted)


def observe_clock(last_seen: int | None, now: int, tolerance: int) -> tuple[int, bool]:
    """Return (the new high-water mark, whether the clock ran back beyond tolerance)."""
    if last_seen is None:
        return now, False
    return max(last_seen, now), now < last_seen - tolerance


def evaluate(facts: Facts, now: int, limits: Limits) -> Evaluation:
    if facts.clock_tampered:
        return Evaluation(
            LicenseState.CLOCK_TAMPERED,
            "the system clock ran backwards; an online check-in is needed to trust it again",
        )
    if facts.vendor_verdict in ("revoked", "suspended"):
        state = LicenseState.REVOKED if facts.vendor_verdict == "revoked" else LicenseState.SUSPENDED
        return Evaluation(state, f"the license server reports this license as {facts.vendor_verdict}")
    if facts.vendor_verdict == "cloned":
        return Evaluation(
            LicenseState.SUSPENDED,
            "the license server suspended this activation: another instance uses it too (a copied state "
            "folder); the vendor can free it for one instance to activate again",
        )
    if facts.vendor_verdict == "expired":
        return Evaluation(LicenseState.EXPIRED, "the license server reports this license as expired")

    if facts.lease is not None and facts.floating_certificate is not None:
        return _evaluate_lease(facts.lease, facts.floating_certificate, now)

    cert = facts.certificate
    if cert is not None:
        return _evaluate_certificate(cert, facts, now)

    # A pending offline request never stops what serves: the trial runs on until it ends.
    trial_end = facts.trial_started_at + limits.trial_seconds
    if now < trial_end:
        pending = facts.pending_offline_at is not None
        return Evaluation(
            LicenseState.TRIAL,
            "evaluation: an offline request is waiting for its usage license"
            if pending
            else "evaluation: no license activated yet",
            max_connections=limits.trial_max_connections,
            deadline=trial_end,
            model="trial",
        )
    if facts.pending_offline_at is not None:
        return Evaluation(
            LicenseState.PENDING_OFFLINE,
            "the evaluation period is over and an offline request is waiting for its usage license",
        )
    return Evaluation(LicenseState.UNLICENSED, "no license is active and the evaluation period is over")


# The one status line of an instance whose activation the vendor released (it was silent longer
# than the license's release_after) while every other activation is in use.
RELEASED_WHY = "the vendor released this activation (no heartbeat reached it in time) and no activation is free"
RELEASED_GRACE = RELEASED_WHY + ": serving until the deadline, then stopping; free one to activate again"
RELEASED_STOPPED = RELEASED_WHY + ": not serving; it activates again by itself once one is free"


def _evaluate_certificate(cert: ActivationCertificate, facts: Facts, now: int) -> Evaluation:
    licensed = Evaluation(
        LicenseState.ACTIVE,
        "licensed",
        features=cert.features,
        max_connections=cert.max_connections,
        model=cert.model,
        support_until=cert.support_until,
        expires_at=cert.expires_at,
        overage=cert.overage,
    )
    definitions, needed = _granted(cert.feature_table(), cert.features)
    licensed = replace(licensed, definitions=definitions, baseline=needed)
    if cert.expires_at is not None and now >= cert.expires_at:
        return replace(licensed, state=LicenseState.EXPIRED, reason="the license term has ended")
    valid_until = cert.valid_until
    if valid_until is not None and facts.valid_until is not None:
        valid_until = max(valid_until, facts.valid_until)
    deadline = min((t for t in (valid_until, cert.expires_at) if t is not None), default=None)
    if facts.vendor_verdict == "released":
        if deadline is not None and now >= deadline:
            return replace(licensed, state=LicenseState.UNLICENSED, reason=RELEASED_STOPPED)
        return replace(licensed, state=LicenseState.GRACE, reason=RELEASED_GRACE, deadline=deadline)
    if valid_until is not None and now >= valid_until:
        return replace(
            licensed, state=LicenseState.EXPIRED, reason="the activation was not refreshed before its valid_until"
        )
    if facts.checkin_failing_since is not None:
        return replace(
            licensed,
            state=LicenseState.GRACE,
            reason="the license server cannot be reached; serving until the deadline",
            deadline=deadline,
        )
    return replace(licensed, deadline=deadline)


def _evaluate_lease(lease: Lease, cert: FloatingCertificate, now: int) -> Evaluation:
    licensed = Evaluation(
        LicenseState.ACTIVE,
        "licensed by a floating lease",
        features=lease.features,
        max_connections=cert.max_connections,
        model="floating",
        support_until=cert.support_until,
        expires_at=cert.expires_at,
        overage=cert.overage,
    )
    definitions, needed = _granted(cert.feature_table(), lease.features)
    licensed = replace(licensed, definitions=definitions, baseline=needed)
    if cert.expires_at is not None and now >= cert.expires_at:
        return replace(licensed, state=LicenseState.EXPIRED, reason="the floating license term has ended")
    if now >= lease.expires_at:
        return replace(
            licensed, state=LicenseState.UNLICENSED, reason="the floating lease expired and could not be renewed yet"
        )
    return replace(licensed, deadline=lease.expires_at)


__all__ = [
    "MAX_CLOCK_TOLERANCE",
    "SERVING_STATES",
    "Evaluation",
    "Facts",
    "LicenseState",
    "Limits",
    "evaluate",
    "observe_clock",
]
