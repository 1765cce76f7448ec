"""Metering: usage of metered client classes, counted in the broker, closed into signed
records every ``usage_interval`` and at shutdown, kept until the vendor acknowledges them.

* :mod:`.meter`: the open interval in memory (the adapter's delivery hook adds to it);
* :mod:`.ledger`: closed records on disk, one atomic file each;
* :mod:`.intake`: batches counted outside the agent's process (the Mosquitto plugin), saved
  before they are acknowledged, so they reach the ledger exactly once across a kill -9;
* :mod:`.delivery`: carrying records to the vendor and dropping them on its signed receipt.

Units (topics.md "Usage"): ``messages`` and ``bytes`` (payload) of PUBLISH packets delivered to
a metered connection, ``client_seconds`` of metered connections (the vendor shows client-hours).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Hashable, Iterable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ...core.errors import ErrorCode, LicensingError
from ...core.features import BUILTIN, Feature
from ...core.timefmt import iso
from ...core.usage_documents import UsageAck, UsageRecord
from .intake import Intake
from .ledger import Ledger
from .meter import Meter, Totals

log = logging.getLogger(__name__)

USAGE_FOLDER = "usage"
MAX_RECORDS_PER_REPORT = 300  # one report stays well under the servers' 256 KiB request limit
MAX_RECORDS_PER_CODE = 100  # an offline code is a signed document of at most 64 KiB


def metered_names(definitions: Iterable[Feature] = ()) -> frozenset[str]:
    """The metered features by the license's signed definitions (the built-in ones where the
    license defines none)."""
    table = {**BUILTIN, **{d.name: d for d in definitions}}
    return frozenset(name for name, feature in table.items() if feature.metered)


def needs_metering(features: frozenset[str], definitions: Iterable[Feature] = ()) -> bool:
    """Whether a client needing ``features`` is metered: one of them is a metered feature."""
    return not features.isdisjoint(metered_names(definitions))


class Metering:
    def __init__(self, state_dir: str | Path, *, clock: Callable[[], float]) -> None:
        self.meter = Meter()
        self.ledger = Ledger(Path(state_dir).expanduser() / USAGE_FOLDER)
        self.intake = Intake(self.ledger.folder)
        self._identity: Ed25519PrivateKey | None = None  # set by load(): nothing is signed before
        self.fingerprint = ""
        self._clock = clock
        self._write_lock = asyncio.Lock()
        self.interval_start = int(clock())
        self.last_delivered_at: int | None = None
        self.last_error: dict[str, str] | None = None
        self.missing: tuple[int, ...] = ()  # holes the vendor reported

    async def load(self, identity: Ed25519PrivateKey, fingerprint: str, floor: int = 0) -> None:
        self._identity, self.fingerprint = identity, fingerprint
        await asyncio.to_thread(self.ledger.load, floor)
        await asyncio.to_thread(self.intake.load, self.ledger.high_water)
        # What the intake took in before a restart and no record holds yet: the open interval's.
        self.meter.messages += self.intake.messages
        self.meter.bytes += self.intake.bytes
        if self.ledger.pending_count:
            log.info("usage ledger: %d record(s) await the vendor's acknowledgement", self.ledger.pending_count)

    # -- the broker's calls --------------------------------------------------------------

    def opened(self, conn: Hashable) -> None:
        self.meter.opened(conn, self._clock())

    def closed(self, conn: Hashable) -> None:
        self.meter.closed(conn, self._clock())

    async def take_batch(self, source: str, sequence: int, messages: int, nbytes: int) -> None:
        """A batch counted outside this process: saved on disk when this returns (the caller may
        acknowledge it then), counted once however often it is sent. OSError: not saved."""
        async with self._write_lock:
            if self.intake.seen(source, sequence):
                return
            await asyncio.to_thread(self.intake.take, source, sequence, messages, nbytes)
            self.meter.messages += messages
            self.meter.bytes += nbytes

    # -- closing intervals ---------------------------------------------------------------

    async def close_interval(self, *, license_id: str | None, activation_id: str | None) -> UsageRecord | None:
        """Turn the open interval into a signed record on disk. An interval with no usage makes none
        (sequences stay contiguous: a number is only taken by a record that exists)."""
        async with self._write_lock:
            now = self._clock()
            start, end = self.interval_start, int(now)
            totals = self.meter.take(now)
            self.interval_start = end
            if totals.empty or self._identity is None:
                return None
            record = UsageRecord(
                instance_fingerprint=self.fingerprint,
                sequence=self.ledger.next_sequence,
                period_start=start,
                period_end=end,
                messages=totals.messages,
                bytes=totals.bytes,
                client_seconds=totals.client_seconds,
                license_id=license_id,
                activation_id=activation_id,
            )
            closing = not self.intake.empty
            try:
                if closing:  # the intake's counts go into this record: said on disk first
                    await asyncio.to_thread(self.intake.begin_close, record.sequence)
                await asyncio.to_thread(self.ledger.append, record.sequence, record.sign(self._identity))
            except OSError as exc:
                if closing:
                    self.intake.end_close(written=False)
                self.meter.give_back(totals)
                self.interval_start = start
                log.error("usage record %d could not be written (%s); kept in memory", record.sequence, exc)
                return None
            if closing:
                self.intake.end_close(written=True)
            return record

    # -- delivery ------------------------------------------------------------------------

    def pending(self) -> list[tuple[int, bytes]]:
        return self.ledger.pending(MAX_RECORDS_PER_REPORT)

    async def acknowledge(self, blob: bytes, vendor_key: Any, nonce: str, sent: list[int]) -> UsageAck:
        """Verify the vendor's receipt for exactly this report, then delete the records it names."""
        ack = UsageAck.open(blob, vendor_key)
        if ack.instance_fingerprint != self.fingerprint or ack.request_nonce != nonce:
            raise LicensingError(ErrorCode.WRONG_DOCUMENT, "the usage receipt answers another report")
        stored = [s for s in ack.sequences if s in sent]
        conflicts = sorted(s for s in ack.conflicts if s in sent and s not in stored)
        async with self._write_lock:
            await asyncio.to_thread(self.ledger.drop, stored)
            await asyncio.to_thread(self.ledger.raise_floor, ack.high_water)
            if conflicts:
                await asyncio.to_thread(self._renumber, conflicts)
        self.missing = ack.missing
        self.last_delivered_at = int(self._clock())
        self.last_error = None
        if ack.missing:
            log.warning("the vendor misses usage record(s) %s of this instance", list(ack.missing)[:20])
        return ack

    def _renumber(self, sequences: list[int]) -> None:
        """The vendor holds these numbers with other usage (this folder was wiped or restored):
        the same usage, signed again above the vendor's high-water mark. Blocking I/O."""
        held = dict(self.ledger.pending())
        for old in sequences:
            if old not in held or self._identity is None:
                continue
            record = dataclasses.replace(
                UsageRecord.from_body(_unverified(held[old])), sequence=self.ledger.next_sequence
            )
            self.ledger.append(record.sequence, record.sign(self._identity))  # first: a crash loses nothing
            self.ledger.drop([old])
            log.warning(
                "usage record %d was numbered %d: the vendor holds %d with other usage", old, record.sequence, old
            )

    def carried(self) -> list[bytes]:
        return [blob for _seq, blob in self.ledger.pending(MAX_RECORDS_PER_CODE)]

    async def stored(self, sequences: list[int]) -> None:
        async with self._write_lock:
            await asyncio.to_thread(self.ledger.drop, sequences)
        self.last_delivered_at = int(self._clock())

    def oldest_pending_start(self) -> int | None:
        """When the oldest undelivered usage began (None: nothing waits)."""
        first = self.ledger.pending(1)
        if not first:
            return None
        return UsageRecord.from_body(_unverified(first[0][1])).period_start

    def status(self) -> dict[str, Any]:
        return {
            "open_since": iso(self.interval_start),
            "metered_connections": self.meter.open_connections,
            "pending_records": self.ledger.pending_count,
            "oldest_pending_at": iso(self.oldest_pending_start()),
            "next_sequence": self.ledger.next_sequence,
            "last_delivered_at": iso(self.last_delivered_at),
            "missing_at_vendor": list(self.missing[:20]),
            "last_error": self.last_error,
        }


def _unverified(blob: bytes) -> dict[str, Any]:
    from ...core.signing import parse_envelope

    return parse_envelope(blob).unverified_body()  # our own file; signature checked by the vendor


__all__ = ["Meter", "Metering", "Totals", "metered_names", "needs_metering"]
