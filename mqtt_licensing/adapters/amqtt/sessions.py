"""Patch 14 of :mod:`.patches`: what persistent sessions may hold while their client is away.

amqtt keeps the session of a clean_session=0 client after it leaves, with every QoS 1/2
message for its subscriptions queued in an unbounded ``asyncio.Queue``, for ever (its
``session_expiry_interval`` is off by default). One absent subscriber to a busy topic, or many
clients that connect once and leave, then hold the broker's memory. Here:

* an offline session expires after ``session_expiry`` seconds (amqtt's own session monitor
  reaps it, once a second), unless the broker config sets ``session_expiry_interval`` itself;
* its queue keeps at most ``session_queue_messages`` messages and ``session_queue_bytes`` bytes
  of payload, dropping the oldest (logged once per session);
* at most ``offline_sessions_per_username`` offline sessions per username and
  ``offline_sessions_per_source`` per source address are kept; past that, the oldest goes.
"""

from __future__ import annotations

import logging
import time
import weakref
from dataclasses import dataclass
from typing import Any

from amqtt.broker import Broker
from amqtt.session import Session

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionLimits:
    expiry: int = 3600
    queue_messages: int = 1000
    queue_bytes: int = 8 * 2**20
    per_username: int = 1000
    per_source: int = 1000


class OfflineSessions:
    def __init__(self, broker: Broker, limits: SessionLimits) -> None:
        self._broker = broker
        self.limits = limits
        self._trimmed: weakref.WeakSet[Session] = weakref.WeakSet()  # sessions whose drop was logged

    def install(self) -> None:
        b = self._broker
        if b.config.session_expiry_interval is None and self.limits.expiry > 0:
            b.config.session_expiry_interval = self.limits.expiry
        self._orig_retain_broadcast = b._retain_broadcast_message  # noqa: SLF001
        b._retain_broadcast_message = self._retain_broadcast_message  # noqa: SLF001

    async def _retain_broadcast_message(self, broadcast: dict[str, Any], qos: int, target: Session) -> None:
        await self._orig_retain_broadcast(broadcast, qos, target)
        queued = target.retained_messages._queue  # noqa: SLF001  (asyncio.Queue keeps a deque)
        size = sum(len(m.data) for m in queued)
        dropped = 0
        while queued and (len(queued) > self.limits.queue_messages or size > self.limits.queue_bytes):
            size -= len(queued.popleft().data)
            dropped += 1
        if dropped and target not in self._trimmed:
            self._trimmed.add(target)
            log.warning(
                "offline session %r: queue over %d messages / %d bytes, dropping its oldest messages "
                "(session_queue_messages, session_queue_bytes; logged once per session)",
                target.client_id,
                self.limits.queue_messages,
                self.limits.queue_bytes,
            )

    async def went_offline(self, session: Session) -> None:
        """A persistent session's client left: keep at most the allowed offline sessions of its
        username and of its source address, dropping the ones offline the longest."""
        if session.clean_session:
            return
        for attribute, limit in (("username", self.limits.per_username), ("remote_address", self.limits.per_source)):
            value = getattr(session, attribute)
            if value is None:
                continue
            now = int(time.time())
            offline = [
                (s.last_disconnect_time or now, client_id)  # the one leaving now may not be marked yet
                for client_id, (s, _handler) in self._broker.sessions.items()
                if getattr(s, attribute) == value and (s is session or s.transitions.state == "disconnected")
            ]
            if len(offline) <= limit:
                continue
            offline.sort()
            for _when, client_id in offline[: len(offline) - limit]:
                await self._broker._cleanup_session(client_id)  # noqa: SLF001
            log.warning(
                "more than %d offline sessions of %s %r: dropped the %d oldest (offline_sessions_per_%s)",
                limit,
                attribute.replace("remote_address", "source"),
                value,
                len(offline) - limit,
                "username" if attribute == "username" else "source",
            )
