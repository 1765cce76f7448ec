"""Usage records a floating server forwards for its brokers, online or in its request code.

The brokers that lease from a floating server never talk to the vendor, so the vendor has no key on
record for them. Trust is two signatures deep:

* the batch is an :class:`~mqtt_licensing.core.documents.InstanceRequest` signed by the floating
  server, verified against the key on record for its floating activation (online: kind
  ``floating_usage``; offline: the ``floating_request`` code itself);
* each record inside is the broker's own signed statement, verified against a public key the batch
  carries (``usage_keys``), which is self-certifying: its SHA-256 must be the record's instance
  fingerprint. The floating server can drop or withhold a record (the holes show per instance) but
  cannot change one, and nobody else can add usage to the floating license.

Each (instance, sequence) is stored once, billed to the floating license: a replayed or resent
batch is acknowledged again and counts nothing new. The receipt (:class:`ForwardedUsageAck`, or the
floating certificate's ``usage_stored`` offline) names each record by :func:`usage_ref`.
"""

from __future__ import annotations

from typing import Any

from ...core import labels
from ...core.documents import InstanceRequest
from ...core.errors import ErrorCode, LicensingError
from ...core.models import LicenseModel
from ...core.signing import fingerprint, load_public_key, parse_envelope
from ...core.usage_documents import ForwardedUsageAck, UsageRecord, usage_ref
from .._requests import check_fresh
from .records import ServiceContext, bad
from .store import ActivationRecord, Tx
from .usage import MAX_RECORDS_PER_REQUEST, GapWatch, Usage


class ForwardedUsage:
    """The records a floating server forwards for its brokers, stored through :class:`.usage.Usage`."""

    def __init__(self, ctx: ServiceContext, usage: Usage) -> None:
        self.ctx = ctx
        self.usage = usage

    def forward_usage(self, request: bytes) -> bytes:
        """Online: a floating server's signed batch of its brokers' records -> a signed receipt."""
        now = self.ctx.clock()
        with self.ctx.store.transaction() as tx:
            act, req = self.ctx.verify_known(tx, request, labels.KIND_FLOATING_USAGE)
            check_fresh(req, now, self.ctx.max_clock_skew)
            if act.model != LicenseModel.FLOATING:
                raise LicensingError(ErrorCode.WRONG_MODEL, f"activation {act.id} is not a floating server's")
            stored = self.import_forwarded(tx, act, req, "floating")
        return ForwardedUsageAck(
            server_fingerprint=act.instance_fingerprint, stored=tuple(stored), request_nonce=req.nonce, issued_at=now
        ).sign(self.ctx.signing_key)

    def import_forwarded(self, tx: Tx, act: ActivationRecord, req: InstanceRequest, via: str) -> list[str]:
        """Store the records a floating server's verified request carries; their refs."""
        if len(req.usage) > MAX_RECORDS_PER_REQUEST:
            raise bad(f"at most {MAX_RECORDS_PER_REQUEST} usage records per request")
        keys = {fingerprint(raw): raw for raw in req.usage_keys}
        now, stored = self.ctx.clock(), []
        gaps = GapWatch(self.usage, tx)
        for blob in req.usage:
            record = UsageRecord.open(blob, self._signer(blob, keys))  # raises unless the instance signed it
            gaps.watch(record.instance_fingerprint, act)
            if self.usage.store_record(tx, act, record, now, via=via):  # a conflicting one stays unacknowledged
                stored.append(usage_ref(record.instance_fingerprint, record.sequence))
        gaps.announce(via)
        return stored

    @staticmethod
    def _signer(blob: bytes, keys: dict[str, bytes]) -> Any:
        claimed = parse_envelope(blob).unverified_body().get("instance_fingerprint")
        raw = keys.get(claimed) if isinstance(claimed, str) else None
        if raw is None:
            raise LicensingError(ErrorCode.WRONG_INSTANCE, "a forwarded usage record comes without its instance's key")
        return load_public_key(raw)
