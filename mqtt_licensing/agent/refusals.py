"""The broker's log of refused CONNECTs, with flood suppression.

A refused client usually retries at once and forever; a misconfigured fleet refuses thousands.
Each (client id, reason) is logged once per window, and at most ``burst`` lines are written per
window; what is held back is counted and summarised in one line when the window ends. Memory is
bounded by ``burst``: the counts are per reason, not per client.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable


class RefusalLog:
    def __init__(
        self,
        logger: logging.Logger,
        *,
        burst: int = 20,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._burst = burst
        self._window = window
        self._clock = clock
        self._started = clock()
        self._seen: set[tuple[str, str]] = set()
        self._held: Counter[str] = Counter()

    def refused(self, client_id: str, username: str | None, reason: str, message: str) -> None:
        self.flush()
        key = (client_id, reason)
        if key in self._seen or len(self._seen) >= self._burst:
            self._held[reason] += 1
            return
        self._seen.add(key)
        fields = {"client_id": client_id, "username": username, "reason": reason}
        self._log.warning(
            "refused CONNECT client_id=%r username=%r: %s (%s)",
            client_id,
            username,
            reason,
            message,
            extra={"fields": fields},
        )

    def flush(self) -> None:
        """End the window if it is over: one summary line for the refusals held back in it."""
        now = self._clock()
        if now - self._started < self._window:
            return
        if self._held:
            counts = ", ".join(f"{reason}={n}" for reason, n in sorted(self._held.items()))
            self._log.warning(
                "%d more refused CONNECT(s) in the last %ds not logged one by one: %s",
                sum(self._held.values()),
                int(now - self._started),
                counts,
                extra={"fields": {"suppressed": dict(self._held)}},
            )
        self._started, self._seen, self._held = now, set(), Counter()


__all__ = ["RefusalLog"]
