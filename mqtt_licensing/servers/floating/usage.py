"""Metering through a floating server: its brokers' usage records, collected and carried on.

A broker on a lease never talks to the vendor. It delivers its signed
:class:`~mqtt_licensing.core.usage_documents.UsageRecord`\\ s here (``POST /v1/usage``, a ``lease_usage``
request signed by the instance key); each record is verified against the lease holder's key on
record, held once per (instance, sequence) in ``usage_outbox`` together with that key, and
receipted with a :class:`UsageAck` signed by this server's key (the key the agent already trusts
through the vendor-signed floating certificate). The agent deletes its records only on that receipt.

The outbox then goes on to the vendor:

* online (``floating serve`` with a vendor URL): in batches, each a ``floating_usage`` request
  signed by this server that embeds the records and their instances' public keys; the vendor's
  :class:`ForwardedUsageAck` for that batch's nonce deletes the records it names;
* offline: the next ``floating request`` code carries the oldest held records; the floating
  certificate the vendor answers with names those it stored (``usage_stored``), deleted on install.

A kill between the vendor's commit and the deletion here only sends the records again: the vendor
stores each (instance, sequence) once.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import TYPE_CHECKING, Any

from ...clients.activation import ActivationClient
from ...clients.http import HttpOptions
from ...core import labels
from ...core.documents import open_instance_request, sign_instance_request
from ...core.errors import ErrorCode, LicensingError
from ...core.signing import load_public_key
from ...core.usage_documents import ForwardedUsageAck, UsageAck, UsageRecord, usage_ref
from .._db import reading
from .._duties import Duty, every
from .._requests import check_fresh, peek_request
from ..defaults import FLOATING_FORWARD_INTERVAL
from .store import Tx

if TYPE_CHECKING:  # the pool imports parse_ref from here, and the service this module
    from .pool import FloatingContext, FloatingPool
    from .service import FloatingService

log = logging.getLogger(__name__)

MAX_RECORDS_FROM_AGENT = 500  # as the vendor takes from one instance
MAX_RECORDS_PER_BATCH = 200  # one forwarded batch stays well under the vendor's request limit
MAX_RECORDS_PER_CODE = 100  # a request code is a signed document of at most 64 KiB
DEFAULT_FORWARD_INTERVAL = FLOATING_FORWARD_INTERVAL


def parse_ref(ref: str) -> tuple[str, int] | None:
    fp, _, seq = ref.rpartition(":")
    return (fp, int(seq)) if fp and seq.isdigit() else None


class FloatingUsage:
    """The brokers' usage records: taken from lease holders, held, and carried on to the vendor."""

    def __init__(self, ctx: FloatingContext, pool: FloatingPool) -> None:
        self.ctx = ctx
        self.pool = pool

    # -- agent -> floating server ---------------------------------------------------------
    def accept_usage(self, request_blob: bytes, records: list[bytes]) -> bytes:
        """Hold a leasing instance's records for the vendor; return the signed receipt."""
        if len(records) > MAX_RECORDS_FROM_AGENT:
            raise LicensingError(ErrorCode.BAD_REQUEST, f"at most {MAX_RECORDS_FROM_AGENT} usage records per report")
        now = self.ctx.clock()
        claimed = peek_request(request_blob).fingerprint
        sequences: list[int] = []
        with self.ctx.store.transaction() as tx:
            lease = tx.lease_by_fingerprint(claimed)  # expired or not: what counts is the key on record
            if lease is None:
                raise LicensingError(
                    ErrorCode.LEASE_NOT_FOUND, "no lease of this instance: usage is taken from lease holders only"
                )
            key = load_public_key(lease.public_key)
            request = open_instance_request(request_blob, labels.KIND_LEASE_USAGE, key)
            check_fresh(request, now, self.ctx.max_clock_skew)
            for blob in records:
                record = UsageRecord.open(blob, key)  # raises for anything the lease holder did not sign
                if record.instance_fingerprint != lease.instance_fingerprint:
                    raise LicensingError(ErrorCode.WRONG_INSTANCE, "a usage record belongs to another instance")
                if record.sequence < 1 or record.period_end < record.period_start:
                    raise LicensingError(ErrorCode.BAD_REQUEST, f"usage record {record.sequence} is malformed")
                if min(record.messages, record.bytes, record.client_seconds) < 0:
                    raise LicensingError(ErrorCode.BAD_REQUEST, f"usage record {record.sequence} has negative usage")
                tx.usage.insert(record.instance_fingerprint, record.sequence, bytes(blob), lease.public_key, now)
                sequences.append(record.sequence)
        return UsageAck(
            instance_fingerprint=claimed, sequences=tuple(sequences), request_nonce=request.nonce, issued_at=now
        ).sign(self.ctx.signing_key)

    # -- floating server -> vendor ----------------------------------------------------------
    def _held(self, limit: int) -> tuple[list[tuple[str, int]], dict[str, Any]]:
        with self.ctx.store.transaction() as tx:
            rows = tx.usage.oldest(limit)
        refs = [(fp, seq) for fp, seq, _rec, _key in rows]
        keys = tuple(dict.fromkeys(key for _fp, _seq, _rec, key in rows))
        return refs, {"usage": tuple(rec for _fp, _seq, rec, _key in rows), "usage_keys": keys}

    def usage_fields(self) -> dict[str, Any]:
        """What an offline request code carries: the oldest held records and their keys."""
        return self._held(MAX_RECORDS_PER_CODE)[1]

    def forward_batch(self) -> tuple[bytes, str, list[tuple[str, int]]] | None:
        """A signed batch of held records for the vendor (request, nonce, what it carries), or None."""
        refs, fields = self._held(MAX_RECORDS_PER_BATCH)
        if not refs:
            return None
        cert = self.pool.require_certificate().certificate
        nonce = secrets.token_hex(16)
        request = sign_instance_request(
            self.ctx.signing_key,
            kind=labels.KIND_FLOATING_USAGE,
            nonce=nonce,
            created_at=self.ctx.clock(),
            activation_id=cert.activation_id,
            license_id=cert.license_id,
            **fields,
        )
        return request, nonce, refs

    def forwarded(self, ack_blob: bytes, nonce: str, sent: list[tuple[str, int]], vendor: Any) -> int:
        """Verify the vendor's receipt for exactly this batch; delete the records it names."""
        ack = ForwardedUsageAck.open(ack_blob, vendor)
        if ack.server_fingerprint != self.ctx.fingerprint or ack.request_nonce != nonce:
            raise LicensingError(ErrorCode.WRONG_DOCUMENT, "the usage receipt answers another batch")
        return self.drop_acknowledged(ack.stored, sent)

    def drop_acknowledged(self, stored: tuple[str, ...], sent: list[tuple[str, int]] | None = None) -> int:
        refs = [r for r in (parse_ref(s) for s in stored) if r is not None and (sent is None or r in sent)]
        if not refs:
            return 0
        with self.ctx.store.transaction() as tx:
            return tx.usage.drop(refs)

    def usage_status(self) -> dict[str, Any]:
        with reading(self.ctx.store.engine) as conn:  # a count for people: no write lock
            return {"outbox": Tx(conn).usage.count()}


