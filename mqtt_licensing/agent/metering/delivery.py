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
from collections.abc import Callable
from typing import Any

from ...clients.activation import ActivationClient
from ...core.documents import UsageAck
from ...core.errors import LicensingError
from ...core.labels import KIND_USAGE_REPORT
from . import Metering

log = logging.getLogger(__name__)


async def report_online(
    metering: Metering,
    *,
    vendor_url: str,
    activation_id: str,
    vendor_key: Any,
    sign: Callable[..., bytes],
    http_timeout: float,
) -> UsageAck | None:
    """Send every pending record (in batches); None when nothing was pending."""
    ack = None
    while batch := metering.pending():
        nonce = secrets.token_hex(16)
        request = sign(KIND_USAGE_REPORT, nonce=nonce, activation_id=activation_id)
        try:
            async with ActivationClient(vendor_url, timeout=http_timeout) as client:
                blob = await client.report_usage(request, [record for _seq, record in batch])
            ack = await metering.acknowledge(blob, vendor_key, nonce, [seq for seq, _record in batch])
        except LicensingError as exc:
            metering.last_error = exc.to_dict()
            raise
        if not set(ack.sequences) & {seq for seq, _ in batch}:
            break  # the vendor stored none of them: retry on the next schedule, never loop here
    return ack


class UsageDuty:
    """The agent's background metering work: close an interval every ``usage_interval`` seconds and
    report online every ``usage_report_interval`` (and right after each check-in)."""

    def __init__(self, metering: Metering, ctx: Any) -> None:
        self.metering = metering
        self.ctx = ctx  # the agent's SourceContext: config, vendor key, signing, clock
        self._last_report_attempt = 0.0

    async def close(self, source: Any) -> None:
        cert = getattr(source, "certificate", None) if source is not None else None
        await self.metering.close_interval(
            license_id=getattr(cert, "license_id", None), activation_id=getattr(cert, "activation_id", None)
        )

    async def tick(self, source: Any, *, checked_in: bool = False) -> None:
        config, now = self.ctx.config, self.ctx.now()
        if now - self.metering.interval_start >= config.usage_interval:
            await self.close(source)
        due = now - self._last_report_attempt >= config.usage_report_interval
        if (due or checked_in) and self.metering.ledger.pending_count:
            await self.report(source)

    async def report(self, source: Any) -> None:
        from ..sources.online import OnlineSource, vendor_url

        if not isinstance(source, OnlineSource) or source.gone:
            return  # offline and floating usage travels in their codes and through the floating server
        self._last_report_attempt = self.ctx.now()
        try:
            await report_online(
                self.metering,
                vendor_url=vendor_url(self.ctx, source.server_url),
                activation_id=source.certificate.activation_id,
                vendor_key=self.ctx.vendor_key,
                sign=self.ctx.sign,
                http_timeout=self.ctx.config.http_timeout,
            )
        except LicensingError as exc:
            log.warning("usage report failed (records kept for the next attempt): %s", exc)
