"""The agent's background work: one loop, one tick every ``tick_interval``.

Each tick re-derives the state (deadlines pass by themselves), runs the current source's due
work (a check-in, a lease renewal) or leases a seat when the config asks for one, hands usage
records on, saves the clock, and disconnects whatever the state no longer allows.

A mixin of :class:`~.agent.LicensingAgent`, not a separate object: the tick reads and replaces
the agent's source under the agent's own lock, and a narrower interface would pass all of it anyway.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

from ..core.errors import LicensingError
from ..core.features import MQTT_SERVER
from ..core.state import Evaluation
from ..core.timefmt import iso
from .access import Access
from .alarms import AlarmBoard
from .config import AgentConfig
from .metering.delivery import UsageDuty
from .metrics import AgentMetrics, background_kind
from .publisher import Publisher
from .sources import LicenseSource, SourceContext
from .sources.floating import FloatingSource
from .trial import vendor_trial_start

log = logging.getLogger(__name__)

CLOCK_SAVE_EVERY = 60  # seconds between saves that only move the clock forward


class Scheduler:
    # The agent's state the tick works on (set by LicensingAgent).
    config: AgentConfig
    metrics: AgentMetrics
    _access: Access
    _alarms: AlarmBoard
    _context: SourceContext
    _evaluation: Evaluation
    _lock: asyncio.Lock
    _out: Publisher
    _source: LicenseSource | None
    _trial_started_at: int
    _usage: UsageDuty
    _last_clock_save = 0
    _saved_usage_high_water = 0  # the usage sequence state.json holds (kept sealed there too)
    # Owned here.
    _runner: asyncio.Task[None] | None = None
    _lease_error: str | None = None  # the last auto-lease failure (no_seat), shown as an alarm
    _last_auto_lease_attempt = 0.0
    _auto_lease_enabled = True

    if TYPE_CHECKING:

        def _now(self) -> int: ...
        def _refresh(self, now: int, *, force_publish: bool = False) -> None: ...
        async def _save(self) -> None: ...
        def _changing(self) -> AbstractAsyncContextManager[None]: ...

    def _start_background(self) -> None:
        self._runner = asyncio.create_task(self._run(), name="license-agent")

    async def _stop_background(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
            self._runner = None

    async def _run(self) -> None:
        self._refresh(self._now(), force_publish=True)
        trial = asyncio.create_task(self._record_trial(), name="license-trial") if self._source is None else None
        try:
            await self._loop()
        finally:
            if trial is not None:
                trial.cancel()

    async def _record_trial(self) -> None:
        """Issue 10: the vendor's first sighting of this instance on trial wins if it is earlier."""
        started = await vendor_trial_start(self._context)
        if started is not None and started < self._trial_started_at:
            log.warning("the vendor saw this instance on trial since %s: the trial counts from then", iso(started))
            self._trial_started_at = started
            await self._save()
            self._refresh(self._now())

    async def _loop(self) -> None:
        while True:
            try:
                now = self._now()
                self._refresh(now)
                due = self._next_due()
                checked_in = False
                if due is not None and now >= due and not self._lock.locked():
                    async with self._lock:
                        checked_in = await self._run_due()
                        self._refresh(self._now())
                await self._usage.tick(self._source, checked_in=checked_in)
                numbered = self._usage.metering.ledger.high_water > self._saved_usage_high_water
                if self._alarms.pending or numbered or now - self._last_clock_save >= CLOCK_SAVE_EVERY:
                    await self._save()
                await self._access.enforce_existing(self._evaluation, self._out.transport)
                self._access.refusal_log.flush()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("license agent background step failed; retrying")
            await asyncio.sleep(self.config.tick_interval)

    def _next_due(self) -> float | None:
        if self._source is not None:
            due = self._source.next_due()
            if due is not None:
                return due
        if self._wants_auto_lease():
            return self._last_auto_lease_attempt + self.config.retry_interval
        return None

    def _wants_auto_lease(self) -> bool:
        """Auto-activation from config: lease a seat when nothing else is held - until an operator
        deactivates (then only a restart or an explicit activate leases again)."""
        return (
            bool(self.config.floating_server_url)
            and self._auto_lease_enabled
            and (self._source is None or self._source.vacant)
        )

    async def _run_due(self) -> bool:
        """True when the source's own work (a check-in) succeeded: usage records travel with it."""
        kind = background_kind(self._source)
        self.metrics.sync_attempts.labels(kind).inc()
        try:
            async with self._changing():
                if self._source is not None and self._source.next_due() is not None:
                    await self._source.run_due()
                elif self._wants_auto_lease():
                    assert self.config.floating_server_url is not None
                    self._last_auto_lease_attempt = self._now()
                    self._source = await FloatingSource.auto_lease(
                        self._context, self.config.floating_server_url, self.config.floating_features or [MQTT_SERVER]
                    )
            self._lease_error = None
        except LicensingError as exc:
            self.metrics.sync_failures.labels(kind, str(exc.code)).inc()
            if kind == "lease_acquire":
                self._lease_error = str(exc.code)
            log.warning("background license sync failed (%s): %s", kind, exc)
            return False
        return True
