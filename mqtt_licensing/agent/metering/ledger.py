"""The durable usage ledger: closed intervals as signed records, one file each, in the state folder.

``<state_dir>/usage/<sequence>.usage`` holds one :class:`~mqtt_licensing.core.usage_documents.UsageRecord`
exactly as signed. A record is written with ``atomic_write`` (temp file, fsync, rename, fsync of
the folder) before anything treats it as closed, so kill -9 leaves either the whole record or
none of it: the usage of the open interval is all a crash can lose, and a closed record can
never be lost or doubled. ``usage/sequence`` keeps the highest sequence ever assigned, written
before acknowledged records are deleted, so a number is never handed out twice even when the
folder is empty. Blocking I/O: the agent calls it through ``asyncio.to_thread``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from ..._atomic import atomic_write

log = logging.getLogger(__name__)

_RECORD = re.compile(r"^(\d{12})\.usage$")
SEQUENCE_FILE = "sequence"


class Ledger:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._pending: dict[int, bytes] = {}
        self._high_water = 0

    def load(self, floor: int = 0) -> None:
        """``floor``: the highest sequence known elsewhere (the sealed state.json keeps the vendor's
        high-water mark), so a wiped or restored usage folder never reuses a number."""
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        for leftover in self.folder.glob(".*.tmp"):  # a write cut short by a crash: never a record
            leftover.unlink(missing_ok=True)
        for path in self.folder.iterdir():
            match = _RECORD.match(path.name)
            if match:
                self._pending[int(match.group(1))] = path.read_bytes()
        marker = self.folder / SEQUENCE_FILE
        stored = int(marker.read_text().strip() or 0) if marker.exists() else 0
        self._high_water = max([stored, floor, *self._pending])

    @property
    def next_sequence(self) -> int:
        return self._high_water + 1

    @property
    def high_water(self) -> int:
        return self._high_water

    def raise_floor(self, sequence: int) -> None:
        """The vendor holds records up to ``sequence``: number the next ones above it."""
        if sequence > self._high_water:
            self._high_water = sequence
            atomic_write(self.folder / SEQUENCE_FILE, str(sequence).encode())

    def append(self, sequence: int, blob: bytes) -> None:
        if sequence != self.next_sequence:
            raise ValueError(f"usage record {sequence} out of order (next is {self.next_sequence})")
        atomic_write(self.folder / f"{sequence:012d}.usage", blob)
        self._pending[sequence] = blob
        self._high_water = sequence

    def pending(self, limit: int | None = None) -> list[tuple[int, bytes]]:
        """The records not yet acknowledged, oldest first."""
        return sorted(self._pending.items())[:limit]

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    def drop(self, sequences: list[int] | tuple[int, ...]) -> int:
        """Delete acknowledged records; returns how many were held."""
        held = [s for s in sequences if s in self._pending]
        if not held:
            return 0
        atomic_write(self.folder / SEQUENCE_FILE, str(self._high_water).encode())
        for sequence in held:
            (self.folder / f"{sequence:012d}.usage").unlink(missing_ok=True)
            del self._pending[sequence]
        return len(held)
