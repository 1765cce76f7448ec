"""A wall clock the test moves: real time plus an offset the test sets (or advances).

    clock = FakeClock()
    broker.agent.clock = clock      # or LicensingAgent(config, clock=clock)
    clock.advance(61)               # past check_in_interval=60
    broker.call(broker.agent.tick())  # one background step, now

With ``tick_interval`` long (3600) the agent's own loop stays asleep after its first step, so
each :meth:`~mqtt_licensing.agent.LicensingAgent.tick` is the test's: intervals pass at once,
and nothing waits for real time.
"""

from __future__ import annotations

import time


class FakeClock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    def seconds(self) -> int:
        """The same clock in whole seconds (a server's ``clock=``)."""
        return int(self())


__all__ = ["FakeClock"]
