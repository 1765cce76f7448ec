"""The agent's background work: one :meth:`Scheduler.tick` every ``tick_interval``.

Each tick re-derives the state (deadlines pass by themselves), runs the current source's due
work (a check-in, a lease renewal) or the config's auto-lease, hands usage records on, saves
the clock, and disconnects whatever the state no longer allows. Tests call :meth:`tick` with a
fake clock instead of waiting for real intervals.
"""

from __future__ import annotations

import asyncio
import logging

from ..core.errors import LicensingError
from ..core.timefmt import iso
from .core import AgentCore
from .metering.duty import UsageDuty
from .metrics import AgentMetrics
from .sources.online import free_activation
from .trial import vendor_trial_start

log = logging.getLogger(__name__)

CLOCK_SAVE_EVERY = 60  # seconds between saves that only move the clock forward


class Scheduler:
    def __init__(self, core: AgentCore, metrics: AgentMetrics, usage: UsageDuty) -> None:
        self._core = core
        self._metrics = metrics
        self._usage = usage
        self._runner: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._runner = asyncio.create_task(self._run(), name="license-agent")

    async def stop(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
            self._runner = None

    async def _run(self) -> None:
        core = self._core
        core.refresh(core.now(), force_publish=True)
        trial = asyncio.create_task(self.record_trial(), name="license-trial") if core.source is None else None
        try:
            while True:
                try:
                    await self.tick()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("license agent background step failed; retrying")
                await asyncio.sleep(core.config.tick_interval)
        finally:
            if trial is not None:
                trial.cancel()

    async def record_trial(self) -> None:
        """The vendor's first sighting of this instance on trial wins if it is earlier."""
        core = self._core
        started = await vendor_trial_start(core.context)
        if started is not None and started < core.trial_started_at:
            log.warning("the vendor saw this instance on trial since %s: the trial counts from then", iso(started))
            core.trial_started_at = started
            await core.save()
            core.refresh(core.now())

    async def tick(self) -> None:
        """One step of the background work (what the loop runs every ``tick_interval``)."""
        core = self._core
        now = core.now()
        core.refresh(now)
        due = core.next_due()
        checked_in = False
        if due is not None and now >= due and not core.lock.locked():
            async with core.lock:
                checked_in = await self._run_due()
                core.refresh(core.now())
        if core.auto.frees_due(now) and not core.lock.locked():
            async with core.lock:
                await self._free_replaced()
                core.refresh(core.now())
        await self._usage.tick(core.source, checked_in=checked_in)
        numbered = core.metering.ledger.high_water > core.saved_usage_high_water  # kept sealed in state.json
        if core.alarms.pending or numbered or now - core.last_clock_save >= CLOCK_SAVE_EVERY:
            await core.save()
        await core.access.enforce_existing(core.evaluation, core.out.transport)
        core.access.refusal_log.flush()

    async def _run_due(self) -> bool:
        """True when the source's own work (a check-in) succeeded: usage records travel with it."""
        core = self._core
        source, now = core.source, core.now()
        auto_due = core.auto.next_due(source)
        obtain = auto_due is not None and now >= auto_due  # none held, or the changed key's to activate
        own_due = source.next_due() if source is not None and not obtain else None
        if not obtain and (own_due is None or now < own_due):
            return False  # only an old activation to free is due (below)
        kind = source.background_kind if source is not None and not obtain else "lease_acquire"
        self._metrics.sync_attempts.labels(kind).inc()
        try:
            async with core.changing():
                if not obtain and source is not None:
                    await source.run_due()
                else:
                    # A changed key's license is activated before the old one is given up: the
                    # broker serves throughout, and the old activation is freed after (retried).
                    replaces = core.auto.replaces(source)
                    core.source = await core.auto.obtain()
                    if replaces and source is not None:
                        core.auto.replaced(source)
                        await source.close()
            core.auto.error = None
        except LicensingError as exc:
            self._metrics.sync_failures.labels(kind, str(exc.code)).inc()
            if kind == "lease_acquire":  # no seat to be had: an alarm (no_seat) until one is
                core.auto.error = str(exc.code)
            log.warning("background license sync failed (%s): %s", kind, exc)
            return False
        return True

    async def _free_replaced(self) -> None:
        """Free at the vendor the activations a changed key replaced; kept and retried while it is away."""
        core = self._core
        now = core.now()
        async with core.changing():
            for item in core.auto.frees_due(now):
                item.last_attempt = now
                try:
                    await free_activation(core.context, item.activation_id)
                except LicensingError as exc:
                    item.last_error = exc.message
                    log.warning("the replaced activation %s is not freed yet: %s", item.activation_id, exc.message)
                    continue
                core.auto.frees.remove(item)
                log.info("the activation %s of the replaced key %s is freed", item.activation_id, item.key)
                core.context.emit(
                    "deactivated", method="online", activation_id=item.activation_id, reason="license_key_changed"
                )


__all__ = ["CLOCK_SAVE_EVERY", "Scheduler"]
