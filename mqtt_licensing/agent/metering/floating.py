"""Carrying usage records to the floating server the agent leases from (issue 16).

A broker on a floating lease never talks to the vendor: it delivers its records to the floating
server (``POST /v1/usage``, a ``lease_usage`` request signed by the instance key), on the same
schedule as online reports. The floating server answers with a :class:`UsageAck` signed by its
own key, which the agent trusts only through the floating certificate the vendor signed (the one
its lease carries, verified against the pinned vendor key); only that receipt deletes records.
The floating server carries them on to the vendor (see ``servers/floating/usage.py``).
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from ...clients.floating import FloatingClient
from ...core.errors import LicensingError
from ...core.labels import KIND_LEASE_USAGE
from ...core.signing import load_public_key
from . import Metering

log = logging.getLogger(__name__)


async def report_to_floating(metering: Metering, source: Any) -> int:
    """Send every pending record to the floating server that answered last; how many it receipted.

    Nothing is sent without a lease (the server takes records from lease holders only) or while
    the lease's certificate is unknown (there would be no key to check the receipt against)."""
    cert, url = source.certificate, source.server_url
    if source.lease is None or cert is None or not url:
        return 0
    server_key = load_public_key(cert.server_public_key)  # vendor-verified with the lease
    receipted = 0
    try:
        while batch := metering.pending():
            nonce = secrets.token_hex(16)
            request = source.ctx.sign(KIND_LEASE_USAGE, nonce=nonce)
            async with FloatingClient(url, options=source.ctx.config.http_options()) as client:
                blob = await client.report_usage(request, [record for _seq, record in batch])
            sent = [seq for seq, _record in batch]
            ack = await metering.acknowledge(blob, server_key, nonce, sent)
            stored = set(ack.sequences) & set(sent)
            receipted += len(stored)
            if not stored:
                break  # the server took none of them: retry on the next schedule, never loop here
    except LicensingError as exc:
        metering.last_error = exc.to_dict()
        log.warning("usage delivery to the floating server failed (records kept for the next attempt): %s", exc)
    return receipted
