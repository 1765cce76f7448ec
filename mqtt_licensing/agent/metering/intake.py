"""Usage counted outside the agent's process (the Mosquitto plugin), taken in exactly once.

The counter hands numbered batches; each is saved here, on disk, before the agent acknowledges it,
and the counter keeps a batch until it is acknowledged and resends it to the next agent. So a
kill -9 of the agent at any moment neither loses a batch (it was not acknowledged: it comes again)
nor doubles one (its number is on disk: it is acknowledged again and not counted).

``<state_dir>/usage/intake.json`` (version 1) holds the last batch taken in (``source``: the
counter's boot id, ``sequence``), the usage taken in and not yet closed into a ledger record
(``messages``, ``bytes``), and ``closing``: the part of it being closed into record ``record``.
Closing is two writes (this file, then the record), so after a crash between them the record's
presence on load tells whether the usage is in the ledger or goes back to the open interval.
Blocking I/O: the agent calls it through ``asyncio.to_thread``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..._atomic import atomic_write
from ...core.errors import ErrorCode, LicensingError

log = logging.getLogger(__name__)

INTAKE_FILE = "intake.json"
VERSION = 1


@dataclass(frozen=True)
class Closing:
    record: int  # the ledger sequence these counts are written into
    messages: int
    bytes: int


class Intake:
    def __init__(self, folder: Path) -> None:
        self.path = folder / INTAKE_FILE
        self.source = ""
        self.sequence = 0
        self.messages = 0
        self.bytes = 0
        self.closing: Closing | None = None

    @property
    def empty(self) -> bool:
        return not (self.messages or self.bytes)

    def load(self, ledger_high_water: int) -> None:
        """Read the file; a close cut short by a crash is finished or undone. A file of a newer
        version: STATE_TOO_NEW; one that does not parse: STATE_CORRUPT (the agent does not start)."""
        if not self.path.exists():
            return
        try:
            data = json.loads(self.path.read_bytes())
            version = data.get("version")
            if isinstance(version, int) and version > VERSION:
                # Left as it is: a newer version's usage, which that version may come back for.
                raise LicensingError(
                    ErrorCode.STATE_TOO_NEW,
                    f"{self.path} has format version {version}, newer than this version reads ({VERSION}); "
                    "upgrade mqtt-licensing (the file was left as it is)",
                )
            self.source, self.sequence = str(data["source"]), int(data["sequence"])
            self.messages, self.bytes = int(data["messages"]), int(data["bytes"])
            closing = data.get("closing")
            if closing is not None:
                closing = Closing(int(closing["record"]), int(closing["messages"]), int(closing["bytes"]))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            # Written atomically, so never torn: only a hand edit gets here. Usage is not guessed.
            raise LicensingError(ErrorCode.STATE_CORRUPT, f"{self.path} cannot be read ({exc})") from None
        if closing is not None and closing.record > ledger_high_water:
            # The record was never written: its usage is still open.
            self.messages += closing.messages
            self.bytes += closing.bytes
            log.warning("usage intake: record %d was not written before a crash; its usage is kept", closing.record)
        self.closing = None

    def seen(self, source: str, sequence: int) -> bool:
        """A batch already taken in (a resend after a lost acknowledgement)."""
        return source == self.source and sequence <= self.sequence

    def take(self, source: str, sequence: int, messages: int, nbytes: int) -> None:
        """Save one batch; the caller acknowledges it only once this returned."""
        self._write(source, sequence, self.messages + messages, self.bytes + nbytes, self.closing)
        self.source, self.sequence = source, sequence
        self.messages += messages
        self.bytes += nbytes

    def begin_close(self, record: int) -> None:
        """Everything open goes into ledger record ``record``, written next."""
        closing = Closing(record, self.messages, self.bytes)
        self._write(self.source, self.sequence, 0, 0, closing)
        self.messages = self.bytes = 0
        self.closing = closing

    def end_close(self, written: bool) -> None:
        """The record was written (or not: its usage returns to the open interval). On disk the
        file still names it; load() resolves that from the ledger, the next write clears it."""
        if not written and self.closing is not None:
            self.messages += self.closing.messages
            self.bytes += self.closing.bytes
        self.closing = None

    def _write(self, source: str, sequence: int, messages: int, nbytes: int, closing: Closing | None) -> None:
        data: dict[str, Any] = {
            "version": VERSION,
            "source": source,
            "sequence": sequence,
            "messages": messages,
            "bytes": nbytes,
            "closing": None if closing is None else closing.__dict__,
        }
        atomic_write(self.path, json.dumps(data, sort_keys=True).encode())
