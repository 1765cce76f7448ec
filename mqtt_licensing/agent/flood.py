"""What keeps a flood of ``$license`` requests from wearing the broker down.

:class:`Buckets` lets each non-admin connection a small burst of requests, then one per
``refill`` seconds; the rest are dropped unanswered. :class:`Coalescer` turns a stream of
refusals from one client into one event per window carrying how many there were.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

BURST, REFILL_SECONDS = 5, 2.0
COALESCE_SECONDS = 60.0
_MAX_KEYS = 4_096  # keys per table: a flood of fresh usernames or connections stays bounded


class Buckets:
    def __init__(self, burst: int = BURST, refill: float = REFILL_SECONDS) -> None:
        self._burst = burst
        self._refill = refill
        self._buckets: dict[Hashable, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key: Hashable, now: float) -> bool:
        tokens, at = self._buckets.pop(key, (float(self._burst), now))
        tokens = min(self._burst, tokens + (now - at) / self._refill)
        allowed = tokens >= 1
        self._buckets[key] = (tokens - 1 if allowed else tokens, now)  # last use last: oldest go first
        if len(self._buckets) > _MAX_KEYS:
            self._buckets.pop(next(iter(self._buckets)))
        return allowed


@dataclass
class _Window:
    started: float
    suppressed: int


class Coalescer:
    """``hit`` returns the count to announce (this one plus those held back since the last
    announcement) when a new window starts, else None (counted, announced later)."""

    def __init__(self, window: float = COALESCE_SECONDS) -> None:
        self._window = window
        self._windows: dict[str, _Window] = {}

    def hit(self, key: str, now: float) -> int | None:
        current = self._windows.get(key)
        if current is not None and now - current.started < self._window:
            current.suppressed += 1
            return None
        count = 1 + (current.suppressed if current is not None else 0)
        self._windows.pop(key, None)
        self._windows[key] = _Window(now, 0)
        if len(self._windows) > _MAX_KEYS:
            self._windows.pop(next(iter(self._windows)))
        return count
