"""Alarms: trouble the operator should hear about before a license stops serving.

:func:`evaluate_alarms` is pure: the facts, the evaluation, the connection count and ``now`` give
the set of alarms that should be active. :class:`AlarmBoard` keeps the active ones (persisted in
state.json so a restart raises nothing twice), turns a change of the set into ``alarm_raised`` /
``alarm_cleared`` events, and holds those events until the board has been saved.

An alarm with thresholds (``license_expiring`` at 30, 7 and 1 days) carries a ``level``: crossing
the next threshold raises it again with the new level; staying inside one raises nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from ..core.gate import connection_ceiling
from ..core.models import LicenseModel
from ..core.state import Evaluation, Facts, LicenseState
from ..core.timefmt import iso

log = logging.getLogger(__name__)

DAY = 86400

WARNING = "warning"
CRITICAL = "critical"

# Every alarm code the agent raises (docs/monitoring.md lists them with their causes).
ALARM_CODES = (
    "license_expiring",
    "support_expiring",
    "check_in_failing",
    "grace_ending",
    "lease_at_risk",
    "no_seat",
    "connection_quota_high",
    "connection_quota_reached",
    "clock_tampered",
    "offline_request_pending",
    "no_serving_feature",
)


@dataclass(frozen=True)
class AlarmSettings:
    """Thresholds (the agent config's ``alarm_*`` fields)."""

    expiry_days: tuple[int, ...] = (30, 7, 1)
    support_days: tuple[int, ...] = (30,)
    quota_high: float = 0.80  # raised at or above this share of the licensed connections
    quota_clear: float = 0.75  # and cleared at or below this one (hysteresis: no flapping)
    grace_ending_seconds: int = DAY
    offline_pending_seconds: int = DAY


@dataclass(frozen=True)
class Alarm:
    code: str
    severity: str
    message: str
    deadline: int | None = None
    level: str = ""  # which threshold: a new level is a new raise


@dataclass(frozen=True)
class AlarmInputs:
    evaluation: Evaluation
    facts: Facts
    connections: int  # non-admin connections now
    lease_error: str | None = None  # error code of the last failed attempt to lease a seat


def evaluate_alarms(
    inputs: AlarmInputs, now: int, settings: AlarmSettings, active: frozenset[str] = frozenset()
) -> dict[str, Alarm]:
    """The alarms that should be active now. ``active``: the codes active before (for hysteresis)."""
    ev, facts = inputs.evaluation, inputs.facts
    found: list[Alarm | None] = [
        _countdown("license_expiring", "the license term ends", ev.expires_at, now, settings.expiry_days),
        _countdown("support_expiring", "support ends", ev.support_until, now, settings.support_days, critical=False),
    ]
    floating = ev.model == LicenseModel.FLOATING or facts.lease is not None
    if ev.state == LicenseState.GRACE and facts.checkin_failing_since is not None:
        found.append(
            Alarm(
                "check_in_failing",
                WARNING,
                # "since" is the last answer; the first failed check-in can be a whole interval later.
                f"the license server has not answered since {iso(_last_answer(facts))} (check-ins fail since "
                f"{iso(facts.checkin_failing_since)}); serving until {iso(ev.deadline)}",
                ev.deadline,
            )
        )
        if ev.deadline is not None and ev.deadline - now <= settings.grace_ending_seconds:
            found.append(
                Alarm("grace_ending", CRITICAL, f"grace ends at {iso(ev.deadline)}: check the vendor link", ev.deadline)
            )
    lease = facts.lease
    if floating and lease is not None and facts.checkin_failing_since is not None and now < lease.expires_at:
        found.append(
            Alarm(
                "lease_at_risk",
                CRITICAL,
                f"floating lease renewals fail since {iso(facts.checkin_failing_since)}; the lease ends at "
                f"{iso(lease.expires_at)}",
                lease.expires_at,
            )
        )
    if inputs.lease_error == "no_seats" and (lease is None or now >= lease.expires_at):
        found.append(Alarm("no_seat", CRITICAL, "the floating server has no free seat for this broker"))
    found.extend(_quota(ev, inputs.connections, settings, active))
    if ev.serving and not ev.serves_clients:
        missing = ", ".join(sorted(ev.baseline - set(ev.features)))
        found.append(
            Alarm(
                "no_serving_feature",
                CRITICAL,
                f"the license grants no feature that lets a client connect (it lacks {missing}): every non-admin "
                "client is refused; ask the vendor to add it",
            )
        )
    if facts.clock_tampered:
        found.append(
            Alarm("clock_tampered", CRITICAL, "the system clock ran backwards; an online check-in must trust it again")
        )
    pending = facts.pending_offline_at
    if pending is not None and now - pending >= settings.offline_pending_seconds:
        found.append(
            Alarm(
                "offline_request_pending",
                WARNING,
                f"the offline request of {iso(pending)} has not been answered with a usage license",
            )
        )
    return {a.code: a for a in found if a is not None}


def _countdown(
    code: str, what: str, at: int | None, now: int, days: tuple[int, ...], *, critical: bool = True
) -> Alarm | None:
    if at is None or now >= at or not days:
        return None
    left = at - now
    crossed = [d for d in days if left <= d * DAY]
    if not crossed:
        return None
    threshold = min(crossed)
    severity = CRITICAL if critical and threshold <= 1 else WARNING
    within = f"{threshold} day" if threshold == 1 else f"{threshold} days"
    return Alarm(code, severity, f"{what} at {iso(at)} (within {within})", at, f"{threshold}d")


def _last_answer(facts: Facts) -> int | None:
    """When the license server last answered: the current certificate is its latest answer."""
    cert = facts.certificate
    return cert.issued_at if cert is not None else facts.checkin_failing_since


def _quota(ev: Evaluation, connections: int, settings: AlarmSettings, active: frozenset[str]) -> list[Alarm]:
    limit = ev.max_connections
    if not limit or not ev.serving:
        return []
    out = []
    share = connections / limit
    if share >= settings.quota_high or ("connection_quota_high" in active and share > settings.quota_clear):
        out.append(
            Alarm(
                "connection_quota_high",
                WARNING,
                f"at least {settings.quota_high:.0%} of the {limit} licensed connections are in use",
            )
        )
    if connections >= limit:
        out.append(
            Alarm(
                "connection_quota_reached",
                CRITICAL,
                f"all {limit} licensed connections are in use: " + _past_the_cap(ev),
            )
        )
    return out


def _past_the_cap(ev: Evaluation) -> str:
    ceiling = connection_ceiling(ev)
    if ceiling is not None and ev.max_connections is not None and ceiling > ev.max_connections:
        return f"the license's overage admits up to {ceiling}, then new clients are refused"
    return "new clients are refused"


@dataclass
class _Active:
    alarm: Alarm
    since: int

    def to_json(self) -> dict[str, Any]:
        a = self.alarm
        return {
            "code": a.code,
            "severity": a.severity,
            "since": self.since,
            "deadline": a.deadline,
            "message": a.message,
            "level": a.level,
        }


@dataclass
class AlarmBoard:
    """The active alarms and the events announcing their changes (released once saved)."""

    active: dict[str, _Active] = field(default_factory=dict)
    pending: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: Any) -> AlarmBoard:
        """The alarms state.json kept; anything unreadable is dropped (it is raised again if still true)."""
        board = cls()
        for item in data if isinstance(data, list) else []:
            try:
                alarm = Alarm(
                    str(item["code"]),
                    str(item["severity"]),
                    str(item["message"]),
                    item.get("deadline"),
                    str(item.get("level", "")),
                )
                board.active[alarm.code] = _Active(alarm, int(item["since"]))
            except (KeyError, TypeError, ValueError):
                continue
        return board

    def to_json(self) -> list[dict[str, Any]]:
        return [a.to_json() for a in self.active.values()]

    def codes(self) -> frozenset[str]:
        return frozenset(self.active)

    def update(self, alarms: dict[str, Alarm], now: int) -> bool:
        """Take the alarms that should be active now; queue an event per change. True if any."""
        changed = False
        for code in [c for c in self.active if c not in alarms]:
            gone = self.active.pop(code)
            self.pending.append(
                {"type": "alarm_cleared", "code": code, "since": iso(gone.since), "severity": gone.alarm.severity}
            )
            changed = True
        for code, alarm in alarms.items():
            held = self.active.get(code)
            if held is not None and held.alarm.level == alarm.level:
                held.alarm = alarm  # the message may name a new count or deadline: shown, not announced
                continue
            self.active[code] = _Active(alarm, now)
            self.pending.append({"type": "alarm_raised", **self._shown(self.active[code])})
            changed = True
        return changed

    def take_events(self) -> list[dict[str, Any]]:
        events, self.pending = self.pending, []
        return events

    def status(self) -> list[dict[str, Any]]:
        """The status document's ``alarms``: most severe first, then oldest first."""
        ranked = sorted(self.active.values(), key=lambda a: (a.alarm.severity != CRITICAL, a.since, a.alarm.code))
        return [self._shown(a) for a in ranked]

    @staticmethod
    def _shown(active: _Active) -> dict[str, Any]:
        a = active.alarm
        return {
            "code": a.code,
            "severity": a.severity,
            "since": iso(active.since),
            "deadline": iso(a.deadline),
            "message": a.message,
        }


class Alarms:
    """The alarm duty: the config's thresholds and the board of active alarms (state.json keeps the board)."""

    def __init__(self, settings: AlarmSettings) -> None:
        self.settings = settings
        self.board = AlarmBoard()

    def restore(self, data: Any) -> None:
        self.board = AlarmBoard.from_json(data)

    def update(self, inputs: AlarmInputs, now: int) -> None:
        self.board.update(evaluate_alarms(inputs, now, self.settings, self.board.codes()), now)

    @property
    def pending(self) -> bool:
        """Events wait for the next save (announced once on disk: a restart raises none twice)."""
        return bool(self.board.pending)


def log_alarm(event: dict[str, Any]) -> None:
    """One log line per alarm change: a raise is a warning, a clear is news."""
    if event["type"] == "alarm_raised":
        log.warning("alarm raised %s (%s): %s", event["code"], event["severity"], event["message"])
    else:
        log.info("alarm cleared %s (raised %s)", event["code"], event["since"])


__all__ = [
    "ALARM_CODES",
    "CRITICAL",
    "WARNING",
    "Alarm",
    "AlarmBoard",
    "AlarmInputs",
    "AlarmSettings",
    "Alarms",
    "evaluate_alarms",
    "log_alarm",
]
