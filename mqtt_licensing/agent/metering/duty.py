"""The agent's background metering work: close an interval every ``usage_interval`` seconds and
deliver every ``usage_report_interval`` (and right after each check-in), through the license source.

Where records go is the source's business (:meth:`~..sources.LicenseSource.deliver_usage`: the
vendor online, the floating server on a lease, nowhere offline where they travel in codes); this
duty only keeps the schedule, the `metering: required` gate and its alarm.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Iterable

from ...core.features import Feature
from ...core.gate import Decision, Refusal
from ..access import Client, Role
from ..sources import LicenseSource, SourceContext, UsageAccount
from . import Metering, metered_names

log = logging.getLogger(__name__)


class UsageDuty:
    def __init__(
        self,
        metering: Metering,
        ctx: SourceContext,
        definitions: Callable[[], Iterable[Feature]] = tuple,
    ) -> None:
        self.metering = metering
        self.ctx = ctx
        self.definitions = definitions  # the current license's feature definitions
        # Per CONNECT: the metered names are worked out again only when the definitions change.
        self._metered: tuple[Iterable[Feature] | None, frozenset[str]] = (None, frozenset())
        self._last_report_attempt = 0.0
        self._alarmed = False

    async def close(self, source: LicenseSource | None) -> None:
        """At shutdown: the open interval becomes a record, and a source that delivers at shutdown
        (a floating lease, before the seat is handed back) gets the records first."""
        await self._close_interval(source)
        if source is not None and self.metering.ledger.pending_count:
            await source.deliver_usage(self.metering, closing=True)

    async def _close_interval(self, source: LicenseSource | None) -> None:
        account = source.usage_account() if source is not None else UsageAccount()
        await self.metering.close_interval(license_id=account.license_id, activation_id=account.activation_id)

    # -- metering: required --------------------------------------------------------------

    def overdue(self, source: LicenseSource | None) -> int:
        """Seconds the oldest undelivered usage has waited, under a `metering: required` license (else 0)."""
        if source is None or not source.usage_account().required:
            return 0
        oldest = self.metering.oldest_pending_start()
        return 0 if oldest is None else max(0, self.ctx.now() - oldest)

    def is_metered(self, client: Client | None) -> bool:
        if client is None:
            return False
        definitions = self.definitions()
        if definitions is not self._metered[0]:
            self._metered = (definitions, metered_names(definitions))
        return not client.needs.isdisjoint(self._metered[1])

    def connected(self, conn: Hashable, client: Client | None) -> bool:
        """Start counting a metered client's time; True when it is metered."""
        if not self.is_metered(client):
            return False
        self.metering.opened(conn)
        return True

    def gate(self, client: Client | None, source: LicenseSource | None) -> Decision | None:
        """A refusal for an admitted metered client while usage is overdue under `metering: required`."""
        if client is None or client.role is not Role.USER or not self.is_metered(client):
            return None
        if self.overdue(source) <= self.ctx.config.metering_grace:
            return None
        log.warning("refused metered client %r: usage undelivered too long (metering: required)", client.client_id)
        decision = Decision(False, Refusal.METERING_UNDELIVERED, "usage could not reach the vendor in time")
        self.ctx.emit(
            "connection_refused", client_id=client.client_id, username=client.username, reason=str(decision.refusal)
        )
        return decision

    def _alarm(self, source: LicenseSource | None) -> None:
        grace = self.ctx.config.metering_grace
        overdue = self.overdue(source)
        if overdue * 2 >= grace and not self._alarmed:
            self._alarmed = True
            log.warning("usage undelivered for %d s: metered clients are refused after %d s", overdue, grace)
            self.ctx.emit(
                "metering_overdue",
                overdue_seconds=overdue,
                refuse_after_seconds=grace,
                pending_records=self.metering.ledger.pending_count,
            )
        elif overdue * 2 < grace:
            self._alarmed = False

    async def tick(self, source: LicenseSource | None, *, checked_in: bool = False) -> None:
        config, now = self.ctx.config, self.ctx.now()
        self._alarm(source)
        if now - self.metering.interval_start >= config.usage_interval:
            await self._close_interval(source)
        due = now - self._last_report_attempt >= config.usage_report_interval
        if (due or checked_in) and self.metering.ledger.pending_count:
            await self.report(source)

    async def report(self, source: LicenseSource | None) -> None:
        started = self.ctx.now()
        if source is not None and await source.deliver_usage(self.metering):
            self._last_report_attempt = started


__all__ = ["UsageDuty"]
