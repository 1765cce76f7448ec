"""The filters of the servers' lists (``vendor activations``, ``floating status`` and their admin
API routes), read once from CLI flags or query parameters into a frozen value.

A vendor with ten thousand brokers does not read a list of ten thousand lines: they ask for the
brokers named like "line-7", the ones silent for more than two hours, the ones a license holds,
the ones the release duty took back, and the first hundred of them. Every mistake is one typed
error (``invalid_field``, or ``bad_request`` for a parameter nobody knows, so a typo never
silently lists everything).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .errors import ErrorCode, LicensingError
from .instance_label import MAX_LENGTH

# What an activation is: live, freed by someone (deactivated, the vendor, the customer, an offline
# deactivation code), or released by the release duty after its broker went silent.
STATUSES = ("active", "freed", "released")

DEFAULT_LIMIT = 100  # rows a list shows unless told otherwise: the count line says how many matched
MAX_LIMIT = 10_000  # at most per answer of the admin API; `after` pages through the rest
MAX_DURATION = 10 * 366 * 86400

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PART = re.compile(r"(\d+)([smhdw])")
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _invalid(name: str, message: str) -> LicensingError:
    return LicensingError(ErrorCode.INVALID_FIELD, f"{name} {message}".strip())


def parse_duration(text: str, name: str = "silent_for") -> int:
    """Seconds of ``90s``, ``45m``, ``2h``, ``3d``, ``1w``, ``1d12h`` or plain seconds."""
    value = text.strip().lower()
    if value.isdigit():
        seconds = int(value)
    else:
        parts = _PART.findall(value)
        if not parts or "".join(n + u for n, u in parts) != value:
            raise _invalid(name, f"must be a duration like 90s, 45m, 2h, 3d or 1d12h (got {value[:40]!r})")
        seconds = sum(int(n) * _UNITS[u] for n, u in parts)
    if not 0 < seconds <= MAX_DURATION:
        raise _invalid(name, "must be more than 0 seconds and at most ten years")
    return seconds


def duration_text(seconds: int) -> str:
    """``2h``, ``3d``, ``1d12h``: the shortest way :func:`parse_duration` reads back."""
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out += f"{seconds // size}{unit}"
            seconds %= size
    return out or "0s"


def parse_label(text: str, name: str = "label") -> str:
    """A label filter: a non-empty piece of a label (matched anywhere, in any case)."""
    value = text.strip()
    if not value or len(value) > MAX_LENGTH:
        raise _invalid(name, f"must be 1 to {MAX_LENGTH} characters")
    return value


def parse_limit(text: str, name: str = "limit", *, zero_is_all: bool = False) -> int | None:
    """Rows to show: 1..MAX_LIMIT per answer of an API; on the CLI (``zero_is_all``) any number,
    0 meaning all of them (None)."""
    value = text.strip()
    if not value.isdigit() or (not zero_is_all and not 1 <= int(value) <= MAX_LIMIT):
        raise _invalid(name, "must be a number, 0 for all" if zero_is_all else f"must be 1 to {MAX_LIMIT}")
    return int(value) or None


def parse_statuses(text: str, name: str = "status") -> tuple[str, ...]:
    """``active``, ``freed``, ``released`` or several, comma-separated."""
    wanted = tuple(dict.fromkeys(s.strip().lower() for s in text.split(",") if s.strip()))
    unknown = [s for s in wanted if s not in STATUSES]
    if not wanted or unknown:
        raise _invalid(name, f"must be {', '.join(STATUSES)} (or several, comma-separated)")
    return wanted


def parse_id(text: str, name: str) -> str:
    value = text.strip()
    if not _ID.match(value):
        raise _invalid(name, "must be an id (letters, digits, _ and -)")
    return value


@dataclass(frozen=True)
class ActivationFilter:
    """Which activations a list shows, in the one stable order (created, then id)."""

    license_id: str | None = None
    label: str | None = None  # a piece of its label, or of one it had
    silent_for: int | None = None  # seconds with no check-in, heartbeat or activation
    statuses: tuple[str, ...] = ("active",)
    limit: int | None = DEFAULT_LIMIT  # None: all
    after: str | None = None  # the last activation id of the previous page

    @classmethod
    def from_query(cls, params: Mapping[str, str]) -> ActivationFilter:
        """From the admin API's query parameters. ``include_freed`` is the older way of saying
        every status; it and ``status`` together are refused as contradictory."""
        known = {"license_id", "label", "silent_for", "status", "limit", "after", "include_freed"}
        unknown = sorted(set(params) - known)
        if unknown:
            raise LicensingError(
                ErrorCode.BAD_REQUEST, f"unknown parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        if "status" in params and "include_freed" in params:
            raise LicensingError(ErrorCode.BAD_REQUEST, "give status or include_freed, not both")
        get = params.get
        statuses: tuple[str, ...] = ("active",)
        if get("status"):
            statuses = parse_statuses(params["status"])
        elif (get("include_freed") or "").strip().lower() in ("1", "true", "yes", "on"):
            statuses = STATUSES
        return cls(
            license_id=parse_id(params["license_id"], "license_id") if get("license_id") else None,
            label=parse_label(params["label"]) if "label" in params else None,
            silent_for=parse_duration(params["silent_for"]) if "silent_for" in params else None,
            statuses=statuses,
            limit=parse_limit(params["limit"]) if "limit" in params else DEFAULT_LIMIT,
            after=parse_id(params["after"], "after") if get("after") else None,
        )

    def to_query(self) -> dict[str, str]:
        """The query parameters that mean this filter (the admin client sends them)."""
        out = {"status": ",".join(self.statuses)}
        for name, value in (("license_id", self.license_id), ("label", self.label), ("after", self.after)):
            if value is not None:
                out[name] = value
        if self.silent_for is not None:
            out["silent_for"] = str(self.silent_for)
        if self.limit is not None:
            out["limit"] = str(self.limit)
        return out

    def describe(self) -> str:
        """What was asked, in words, for the count line: ``active, label contains "line-7"``."""
        parts = ["/".join(self.statuses)]
        if self.license_id:
            parts.append(f"license {self.license_id}")
        if self.label:
            parts.append(f'label contains "{self.label}"')
        if self.silent_for:
            parts.append(f"silent for more than {duration_text(self.silent_for)}")
        return ", ".join(parts)


@dataclass(frozen=True)
class LeaseFilter:
    """Which of a floating server's leases ``floating status`` shows: by a piece of the label (or
    of one the instance had), by silence (no acquire or renewal for longer than ``silent_for``:
    a broker that renews every TTL/3 and missed some). A pool holds at most its seats' leases,
    all read anyway to count them, so this filters what was read."""

    label: str | None = None
    silent_for: int | None = None

    @classmethod
    def from_query(cls, params: Mapping[str, str]) -> LeaseFilter:
        unknown = sorted(set(params) - {"label", "silent_for"})
        if unknown:
            raise LicensingError(
                ErrorCode.BAD_REQUEST, f"unknown parameter(s) {', '.join(unknown)}; known: label, silent_for"
            )
        return cls(
            label=parse_label(params["label"]) if "label" in params else None,
            silent_for=parse_duration(params["silent_for"]) if "silent_for" in params else None,
        )

    @property
    def active(self) -> bool:
        return self.label is not None or self.silent_for is not None

    def matches(self, labels: Iterable[str | None], last_seen: int, now: int) -> bool:
        """``labels``: the lease's label and those its instance had; ``last_seen``: its last renewal."""
        if self.label is not None:
            piece = self.label.casefold()
            if not any(label and piece in label.casefold() for label in labels):
                return False
        return self.silent_for is None or last_seen < now - self.silent_for

    def describe(self) -> str:
        parts = [f'label contains "{self.label}"'] if self.label is not None else []
        if self.silent_for is not None:
            parts.append(f"not renewed for more than {duration_text(self.silent_for)}")
        return ", ".join(parts) or "every lease"


__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "STATUSES",
    "ActivationFilter",
    "LeaseFilter",
    "duration_text",
    "parse_duration",
    "parse_id",
    "parse_label",
    "parse_limit",
    "parse_statuses",
]
