"""The one way times are shown to people and written into JSON: ISO 8601 UTC, seconds."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(ts: float | None) -> str | None:
    """``2026-11-29T21:33:20Z`` for a Unix time; None stays None."""
    if ts is None:
        return None
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def add_years(ts: int, years: int) -> int:
    """The same moment ``years`` calendar years later (29 February becomes 28 February)."""
    start = datetime.fromtimestamp(int(ts), UTC)
    year = start.year + years
    try:
        later = start.replace(year=year)
    except ValueError:  # 29 February in a year without one
        later = start.replace(year=year, day=28)
    return int(later.timestamp())


def relative(ts: float, now: float) -> str:
    """``in 3 days`` / ``5 min ago``: the coarsest unit that is at least one."""
    delta = int(ts - now)
    ahead = delta >= 0
    seconds = abs(delta)
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            count = seconds // size
            text = f"{count} {unit}{'s' if unit == 'day' and count != 1 else ''}"
            break
    else:
        text = f"{seconds} s"
    return f"in {text}" if ahead else f"{text} ago"
