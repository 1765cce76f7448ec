"""Every use of amqtt 0.12.1 internals, in one place, each with its reason and its test.

amqtt has no public hook for what these do; each wraps one ``Broker`` method on *one*
broker instance (never class-wide), delegates to the original wherever it can, and
names its regression test (under tests/adapters/). Upgrading amqtt means re-reading
this file against the new ``amqtt/broker.py`` and running those tests.

1. ``_client_connected``: every socket's reader is limited to ``max_packet_size``; a
   larger packet closes the connection before its body is read (amqtt buffers a whole
   PUBLISH first, any size). test_limits.py::test_oversized_publish_*
2. ``_initialize_client_session`` (replaced): the CONNECT must arrive within
   ``connect_timeout`` (one timer for all sockets, :class:`.connect.ConnectDeadlines`; a
   socket closed mid-CONNECT frees its listener slot as amqtt's own read does); the client
   is authenticated *before* amqtt touches its session table (amqtt deletes or rewrites an
   existing session first, so a wrong-password CONNECT could wipe a live client's
   subscriptions, and every refused CONNECT stayed in the table for ever, ~36 KiB each);
   a refused CONNECT gets CONNACK 5 and leaves
   nothing behind; a clean_session=0 CONNECT closes the live connection holding that
   client id and waits for it to end (amqtt otherwise lets two live sockets share one
   Session), and so does a clean_session=1 CONNECT (MQTT 3.1.1 §3.1.4-2; a reconnect
   at the connection limit takes its own place); keepalive is 1.5 x the client's; a client
   id taken over by another username (or anonymous) gets a fresh session, never the
   owner's queue. test_sessions.py, test_connections.py, test_limits.py, test_access.py::test_reconnect_*
3. ``_authenticate``: answers with the verdict (2) already reached for this session; (2)
   asks the licensing plugin directly when it is amqtt's only auth plugin (no Task per CONNECT).
4. ``_handle_client_session``: the life of one socket, so roles, counts and replies
   belong to the connection (its protocol handler), never to a shared Session.
   test_connections.py::test_squatter_*
5. ``_handle_message_delivery``: amqtt answers a client PUBLISH to any ``$`` topic by
   leaving the client's message loop with its socket open (a half-dead connection).
   ``$license/...`` goes to the agent, but only from the connection that holds the
   client id now; other ``$`` topics are dropped. test_amqtt_patches.py
6.-8. ``$`` topics and the per-message fast path: :mod:`.topics`.
9. ``BrokerProtocolHandler.handle_read_timeout`` (per handler): amqtt's reader times
   out after the keepalive but the broker's handler ignores it; it now closes the
   connection as MQTT 3.1.1 §3.1.2.10 requires. test_limits.py::test_silent_client_*
10. ``BrokerContext._broker_instance``: the plugin context keeps the broker only there.
11. ``BrokerProtocolHandler.mqtt_publish`` (per handler, metered connections only): see
    :mod:`.metering`. tests/agent/test_metering_broker.py, benchmarks/metering.py
12. In (2), the CONNECT's protocol level is read before amqtt parses the packet: amqtt
    speaks MQTT 3.1.1 only and misreads an MQTT 5 CONNECT with properties (it waits for
    bytes that never come, or logs a traceback). Any other level is answered with CONNACK
    0x01 (unacceptable protocol version) and one log line. test_access.py::test_mqtt5_*
13. ``_create_server_instance`` (``ws`` listeners only): amqtt's own ``websockets.serve`` call
    with an Origin check at the handshake (:mod:`.origins`): any web page a user opens could
    otherwise speak MQTT to the broker. In (2), anonymous CONNECTs over WebSocket are refused
    unless ``ws_allow_anonymous``. test_websocket_origin.py
14. ``_retain_broadcast_message`` and the broker's ``session_expiry_interval``: offline
    persistent sessions expire, their queues are capped, and so is their number per username
    and per source (:mod:`.sessions`). test_sessions.py
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import weakref
from collections.abc import Coroutine, Hashable
from typing import Any, Final, Protocol

from amqtt.adapters import ReaderAdapter, WriterAdapter
from amqtt.broker import Broker
from amqtt.errors import AMQTTError
from amqtt.mqtt.connack import NOT_AUTHORIZED
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.session import Session
from amqtt.utils import gen_client_id

from ...core.protocol import is_license_topic
from .connect import ConnectDeadlines, LimitedReader, checked_connect_start, close_unread, refuse
from .metering import DeliveryMeter, count_deliveries
from .origins import OriginPolicy, WebSocketOrigins
from .sessions import OfflineSessions, SessionLimits
from .topics import ReservedTopics
from .versions import amqtt_version, missing_targets

log = logging.getLogger(__name__)

# The connection of a session no socket holds right now (a persistent session offline).
OFFLINE: Final = object()
_TAKE_OVER_WAIT = 5.0  # seconds for the previous connection's loop to end before forcing it


class ConnectionHooks(Protocol):
    """What the patches tell the plugin. ``conn`` is the connection's protocol handler."""

    def license_message(self, conn: Hashable, topic: str, payload: bytes) -> None: ...

    def opened(self, conn: Hashable) -> DeliveryMeter | None: ...  # the meter of its deliveries, if metered

    def closed(self, conn: Hashable) -> None: ...

    def may_get_retained(self, conn: Hashable, topic_filter: str) -> bool: ...

    async def admit(self, conn: Hashable, session: Session) -> bool: ...  # amqtt's authenticate, with conn

    def confined(self, conn: Hashable) -> bool: ...

    def connack_code(self, conn: Hashable) -> int:
        """The CONNACK return code for a refused CONNECT (5: not authorized, unless said otherwise)."""
        ...


