"""A recording :class:`~mqtt_licensing.agent.Transport` for in-process agent tests (no broker).

    transport = RecordingTransport()
    await agent.start(transport)
    ... transport.events("activated"), transport.replies("admin-1") ...

It is not a fake of our own components: it stands where the broker would, keeping what the
agent publishes and whom it disconnects. ``on_publish`` (optional) runs at the moment of each
publish, to observe what is on disk when a message leaves.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from mqtt_licensing.core import protocol


@dataclass
class Published:
    topic: str
    payload: bytes
    retain: bool

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass
class RecordingTransport:
    published: list[Published] = field(default_factory=list)
    disconnected: list[Hashable] = field(default_factory=list)
    on_publish: Callable[[Published], None] | None = None

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        message = Published(topic, payload, retain)
        if self.on_publish is not None:
            self.on_publish(message)
        self.published.append(message)

    async def disconnect(self, conn: Hashable) -> None:
        self.disconnected.append(conn)

    def events(self, event_type: str | None = None) -> list[dict[str, Any]]:
        found = [m.json() for m in self.published if m.topic == protocol.EVENTS_TOPIC]
        return [e for e in found if event_type is None or e["type"] == event_type]

    def replies(self, client_id: str) -> list[Any]:
        topic = protocol.default_reply_topic(client_id)
        return [m.json() for m in self.published if m.topic == topic]

    async def settle(self) -> None:
        """Let the agent's spawned publishes run (they are tasks on this loop)."""
        for _ in range(5):
            await asyncio.sleep(0)


__all__ = ["Published", "RecordingTransport"]
