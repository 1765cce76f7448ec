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

from ...clients.activation import ActivationClient
from ...clients.http import HttpOptions
from ...core.errors import LicensingError
from ...core.labels import KIND_USAGE_REPORT
from ...core.signing import VerifyingKey
from ...core.usage_documents import UsageAck
from . import Metering

log = logging.getLogger(__name__)


async def report_online(
    metering: Metering,
    *,
    vendor_url: str,
    activation_id: str,
    vendor_key: VerifyingKey,
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
