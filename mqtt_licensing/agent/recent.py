"""The events ``$license/events/recent`` answers from: bounded, and kept across restarts.

Refusals (a CONNECT flood, a kicked fleet) have their own smaller ring, so however many there
are they never push a license transition out. The rings are saved to ``events.json`` in the
state folder (atomically, at most every ``SAVE_EVERY`` seconds and at shutdown): after a restart
the License page and ``events --since`` still show what happened before it. A snapshot is
taken on the event loop (where events are added) and written on a thread.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import threading
from collections import deque
from pathlib import Path
from typing import Any

from .._atomic import atomic_write

log = logging.getLogger(__name__)

RECENT_EVENTS = 500  # transitions and everything else kept: memory stays bounded
RECENT_REFUSALS = 100  # refused or kicked connections, kept apart
NOISY = frozenset({"connection_refused", "connection_overage", "client_disconnected"})
FILE_NAME = "events.json"
SAVE_EVERY = 2.0  # seconds: a flood of events costs one write per this long, not one each
_MAX_FILE = 8 * 1024 * 1024

Entry = tuple[int, float, dict[str, Any]]  # (order, wall time sent, event)


class RecentEvents:
    def __init__(self) -> None:
        self._order = itertools.count()
        self._events: deque[Entry] = deque(maxlen=RECENT_EVENTS)
        self._refusals: deque[Entry] = deque(maxlen=RECENT_REFUSALS)
        self.path: Path | None = None
        self.dirty = False
        self._lock = threading.Lock()

    def add(self, at: float, event: dict[str, Any]) -> None:
        ring = self._refusals if event.get("type") in NOISY else self._events
        ring.append((next(self._order), at, event))
        self.dirty = True

    def since(self, start: float) -> list[dict[str, Any]]:
        """The kept events sent at ``start`` or later, oldest first."""
        merged = heapq.merge(self._events, self._refusals, key=lambda entry: entry[0])
        return [event for _, at, event in merged if at >= start]

    def load(self, path: Path) -> None:
        """Take the events a previous run saved (a missing or damaged file: none), then save to ``path``."""
        self.path = path
        try:
            with path.open("rb") as fh:
                data = fh.read(_MAX_FILE + 1)
            saved = json.loads(data) if len(data) <= _MAX_FILE else None
            entries = saved.get("events") if isinstance(saved, dict) else None
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("recent events of the previous run not read from %s: %s", path, exc)
            return
        for entry in entries if isinstance(entries, list) else []:
            if (
                isinstance(entry, list)
                and len(entry) == 2
                and isinstance(entry[0], int | float)
                and isinstance(entry[1], dict)
            ):
                self.add(float(entry[0]), entry[1])
        self.dirty = False

    def snapshot(self) -> bytes | None:
        """The rings as the file's bytes if anything changed since the last one (call it where
        events are added: the event loop); None when there is nothing to save."""
        if self.path is None or not self.dirty:
            return None
        self.dirty = False
        merged = heapq.merge(self._events, self._refusals, key=lambda entry: entry[0])
        try:
            return json.dumps({"version": 1, "events": [[at, event] for _, at, event in merged]}).encode()
        except (TypeError, ValueError) as exc:
            log.warning("recent events not saved: %s", exc)
            return None

    def write(self, data: bytes) -> None:
        """Write a snapshot (blocking: run it off the loop); one writer at a time, newest last."""
        if self.path is None:
            return
        with self._lock:
            try:
                atomic_write(self.path, data)
            except OSError as exc:
                self.dirty = True
                log.warning("recent events not saved to %s: %s", self.path, exc)


__all__ = ["FILE_NAME", "RECENT_EVENTS", "RECENT_REFUSALS", "RecentEvents"]