async def forward_online(service: FloatingService, vendor_url: str, *, options: HttpOptions) -> int:
    """Send every held record to the vendor in batches; how many it acknowledged."""
    vendor = await asyncio.to_thread(service.vendor_keys)  # DIR/vendor.pub and the rotations it endorsed
    if vendor is None:
        raise LicensingError(ErrorCode.NOT_PROVISIONED, "no vendor public key is pinned")
    total = 0
    while (batch := await asyncio.to_thread(service.forward_batch)) is not None:
        request, nonce, refs = batch
        async with ActivationClient(vendor_url, options=options) as client:
            ack = await client.forward_usage(request)
        dropped = await asyncio.to_thread(service.forwarded, ack, nonce, refs, vendor)
        total += dropped
        if not dropped:
            break  # the vendor took none of them: retry on the next schedule, never loop here
    return total


async def forward_held(service: FloatingService, options: HttpOptions) -> None:
    """One pass of usage forwarding: everything held goes to an online vendor."""
    url = await asyncio.to_thread(service.vendor_url)
    if not url:
        return  # provisioned offline: the records ride in the next request code
    sent = await forward_online(service, url, options=options)
    if sent:
        log.info("forwarded %d usage record(s) to the vendor", sent)


async def forward_periodically(service: FloatingService, interval: float, options: HttpOptions) -> None:
    """Background task for ``floating serve``: carry the outbox to an online vendor (a failed pass
    keeps the records for the next one)."""
    await every("forwarding usage to the vendor", interval, lambda: forward_held(service, options))


def vendor_duties(
    service: FloatingService, refresh_interval: float, forward_interval: float, options: HttpOptions
) -> list[Duty]:
    """``floating serve``'s background work with the vendor: certificate refresh and usage forwarding."""
    from .provision import refresh_periodically

    duties: list[Duty] = []
    if refresh_interval > 0:
        duties.append(lambda: refresh_periodically(service, refresh_interval, options))
    if forward_interval > 0:
        duties.append(lambda: forward_periodically(service, forward_interval, options))
    return duties


__all__ = [
    "DEFAULT_FORWARD_INTERVAL",
    "FloatingUsage",
    "forward_held",
    "forward_online",
    "forward_periodically",
    "parse_ref",
    "usage_ref",
    "vendor_duties",
]
