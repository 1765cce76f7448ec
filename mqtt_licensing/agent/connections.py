"""Counting admitted connections ourselves (amqtt's session states are unreliable:
refused CONNECTs stay "connected" forever, take-overs reuse session objects).

A connection is reserved when the gate admits it - synchronously, so two racing
CONNECTs can never both take the last slot - and confirmed when the broker says
it is connected. A reservation the broker never confirms (another auth plugin
refused it, the socket died before CONNACK) is dropped after ``confirm_within``.
Counts are per connection key with a reference count, because a take-over makes
one key stand for two sockets for a moment.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass


@dataclass
class _Entry:
    refs: int
    admin: bool  # not counted against the license: an admin, or a reader (see ``reader``)
    reserved_at: float
    reader: bool = False


class ConnectionTracker:
    def __init__(self, confirm_within: float = 30.0) -> None:
        self._entries: dict[Hashable, _Entry] = {}
        self._unconfirmed: set[Hashable] = set()
        self._non_admin_refs = 0  # kept incrementally: read on every CONNECT
        self._confirm_within = confirm_within

    def reserve(self, key: Hashable, *, admin: bool, now: float, reader: bool = False) -> None:
        """``admin``: not counted against the license (an admin, or with ``reader`` a reader)."""
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry(0, admin, now, reader)
        elif entry.admin != admin:  # the same key re-authenticated in another role
            self._non_admin_refs += entry.refs if entry.admin else -entry.refs
            entry.admin = admin
        entry.reader = reader
        entry.refs += 1
        entry.reserved_at = now
        self._unconfirmed.add(key)
        if not admin:
            self._non_admin_refs += 1

    def confirm(self, key: Hashable) -> None:
        entry = self._entries.get(key)
        if entry is not None:
            self._unconfirmed.discard(key)

    def release(self, key: Hashable) -> None:
        entry = self._entries.get(key)
        if entry is None:
            return
        entry.refs -= 1
        if not entry.admin:
            self._non_admin_refs -= 1
        if entry.refs <= 0:
            del self._entries[key]
            self._unconfirmed.discard(key)

    def non_admin_count(self, now: float) -> int:
        if self._unconfirmed:
            self._expire(now)
        return self._non_admin_refs

    def admin_count(self, *, readers: bool = False) -> int:
        """Admin connections open now (with ``readers``: reader connections instead)."""
        return sum(e.refs for e in self._entries.values() if e.admin and e.reader == readers)  # a handful

    def counts(self, key: Hashable) -> bool:
        """Is this connection held and counted against the license's limit?"""
        entry = self._entries.get(key)
        return entry is not None and not entry.admin

    def non_admin_keys(self) -> list[Hashable]:
        return [k for k, e in self._entries.items() if not e.admin]

    def holds(self, key: Hashable) -> bool:
        return key in self._entries

    def _expire(self, now: float) -> None:
        for key in [k for k in self._unconfirmed if now - self._entries[k].reserved_at > self._confirm_within]:
            entry = self._entries.pop(key)
            self._unconfirmed.discard(key)
            if not entry.admin:
                self._non_admin_refs -= entry.refs
