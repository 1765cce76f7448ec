"""Usage records at the vendor: stored once per (instance, sequence), receipted with a
signed :class:`~mqtt_licensing.core.usage_documents.UsageAck`, summed per license per day.

Every record is verified against the public key on record for the activation that sends it (or
brought it in an offline code): a record is the instance's own signed statement, so nobody else
can add usage to a license or take some away. A record resent (a lost receipt, a replayed report,
a vendor killed mid-report) is acknowledged again and counted once: the primary key
(instance_fingerprint, sequence) decides, in the same transaction as the insert. Holes in an
instance's sequence are reported back (``missing``) and shown per license.

A sequence already stored with *other* content is a conflict (a wiped usage folder, a restored
backup, or someone holding the identity key): never acknowledged, flagged, and the receipt
names the highest sequence stored (``high_water``) so the agent numbers that usage above it.
Usage is self-reported by a customer-run broker, so implausible records are flagged too: an
all-zero record (an agent never closes an empty interval) and a jump far past the high water.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from ...core.errors import ErrorCode, LicensingError
from ...core.labels import KIND_USAGE_REPORT
from ...core.signing import load_public_key
from ...core.usage_documents import UsageAck, UsageRecord
from .._requests import check_fresh
from .records import ServiceContext, bad
from .store import ActivationRecord, Tx

log = logging.getLogger(__name__)

MAX_RECORDS_PER_REQUEST = 500
_MAX_MISSING_LISTED = 100
_CONTENT = ("period_start", "period_end", "messages", "bytes", "client_seconds")


def billing_day(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def _check_day(text: str | None, name: str) -> str | None:
    if text is None or text == "":
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%d").strftime("%Y-%m-%d")
    except (ValueError, TypeError):
        raise LicensingError(ErrorCode.INVALID_FIELD, f"{name} must be a date like 2026-11-29") from None


class Usage:
    """Usage records an instance reports or a code carries, and the per-day sums."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def report_usage(self, request: bytes, records: list[bytes]) -> bytes:
        """Online: records signed by the instance of the activation the request names -> a signed receipt."""
        if len(records) > MAX_RECORDS_PER_REQUEST:
            raise bad(f"at most {MAX_RECORDS_PER_REQUEST} usage records per report")
        now = self.ctx.clock()
        with self.ctx.store.transaction() as tx:
            act, req = self.ctx.verify_known(tx, request, KIND_USAGE_REPORT)
            check_fresh(req, now, self.ctx.max_clock_skew)
            sequences, conflicts = self._store_records(tx, act, records, now, via="online")
            missing = self._missing(tx, act.instance_fingerprint)
            high_water = tx.usage.usage_high_water(act.instance_fingerprint)
        return UsageAck(
            instance_fingerprint=act.instance_fingerprint,
            sequences=tuple(sequences),
            request_nonce=req.nonce,
            issued_at=now,
            missing=missing,
            high_water=high_water,
            conflicts=tuple(conflicts),
        ).sign(self.ctx.signing_key)

    def import_usage(self, tx: Tx, act: ActivationRecord, records: list[bytes], via: str) -> list[int]:
        """Offline and floating paths: records carried inside a code already verified for ``act``."""
        return self._store_records(tx, act, records, self.ctx.clock(), via=via)[0]

    def usage_by_day(self, license_id: str, first: str | None = None, last: str | None = None) -> dict[str, Any]:
        first, last = _check_day(first, "from"), _check_day(last, "to")
        with self.ctx.store.transaction() as tx:
            self.ctx.license(tx, license_id)
            days = tx.usage.usage_by_day(license_id, first, last)
            instances = {a.instance_fingerprint for a in tx.list_activations(license_id, include_freed=True)}
            instances |= tx.usage.usage_instances(license_id)  # brokers behind a floating server too
            gaps = {fp: list(m) for fp in sorted(instances) if (m := self._missing(tx, fp))}
            flags = tx.usage.usage_flag_list(license_id)
        for row in days:
            row["client_hours"] = round(row["client_seconds"] / 3600, 4)
        return {"license_id": license_id, "from": first, "to": last, "days": days, "missing": gaps, "flags": flags}

    # -- shared steps ------------------------------------------------------------------------

    def _store_records(
        self, tx: Tx, act: ActivationRecord, blobs: list[bytes], now: int, *, via: str
    ) -> tuple[list[int], list[int]]:
        """(sequences stored, sequences in conflict)."""
        key = load_public_key(act.public_key)
        stored: list[int] = []
        conflicts: list[int] = []
        gaps = GapWatch(self, tx)
        for blob in blobs:
            record = UsageRecord.open(blob, key)  # raises for anything the instance did not sign
            if record.instance_fingerprint != act.instance_fingerprint:
                raise LicensingError(ErrorCode.WRONG_INSTANCE, "a usage record belongs to another instance")
            gaps.watch(record.instance_fingerprint, act)
            (stored if self.store_record(tx, act, record, now, via=via) else conflicts).append(record.sequence)
        gaps.announce(via)
        return stored, conflicts

    def store_record(self, tx: Tx, act: ActivationRecord, record: UsageRecord, now: int, *, via: str) -> bool:
        """One verified record, billed to ``act``'s license (or the earlier activation it names).

        True: stored now or before (acknowledge it); False: its sequence holds other content."""
        if record.sequence < 1 or record.period_end < record.period_start:
            raise bad(f"usage record {record.sequence} is malformed")
        if min(record.messages, record.bytes, record.client_seconds) < 0:
            raise bad(f"usage record {record.sequence} has negative usage")
        owner = self._owner(tx, act, record)
        high_water = tx.usage.usage_high_water(record.instance_fingerprint)
        values = {
            "instance_fingerprint": record.instance_fingerprint,
            "sequence": record.sequence,
            "license_id": owner.license_id,
            "activation_id": owner.id,
            "day": billing_day(record.period_start),
            "period_start": record.period_start,
            "period_end": record.period_end,
            "messages": record.messages,
            "bytes": record.bytes,
            "client_seconds": record.client_seconds,
            "received_at": now,
            "via": via,
        }
        earlier = tx.usage.insert_usage(values)
        if earlier is None:
            self._check_plausible(tx, owner, record, high_water, now)
            return True
        if all(earlier[k] == values[k] for k in _CONTENT):
            log.info("usage record %d of %s already stored", record.sequence, record.instance_fingerprint)
            return True
        self._flag(tx, owner, record, "conflict", f"stored before with {earlier['messages']} messages", now=now)
        return False

    def _check_plausible(self, tx: Tx, owner: ActivationRecord, record: UsageRecord, high_water: int, now: int) -> None:
        if not (record.messages or record.bytes or record.client_seconds):
            self._flag(tx, owner, record, "zero_usage", "an agent never closes an interval without usage", now=now)
        if record.sequence > high_water + MAX_RECORDS_PER_REQUEST:
            self._flag(tx, owner, record, "sequence_jump", f"{record.sequence - high_water} past the last", now=now)

    @staticmethod
    def _flag(tx: Tx, owner: ActivationRecord, record: UsageRecord, kind: str, detail: str, *, now: int) -> None:
        new = tx.usage.flag_usage(
            {
                "instance_fingerprint": record.instance_fingerprint,
                "kind": kind,
                "sequence": record.sequence,
                "license_id": owner.license_id,
                "activation_id": owner.id,
                "detail": f"usage record {record.sequence} ({record.messages} messages): {detail}"[:300],
                "flagged_at": now,
            }
        )
        if new:
            log.warning(
                "usage of activation %s flagged (%s): record %d of %s",
                owner.id,
                kind,
                record.sequence,
                record.instance_fingerprint,
            )

    @staticmethod
    def _owner(tx: Tx, act: ActivationRecord, record: UsageRecord) -> ActivationRecord:
        """The activation the usage was counted under: the record's own if it is this instance's
        (usage closed under an earlier activation still bills that license), else the sender."""
        if record.activation_id and record.activation_id != act.id:
            earlier = tx.get_activation(record.activation_id)
            if earlier is not None and earlier.instance_fingerprint == act.instance_fingerprint:
                return earlier
        return act

    @staticmethod
    def missing(tx: Tx, fingerprint: str) -> tuple[int, ...]:
        return Usage._missing(tx, fingerprint)

    @staticmethod
    def _missing(tx: Tx, fingerprint: str) -> tuple[int, ...]:
        count, highest = tx.usage.usage_sequences(fingerprint)
        if count == highest:
            return ()
        # Walk what is held, not 1..highest: a record numbered 10**15 must not make a loop that long.
        missing: list[int] = []
        expected = 1
        for sequence in sorted(tx.usage.usage_sequence_set(fingerprint)):
            missing.extend(range(expected, min(sequence, expected + _MAX_MISSING_LISTED - len(missing))))
            if len(missing) >= _MAX_MISSING_LISTED:
                break
            expected = sequence + 1
        return tuple(missing)


class GapWatch:
    """The holes one batch opens in instances' usage chains, announced once (webhook ``usage.gap``).

    Compared at the end of the batch, not per record: records arrive out of order (a retry, a
    floating server's outbox), and a hole the same batch fills is no gap. A hole known before
    the batch was announced when it opened. Costs two count queries per instance and batch while
    its chain has no hole."""

    def __init__(self, usage: Usage, tx: Tx) -> None:
        self._usage = usage
        self._tx = tx
        self._before: dict[str, tuple[ActivationRecord, set[int]]] = {}

    def watch(self, fingerprint: str, act: ActivationRecord) -> None:
        if fingerprint not in self._before:
            self._before[fingerprint] = (act, set(Usage.missing(self._tx, fingerprint)))

    def announce(self, via: str) -> None:
        for fingerprint, (act, before) in self._before.items():
            opened = sorted(set(Usage.missing(self._tx, fingerprint)) - before)
            if opened:
                log.warning("usage chain of %s has a new gap: %s", fingerprint, opened[:10])
                self._usage.ctx.event(
                    self._tx,
                    "usage.gap",
                    license_id=act.license_id,
                    activation_id=act.id,
                    instance_fingerprint=fingerprint,
                    missing=opened,
                    via=via,
                )
