"""Usage counted in memory: the open interval of the ledger. No I/O, no locks.

Everything runs on the broker's event loop, so plain integer increments are atomic. The
adapter's delivery hook adds to :attr:`Meter.messages` and :attr:`Meter.bytes` directly
(one attribute add each per delivered PUBLISH, only for connections of a metered class);
connected time is kept per connection and cut at every interval boundary.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass


@dataclass(frozen=True)
class Totals:
    messages: int
    bytes: int
    client_seconds: int

    @property
    def empty(self) -> bool:
        return not (self.messages or self.bytes or self.client_seconds)


class Meter:
    __slots__ = ("_open", "_seconds", "bytes", "messages")

    def __init__(self) -> None:
        self.messages = 0
        self.bytes = 0
        self._seconds = 0.0
        self._open: dict[Hashable, float] = {}  # metered connection -> counted up to

    def delivered(self, payload_bytes: int) -> None:
        self.messages += 1
        self.bytes += payload_bytes

    def opened(self, conn: Hashable, now: float) -> None:
        self._open.setdefault(conn, now)

    def closed(self, conn: Hashable, now: float) -> None:
        since = self._open.pop(conn, None)
        if since is not None:
            self._seconds += max(0.0, now - since)

    def is_metered(self, conn: Hashable) -> bool:
        return conn in self._open

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def take(self, now: float) -> Totals:
        """Close the open interval: return its totals and start the next one at ``now``.

        Whole seconds go into the record; the fraction stays for the next interval, so
        client time is never rounded away however short the intervals are."""
        for conn, since in self._open.items():
            self._seconds += max(0.0, now - since)
            self._open[conn] = now
        whole = int(self._seconds)
        totals = Totals(self.messages, self.bytes, whole)
        self._seconds -= whole
        self.messages = self.bytes = 0
        return totals

    def give_back(self, totals: Totals) -> None:
        """A record that could not be written: its usage returns to the open interval."""
        self.messages += totals.messages
        self.bytes += totals.bytes
        self._seconds += totals.client_seconds
