"""The agent's end of the plugin's Unix socket: the :class:`Transport` and the frames it serves.

The plugin admits and refuses on its own (from the snapshot this module pushes) and tells the
agent what happened: connections, disconnections, refusals, ``$license`` requests. Everything
the agent publishes goes back through the plugin (``mosquitto_broker_publish``), so no MQTT
client can publish as the agent. When the socket drops (the broker restarted), the link
reconnects; the plugin then lists its live connections and they replace what the agent knew.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import time
from collections.abc import Coroutine, Hashable
from dataclasses import dataclass
from typing import Any

from ...agent import LicensingAgent
from ...agent.access import Role
from ...core import protocol
from ...core.gate import Refusal
from . import snapshot, wire
from .wake import Waker

log = logging.getLogger(__name__)

ROLES = {b"a": Role.ADMIN, b"r": Role.READER, b"u": Role.USER}
RECONNECT_DELAY = 0.2


@dataclass(frozen=True)
class _Request:
    """The MQTT 5 properties of the request being served (its reply honours them)."""

    conn_id: bytes  # the plugin's id of the connection that asked: its reply goes to it alone
    client_id: str
    response_topic: str
    correlation: bytes


_request: contextvars.ContextVar[_Request | None] = contextvars.ContextVar("mosquitto_request", default=None)


class PluginLink:
    def __init__(self, agent: LicensingAgent, socket_path: str, *, hold: int = 86400, refresh: float = 1.0) -> None:
        self.agent = agent
        self.socket_path = socket_path
        self.hold = hold
        self.refresh = refresh  # how often the snapshot is re-derived (it is pushed only when it changed)
        self.boot_id = ""
        self._writer: asyncio.StreamWriter | None = None
        self._wake: Waker | None = None
        self._conns: dict[bytes, tuple[str, bytes]] = {}  # plugin's connection id -> our key
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sent_snapshot = ""
        self._pushed_at = 0.0
        self._users = snapshot.user_lines(agent.config)
        self._dummy = snapshot.dummy_hash(self._users)
        self.up = asyncio.Event()

    # -- the agent's Transport --------------------------------------------------------------

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        correlation, to = b"", b""
        request = _request.get()
        if request is not None and request.response_topic:
            own = protocol.default_reply_topic(request.client_id)
            if topic == own and protocol.reply_topic_allowed(request.response_topic, request.client_id):
                topic = request.response_topic  # MQTT 5: the client named where its reply goes
            if topic == request.response_topic:
                correlation = request.correlation
        if request is not None and topic.startswith(protocol.REPLY_ROOT + "/"):
            # Only while that connection is still there: a CONNECT that took its client id (and
            # its persistent session) since must not read it.
            to = request.conn_id
        retained = b"1" if retain else b"0"
        # The rules first, on the same socket: whoever reads a reply, an event or the status finds
        # the plugin already deciding by what it says (an activation's new cap, a revocation).
        self.push_snapshot()
        self._send(wire.encode(wire.PUBLISH, topic.encode(), payload, retained, correlation, to))

    async def disconnect(self, conn: Hashable) -> None:
        self.push_snapshot()  # the rules that made the agent kick it go first: it must not get back in
        if isinstance(conn, tuple) and len(conn) == 2 and conn[0] == self.boot_id:
            self._send(wire.encode(wire.KICK, conn[1]))

    @property
    def waker(self) -> Waker | None:
        """How the broker is woken after a write (None: not connected)."""
        return self._wake

    # -- the connection ---------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, serve, reconnect: until cancelled."""
        refresher = asyncio.create_task(self._refresh_loop())
        try:
            while True:
                try:
                    reader, writer = await asyncio.open_unix_connection(self.socket_path)
                except OSError as exc:
                    log.debug("plugin socket %s not ready: %s", self.socket_path, exc)
                    await asyncio.sleep(RECONNECT_DELAY)
                    continue
                try:
                    await self._serve(reader, writer)
                except (asyncio.IncompleteReadError, ConnectionError, wire.FrameError) as exc:
                    log.warning("lost the Mosquitto plugin (%s); reconnecting", exc.__class__.__name__)
                finally:
                    self._writer = self._wake = None
                    self.up.clear()
                    writer.close()
                    with contextlib.suppress(Exception):
                        await writer.wait_closed()
                await asyncio.sleep(RECONNECT_DELAY)
        finally:
            refresher.cancel()
            for task in list(self._tasks):
                task.cancel()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(wire.encode(wire.HELLO, wire.HELLO_AGENT))
        incoming = wire.frames(reader)
        kind, fields = await anext(incoming)
        if kind != wire.HELLO or not fields or fields[0] != wire.HELLO_PLUGIN:
            raise wire.FrameError("the socket's peer is not the mqtt-licensing plugin")
        self._forget_all()
        self.boot_id = fields[1].decode() if len(fields) > 1 else ""
        self._wake = Waker(writer, fields[2] if len(fields) > 2 else b"")
        self._writer = writer
        self._sent_snapshot = ""
        self.push_snapshot()
        # The retained status, at once: the broker may have restarted without it.
        await self.publish(protocol.STATUS_TOPIC, json.dumps(self.agent.status_document()).encode(), retain=True)
        log.info("connected to the Mosquitto plugin on %s", self.socket_path)
        self.up.set()
        async for kind, fields in incoming:
            self._on_frame(kind, fields)

    def _send(self, frame: bytes) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(frame)
            if self._wake is not None:
                self._wake()

    def push_snapshot(self, *, force: bool = False) -> None:
        """Send the rules when they changed (or half their hold has passed)."""
        if self._writer is None:
            return
        now = time.time()
        text = snapshot.build(self.agent, now=int(now), hold=self.hold, dummy=self._dummy, users=self._users)
        # valid_until moves every second: compare without it, but renew well before it lapses.
        comparable = "\n".join(line for line in text.splitlines() if not line.startswith("valid_until"))
        if force or comparable != self._sent_snapshot or now - self._pushed_at > self.hold / 2:
            self._sent_snapshot = comparable
            self._pushed_at = now
            self._send(wire.encode(wire.SNAPSHOT, text.encode()))

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh)
            try:
                self.push_snapshot()
            except Exception:
                log.exception("could not build the snapshot for the Mosquitto plugin")

    # -- what the plugin reports ------------------------------------------------------------

    def _forget_all(self) -> None:
        for key in self._conns.values():
            self.agent.disconnected(key)
        self._conns.clear()

    def _on_frame(self, kind: bytes, fields: list[bytes]) -> None:
        if kind == wire.CONNECTED and len(fields) == 7:
            conn_id, client_id, has_user, username, role = fields[:5]
            key = (self.boot_id, conn_id)
            self._conns[conn_id] = key
            self.agent.admitted(
                key,
                client_id=client_id.decode(errors="replace"),
                username=username.decode(errors="replace") if has_user == b"1" else None,
                role=ROLES.get(role, Role.USER),
            )
        elif kind == wire.DISCONNECTED and len(fields) == 1:
            gone = self._conns.pop(fields[0], None)
            if gone is not None:
                self.agent.disconnected(gone)
        elif kind == wire.USAGE and len(fields) == 3 and all(f.isdigit() for f in fields):
            self._spawn(self._take_usage(self._writer, self.boot_id, *(int(f) for f in fields)))
        elif kind == wire.REFUSED and len(fields) == 4:
            client_id, has_user, username, reason = fields
            try:
                refusal = Refusal(reason.decode())
            except ValueError:
                return
            user = username.decode(errors="replace") if has_user == b"1" else None
            self.agent.refused(client_id.decode(errors="replace"), user, refusal)
        elif kind == wire.MESSAGE and len(fields) == 6:
            conn_id, topic, payload, response_topic, correlation, _role = fields
            sender = self._conns.get(conn_id)
            client = self.agent.clients.get(sender) if sender is not None else None
            if sender is None or client is None:
                return
            request = _Request(conn_id, client.client_id, response_topic.decode(errors="replace"), correlation)
            self._spawn(self._handle(sender, topic.decode(errors="replace"), payload, request))
        else:
            log.warning("ignored a frame of type %r from the plugin", kind)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _take_usage(
        self, writer: asyncio.StreamWriter | None, boot_id: str, sequence: int, messages: int, nbytes: int
    ) -> None:
        """A usage batch: acknowledged once it is on disk (the plugin holds it until then and sends
        it again to the next agent; a batch seen before is acknowledged and not counted)."""
        try:
            await self.agent.metering.take_batch(boot_id, sequence, messages, nbytes)
        except OSError as exc:
            log.error("usage batch %d could not be saved (%s); the plugin sends it again", sequence, exc)
            return
        if writer is self._writer:  # the same plugin run: batch numbers are per run
            self._send(wire.encode(wire.USAGE_ACK, str(sequence).encode()))

    async def _handle(self, key: Hashable, topic: str, payload: bytes, request: _Request) -> None:
        _request.set(request)  # this task's own context: only its reply carries these properties
        await self.agent.handle_message(key, topic, payload)
