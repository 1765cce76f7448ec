"""Carrying usage records to the floating server the agent leases from.

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
from collections.abc import Callable

from ...clients.floating import FloatingClient
from ...clients.http import HttpOptions
from ...core.errors import LicensingError
from ...core.labels import KIND_LEASE_USAGE
from ...core.signing import load_public_key
from . import Metering

log = logging.getLogger(__name__)


async def report_to_floating(
    metering: Metering, *, url: str, server_public_key: bytes, sign: Callable[..., bytes], http: HttpOptions
) -> int:
    """Send every pending record to the floating server that answered last; how many it receipted.

    The caller holds a lease (the server takes records from lease holders only) whose
    vendor-verified pool certificate names ``server_public_key``, the key the receipt must verify with."""
    server_key = load_public_key(server_public_key)
    receipted = 0
    try:
        while batch := metering.pending():
            nonce = secrets.token_hex(16)
            request = sign(KIND_LEASE_USAGE, nonce=nonce)
            async with FloatingClient(url, options=http) as client:
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