class BrokerPatches:
    """Installs the patches on one broker and keeps the per-socket facts they need."""

    def __init__(
        self,
        broker: Broker,
        hooks: ConnectionHooks,
        *,
        connect_timeout: float,
        max_packet_size: int,
        origins: OriginPolicy | None = None,
        ws_allow_anonymous: bool = True,
        sessions: SessionLimits | None = None,
    ) -> None:
        self._broker = broker
        self._hooks = hooks
        self.connect_timeout = connect_timeout
        self._deadlines = ConnectDeadlines(connect_timeout)
        self.max_packet_size = max_packet_size
        self._origins = origins
        self._ws_allow_anonymous = ws_allow_anonymous
        self._offline = OfflineSessions(broker, sessions) if sessions is not None else None
        # connection -> an Event set when it has ended, made only when a take-over waits for it
        self._live: dict[BrokerProtocolHandler, asyncio.Event | None] = {}
        self._holders: dict[str, BrokerProtocolHandler] = {}  # client id -> the connection holding it now
        self._by_session: dict[int, BrokerProtocolHandler] = {}  # id(Session) -> its live connection
        self._authenticating: dict[int, BrokerProtocolHandler] = {}  # id(incoming Session) -> connection
        self._accepted: set[int] = set()  # id(Session) authenticated by patch 2, not yet by amqtt
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- what the plugin asks ----------------------------------------------------------

    def connection_of(self, session: Session) -> Hashable:
        key = id(session)
        return self._authenticating.get(key) or self._by_session.get(key) or OFFLINE

    async def disconnect(self, conn: Hashable) -> None:
        if isinstance(conn, BrokerProtocolHandler) and conn in self._live:
            await conn.handle_connection_closed()  # ends the client loop exactly like a lost socket

    # -- installation ------------------------------------------------------------------

    def install(self) -> BrokerPatches:
        b = self._broker
        # Each target must exist as a callable on this amqtt: assigning an attribute amqtt no
        # longer reads would leave a patch inert without a sound (see versions.SUPPORTED_AMQTT).
        if missing := missing_targets(b):
            raise RuntimeError(f"amqtt {amqtt_version()} lacks what the adapter patches: {', '.join(missing)}")
        self._orig_client_connected = b._client_connected  # noqa: SLF001
        self._orig_authenticate = b._authenticate  # noqa: SLF001
        self._orig_handle_client_session = b._handle_client_session  # noqa: SLF001
        self._orig_delivery = b._handle_message_delivery  # noqa: SLF001
        if self._origins is not None:
            WebSocketOrigins(b, self._origins).install()
        if self._offline is not None:
            self._offline.install()
        ReservedTopics(b, self._hooks, self.connection_of).install()
        b._client_connected = self._client_connected  # noqa: SLF001
        b._initialize_client_session = self._initialize_client_session  # noqa: SLF001
        b._authenticate = self._authenticate  # noqa: SLF001
        b._handle_client_session = self._handle_client_session  # noqa: SLF001
        b._handle_message_delivery = self._handle_message_delivery  # noqa: SLF001
        return self

    # -- 1: packet size ------------------------------------------------------------------

    def _client_connected(
        self, listener_name: str, reader: ReaderAdapter, writer: WriterAdapter
    ) -> Coroutine[Any, Any, None]:
        # A plain function handing back amqtt's coroutine (which amqtt awaits): no frame of ours
        # resumed at every packet of the connection's life.
        running: Coroutine[Any, Any, None] = self._orig_client_connected(
            listener_name, LimitedReader(reader, self.max_packet_size), writer
        )
        return running

    # -- 2, 3: CONNECT -------------------------------------------------------------------

    async def _initialize_client_session(
        self, reader: ReaderAdapter, writer: WriterAdapter, remote_address: str, remote_port: int
    ) -> tuple[BrokerProtocolHandler, Session]:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("amqtt reads a CONNECT outside a task")
        self._deadlines.watch(task)  # one shared timer, not a timer handle per CONNECT
        handler: BrokerProtocolHandler
        session: Session
        try:
            checked = await checked_connect_start(reader)
            handler, session = await BrokerProtocolHandler.init_from_connect(
                checked, writer, self._broker.plugins_manager
            )
        except BaseException as exc:
            timed_out = self._deadlines.finish(task)  # first, before any await: its deadline is over
            if isinstance(exc, asyncio.CancelledError) and not timed_out:
                raise  # the broker's shutdown, not the deadline
            # raises AMQTTError, amqtt's one log line ("Failed to initialize client session: ...")
            await close_unread(exc, writer, (remote_address, remote_port), missed=timed_out and self.connect_timeout)
            raise
        self._deadlines.finish(task)
        if session.clean_session and not session.client_id:
            session.client_id = gen_client_id()
        if session.username is None and not self._ws_allow_anonymous and getattr(reader, "websocket", False):
            log.info(
                "refused anonymous CONNECT over WebSocket from %s:%s (ws_allow_anonymous)",
                *(remote_address, remote_port),
            )
            await refuse(writer, NOT_AUTHORIZED)
            raise AMQTTError(f"anonymous CONNECT over WebSocket refused (client id {session.client_id!r})")
        if not await self._authenticate_once(handler, session):
            code = self._hooks.connack_code(handler)
            self._hooks.closed(handler)  # another auth plugin may have refused after ours admitted
            await refuse(writer, code)
            raise AMQTTError(f"CONNECT refused (client id {session.client_id!r})")
        try:
            return handler, await self._attach_session(handler, session)
        except BaseException:
            self._hooks.closed(handler)
            raise

    async def _attach_session(self, handler: BrokerProtocolHandler, incoming: Session) -> Session:
        """amqtt's own session lookup, run only after authentication, with a real take-over."""
        broker = self._broker
        client_id = incoming.client_id or ""
        session = incoming
        if incoming.clean_session:
            if (live := self._holders.get(client_id)) is not None:
                await self._take_over(client_id, live)  # MQTT 3.1.1 §3.1.4-2, and the count stays put
            await broker._delete_session(client_id)  # noqa: SLF001
            session.parent = 0
        elif (entry := broker.sessions.get(client_id)) is not None and entry[0].username != incoming.username:
            # Another principal (another username, or anonymous) never inherits a persistent session:
            # its queue may hold replies ($license/reply/<id>) and messages meant for the owner.
            await self._take_over(client_id, entry[1])
            log.info("client id %r taken over by another user: its previous session is discarded", client_id)
            await broker._delete_session(client_id)  # noqa: SLF001
            session.parent = 0
        elif entry is not None:
            await self._take_over(client_id, entry[1])
            session = entry[0]
            for name in ("will_flag", "will_retain", "will_message", "will_topic", "will_qos"):
                setattr(session, name, getattr(incoming, name))
            session.keep_alive, session.username, session.password = (
                incoming.keep_alive,
                incoming.username,
                incoming.password,
            )
            session.parent = 1
        else:
            session.parent = 0
        if session.keep_alive > 0:  # MQTT 3.1.1 §3.1.2.10: one and a half times the keepalive
            delay = broker.config.get("timeout-disconnect-delay", 0)
            session.keep_alive = math.ceil(session.keep_alive * 1.5) + (delay if isinstance(delay, int) else 0)
        # weakly: a closure over the handler stored on it is a cycle, every socket's objects left to gc
        handler.handle_read_timeout = functools.partial(self._keepalive_expired, weakref.ref(handler))
        self._accepted.add(id(session))
        return session

    async def _take_over(self, client_id: str, previous: BrokerProtocolHandler) -> None:
        if previous not in self._live:
            return
        ended = self._live[previous]
        if ended is None:
            ended = self._live[previous] = asyncio.Event()
        log.info("client id %r connected again: closing its previous connection first", client_id)
        await previous.handle_connection_closed()
        try:
            await asyncio.wait_for(ended.wait(), _TAKE_OVER_WAIT)
        except TimeoutError:
            await previous.stop()

    async def _authenticate_once(self, handler: BrokerProtocolHandler, session: Session) -> bool:
        """amqtt's verdict over its auth plugins; when the licensing plugin is the only one, asked
        directly: amqtt's ``map_plugin_auth`` wraps each call in a new Task and a gather, the
        largest cost the adapter added to a CONNECT (docs/benchmarks.md)."""
        auth_plugins = self._broker.plugins_manager._auth_plugins  # noqa: SLF001
        if len(auth_plugins) == 1 and auth_plugins[0] is self._hooks:
            verdict: bool = await self._hooks.admit(handler, session)
            return verdict
        self._authenticating[id(session)] = handler  # for connection_of, when the plugin asks
        try:
            result: bool = await self._orig_authenticate(session, None)
        finally:
            del self._authenticating[id(session)]
        return result

    async def _authenticate(self, session: Session, listener: Any) -> bool:
        if id(session) in self._accepted:
            self._accepted.discard(id(session))
            return True
        result: bool = await self._orig_authenticate(session, listener)
        return result

    # -- 4: one socket's life ------------------------------------------------------------

    async def _handle_client_session(
        self,
        reader: ReaderAdapter,
        writer: WriterAdapter,
        session: Session,
        handler: BrokerProtocolHandler,
        *args: Any,
    ) -> None:
        client_id = session.client_id or ""
        self._live[handler] = None
        self._holders[client_id] = handler
        self._by_session[id(session)] = handler
        meter = self._hooks.opened(handler)
        if meter is not None:
            count_deliveries(handler, meter)
        try:
            await self._orig_handle_client_session(reader, writer, session, handler, *args)
        finally:
            if (ended := self._live.pop(handler)) is not None:
                ended.set()  # a take-over waits for this
            if self._holders.get(client_id) is handler:
                del self._holders[client_id]
            if self._by_session.get(id(session)) is handler:
                del self._by_session[id(session)]
            self._hooks.closed(handler)
            if self._offline is not None and not session.clean_session:
                await self._offline.went_offline(session)

    # -- 5: client PUBLISH to $ topics ---------------------------------------------------

    async def _handle_message_delivery(
        self, session: Session, handler: BrokerProtocolHandler, wait_deliver: asyncio.Future[Any]
    ) -> bool:
        message = wait_deliver.result()
        topic = getattr(message, "topic", None)
        if topic and topic[0] == "$":
            if is_license_topic(topic) and self._holders.get(session.client_id or "") is handler:
                self._hooks.license_message(handler, topic, bytes(message.data))
            else:
                log.info("dropped PUBLISH from %r to reserved topic %r", session.client_id, topic)
            return True  # keep serving this client
        result: bool = await self._orig_delivery(session, handler, wait_deliver)
        return result

    # -- 9: keepalive ------------------------------------------------------------------------

    def _keepalive_expired(self, ref: weakref.ref[BrokerProtocolHandler]) -> None:
        handler = ref()
        if handler is None or handler not in self._live:
            return
        client_id = handler.session.client_id if handler.session else None
        log.info("client %r silent for more than 1.5 x its keepalive: disconnected", client_id)
        task = asyncio.ensure_future(handler.handle_connection_closed())  # as if the network failed: will sent
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
