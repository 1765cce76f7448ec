"""Everything the agent sends through the broker: replies, events and the retained status.

Publishing never raises into the agent (a broken transport is logged), and events and status
go out as tasks so that no license operation waits for the broker. Events of a license change
are held until the change is saved: whoever sees one (and then kills the broker) finds the
change on disk.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..core import protocol
from ..core.timefmt import iso
from .access import Transport
from .recent import RECENT_EVENTS, SAVE_EVERY, RecentEvents

log = logging.getLogger(__name__)


class Publisher:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.transport: Transport | None = None  # None until the broker runs: nothing is sent
        self._tasks: set[asyncio.Task[Any]] = set()
        self._held: list[dict[str, Any]] | None = None
        self._last_status: dict[str, Any] | None = None
        # The latest events with the time each was sent: `$license/events/recent` answers from it,
        # so a follower that starts late (or came back after a network blip) sees what it missed.
        self._recent = RecentEvents()
        self._saving = False

    def keep_recent_in(self, path: Path) -> None:
        """Restore the recent events a previous run saved at ``path``, and save them there from now on."""
        self._recent.load(path)

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        if self.transport is None:
            return
        try:
            await self.transport.publish(topic, payload, retain=retain)
        except Exception:
            log.exception("could not publish on %s", topic)

    def emit(self, event_type: str, **data: Any) -> None:
        self._send_event({"type": event_type, "at": iso(self._clock()), **data})

    def emit_when_saved(self, event_type: str, **data: Any) -> None:
        """An event about a license change: held while :meth:`holding` (until the change is saved)."""
        event = {"type": event_type, "at": iso(self._clock()), **data}
        if self._held is None:
            self._send_event(event)
        else:
            self._held.append(event)

    @contextmanager
    def holding(self) -> Iterator[list[dict[str, Any]]]:
        """Hold change events; the caller sends the returned list with :meth:`release` once saved."""
        held: list[dict[str, Any]] = []
        self._held = held
        try:
            yield held
        finally:
            self._held = None

    def release(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            self._send_event(event)

    def status(self, document: dict[str, Any], *, force: bool = False) -> None:
        """Republish the retained status when anything but the counters and the clock changed."""
        comparable = {k: v for k, v in document.items() if k not in ("connections", "clock", "updated_at")}
        if force or comparable != self._last_status:
            self._last_status = comparable
            self.spawn(self.publish(protocol.STATUS_TOPIC, json.dumps(document).encode(), retain=True))

    def spawn(self, coro: Awaitable[Any]) -> None:
        try:
            task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        except RuntimeError:
            coro.close()  # type: ignore[attr-defined]
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._save_recent()

    def recent(self, since: float | None = None) -> list[dict[str, Any]]:
        """The kept events of the last ``since`` seconds (all kept ones for None), oldest first."""
        start = float("-inf") if since is None else self._clock() - since
        return self._recent.since(start)

    def _send_event(self, event: dict[str, Any]) -> None:
        self._recent.add(self._clock(), event)
        self.spawn(self.publish(protocol.EVENTS_TOPIC, json.dumps(event).encode()))
        if self._recent.path is not None and not self._saving:
            self._saving = True
            self.spawn(self._save_soon())

    async def _save_soon(self) -> None:
        try:
            await asyncio.sleep(SAVE_EVERY)  # the events of the next seconds go in the same write
        finally:
            self._saving = False
        await self._save_recent()

    async def _save_recent(self) -> None:
        data = self._recent.snapshot()  # here, on the loop: events are never added mid-copy
        if data is not None:
            await asyncio.to_thread(self._recent.write, data)


__all__ = ["RECENT_EVENTS", "Publisher"]
