"""Licensing time: the wall clock, made to only ever go forward.

A customer who sets the system clock back must gain nothing. So every deadline is evaluated
at the *licensing time*, never at the raw wall clock:

* across restarts it is at least the highest time this instance ever saw (``last_seen``);
* within one run it advances with the monotonic clock, which no one can set, so a wall
  clock stepped back (by any amount, any number of times) does not stop it;
* every step back of the wall clock is added to ``stepped_back``, whatever its size, until
  a trusted time (a vendor answer, a lease) resets it; beyond ``clock_tolerance`` the
  instance is ``clock_tampered``. Many small steps (290 s each under a 300 s tolerance)
  add up like one big one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from .statefile import ClockRecord

log = logging.getLogger(__name__)

# Wall and monotonic clocks drift apart by milliseconds per check; NTP slews, it does not step.
# A difference beyond this between them is a step of the wall clock.
STEP_SLACK = 2.0


class LicenseClock:
    def __init__(
        self,
        record: ClockRecord,
        tolerance: int,
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.record = record
        self.tolerance = tolerance
        self._wall = wall
        self._monotonic = monotonic
        self._anchor: tuple[float, float, float] | None = None  # (wall, monotonic, licensing time)

    def now(self) -> int:
        """The licensing time; records any step back of the wall clock since the last reading."""
        wall, mono = self._wall(), self._monotonic()
        record = self.record
        if self._anchor is None:
            # First reading of this run: only the stored high-water mark says where time was.
            start = float(max(wall, record.last_seen or wall))
            if record.last_seen is not None and wall < record.last_seen - STEP_SLACK:
                record.stepped_back += int(record.last_seen - wall)
            licensing = start
        else:
            prev_wall, prev_mono, prev_time = self._anchor
            elapsed = max(0.0, mono - prev_mono)
            step = prev_wall + elapsed - wall
            if step > STEP_SLACK:
                record.stepped_back += int(step)
            licensing = max(wall, prev_time + elapsed, record.last_seen or 0)
        self._anchor = (wall, mono, licensing)
        record.last_seen = max(record.last_seen or 0, int(licensing))
        if record.stepped_back > self.tolerance and not record.tampered:
            record.tampered = True
            log.warning(
                "system clock set back by %ss in all since the last trusted time (tolerance %ss); license not serving",
                record.stepped_back,
                self.tolerance,
            )
        return int(licensing)

    def restart(self) -> None:
        """Forget this run's readings (the stored record was just loaded): the next one starts over."""
        self._anchor = None

    def wall_caught_up(self) -> bool:
        """The wall clock is back at (or past) the highest time seen: it was corrected."""
        return self.record.last_seen is None or self._wall() >= self.record.last_seen - STEP_SLACK


__all__ = ["STEP_SLACK", "LicenseClock"]
