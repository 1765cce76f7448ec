"""Carrying usage records to the vendor online: one report call, a signed receipt, then deletion.

A report is an :class:`~mqtt_licensing.core.documents.InstanceRequest` (kind ``usage_report``,
signed by the instance key, naming its activation) plus the signed records as they are on disk.
The vendor stores each (instance, sequence) once and answers with a :class:`UsageAck` bound to
the request's nonce; only that receipt deletes records here. A report lost on the way (or a
vendor killed mid-report) simply sends the same records again next time: the vendor counts none
of them twice.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Hashable
from typing import Any

from ...clients.activation import ActivationClient
from ...clients.http import HttpOptions
from ...core.documents import UsageAck
from ...core.errors import LicensingError
from ...core.gate import Decision, Refusal
from ...core.labels import KIND_USAGE_REPORT
from . import Metering, needs_metering

log = logging.getLogger(__name__)


async def report_online(
    metering: Metering,
    *,
    vendor_url: str,
    activation_id: str,
    vendor_key: Any,
    sign: Callable[..., bytes],
    http: HttpOptions,
) -> UsageAck | None:
    """Send every pending record (in batches); None when nothing was pending."""
    ack = None
    while batch := metering.pending():
        nonce = secrets.token_hex(16)
        request = sign(KIND_USAGE_REPORT, nonce=nonce, activation_id=activation_id)
        try:
            async with ActivationClient(vendor_url, options=http) as client:
                blob = await client.report_usage(request, [record for _seq, record in batch])
            ack = await metering.acknowledge(blob, vendor_key, nonce, [seq for seq, _record in batch])
        except LicensingError as exc:
            metering.last_error = exc.to_dict()
            raise
        if not set(ack.sequences + ack.conflicts) & {seq for seq, _ in batch}:
            break  # the vendor stored none of them: retry on the next schedule, never loop here
    return ack


class UsageDuty:
    """The agent's background metering work: close an interval every ``usage_interval`` seconds and
    report online every ``usage_report_interval`` (and right after each check-in)."""

    def __init__(self, metering: Metering) -> None:
        self.metering = metering
        self.ctx: Any = None  # the agent's SourceContext (config, vendor key, signing, clock), set on load
        self._last_report_attempt = 0.0
        self._alarmed = False

    async def close(self, source: Any) -> None:
        """At shutdown: the open interval becomes a record; on a floating lease, the records go to the
        floating server before the seat is handed back (it takes records from lease holders only)."""
        from ..sources.floating import FloatingSource
        from .floating import report_to_floating

        await self._close_interval(source)
        if isinstance(source, FloatingSource) and self.metering.ledger.pending_count:
            await report_to_floating(self.metering, source)

    async def _close_interval(self, source: Any) -> None:
        cert = getattr(source, "certificate", None) if source is not None else None
        await self.metering.close_interval(
            license_id=getattr(cert, "license_id", None), activation_id=getattr(cert, "activation_id", None)
        )

    # -- metering: required --------------------------------------------------------------

    def overdue(self, source: Any) -> int:
        """Seconds the oldest undelivered usage has waited, under a `metering: required` license (else 0)."""
        cert = getattr(source, "certificate", None)
        if getattr(cert, "metering", "best_effort") != "required":
            return 0
        oldest = self.metering.oldest_pending_start()
        return 0 if oldest is None else max(0, self.ctx.now() - oldest)

    def is_metered(self, client: Any) -> bool:
        return client is not None and needs_metering(
            self.ctx.config.required_features(client.username, client.client_id)
        )

    def connected(self, conn: Hashable, client: Any) -> None:
        if self.is_metered(client):
            self.metering.opened(conn)

    def gate(self, client: Any, source: Any) -> Decision | None:
        """A refusal for an admitted metered client while usage is overdue under `metering: required`."""
        if client is None or str(client.role) == "admin" or not self.is_metered(client):
            return None
        if self.overdue(source) <= self.ctx.config.metering_grace:
            return None
        log.warning("refused metered client %r: usage undelivered too long (metering: required)", client.client_id)
        decision = Decision(False, Refusal.METERING_UNDELIVERED, "usage could not reach the vendor in time")
        self.ctx.emit(
            "connection_refused", client_id=client.client_id, username=client.username, reason=str(decision.refusal)
        )
        return decision

    def _alarm(self, source: Any) -> None:
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

    async def tick(self, source: Any, *, checked_in: bool = False) -> None:
        config, now = self.ctx.config, self.ctx.now()
        self._alarm(source)
        if now - self.metering.interval_start >= config.usage_interval:
            await self._close_interval(source)
        due = now - self._last_report_attempt >= config.usage_report_interval
        if (due or checked_in) and self.metering.ledger.pending_count:
            await self.report(source)

    async def report(self, source: Any) -> None:
        from ..sources.floating import FloatingSource
        from ..sources.online import OnlineSource, vendor_url
        from .floating import report_to_floating

        if isinstance(source, FloatingSource):
            self._last_report_attempt = self.ctx.now()
            await report_to_floating(self.metering, source)
            return
        if not isinstance(source, OnlineSource) or source.gone:
            return  # offline usage travels in its codes
        self._last_report_attempt = self.ctx.now()
        try:
            await report_online(
                self.metering,
                vendor_url=vendor_url(self.ctx, source.server_url),
                activation_id=source.certificate.activation_id,
                vendor_key=self.ctx.vendor_key,
                sign=self.ctx.sign,
                http=self.ctx.config.http_options(),  # timeout, CA and proxy, as every agent call
            )
        except LicensingError as exc:
            log.warning("usage report failed (records kept for the next attempt): %s", exc)
