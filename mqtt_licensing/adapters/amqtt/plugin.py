"""The amqtt 0.12.1 plugin hosting one :class:`LicensingAgent`.

Declared in broker_config/*.yaml as ``mqtt_licensing.adapters.amqtt.LicensingPlugin``.
One plugin object is amqtt's auth plugin (CONNECT gate) and topic plugin (who may
subscribe to / receive ``$license/...``), and starts and stops the agent with the
broker, so every hook reaches the same agent.

A connection is its protocol handler (one per socket), never amqtt's ``Session``: a
persistent client id reuses one Session object across sockets. The handler reaches
this plugin through :mod:`.patches`, which holds every use of amqtt internals; this
module uses the public plugin API only (``self.config``, ``context.broadcast_message``,
``context.retain_message``).
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections.abc import Hashable
from typing import Any, cast

from amqtt.contexts import Action, BaseContext
from amqtt.mqtt.connack import NOT_AUTHORIZED, SERVER_UNAVAILABLE
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

from ...agent import LicensingAgent
from ...agent.config import AgentConfig
from ...agent.metering import Meter
from ...agent.metrics import metrics_app
from ...core.errors import ErrorCode, LicensingError
from ...core.gate import Refusal
from ...web import HttpListener, PageConfig, start_http
from .origins import OriginPolicy
from .patches import BrokerPatches
from .sessions import SessionLimits
from .versions import broker_of

log = logging.getLogger(__name__)

_SERVER_UNAVAILABLE = frozenset({Refusal.ADMIN_LIMIT, Refusal.READER_LIMIT})  # the login was right


class _AmqttTransport:
    """The agent's Transport over a running amqtt broker."""

    def __init__(self, context: Any, patches: BrokerPatches) -> None:
        self._context = context
        self._patches = patches

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        if retain:
            await self._context.retain_message(topic, payload)
        await self._context.broadcast_message(topic, payload)

    async def disconnect(self, conn: Hashable) -> None:
        await self._patches.disconnect(conn)


class LicensingPlugin(BaseAuthPlugin, BaseTopicPlugin):
    """amqtt plugin hosting one :class:`LicensingAgent`. Its ``Config`` is :class:`AgentConfig`."""

    Config = AgentConfig

    def __init__(self, context: BaseContext) -> None:
        super().__init__(context)
        config = cast(AgentConfig, self.config)
        check_adapter_limits(config)
        self.agent = LicensingAgent(config)
        broker = broker_of(cast(Any, context))
        self._page = page_config(config, broker.listeners_config)
        self._http: HttpListener | None = None
        self._patches = BrokerPatches(
            broker,
            self,
            connect_timeout=config.connect_timeout,
            max_packet_size=config.max_packet_size,
            origins=OriginPolicy.build(config.http_bind, config.ws_url, config.ws_origins),
            ws_allow_anonymous=config.ws_allow_anonymous,
            sessions=SessionLimits(
                expiry=config.session_expiry,
                queue_messages=config.session_queue_messages,
                queue_bytes=config.session_queue_bytes,
                per_username=config.offline_sessions_per_username,
                per_source=config.offline_sessions_per_source,
            ),
        ).install()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._unavailable: set[Hashable] = set()  # refused for a session limit, CONNACK not yet sent

    # -- amqtt hooks -----------------------------------------------------------

    async def on_broker_pre_start(self) -> None:
        raise_open_file_limit()
        if self.agent.loaded:
            return  # runner.serve loads it first, to refuse a start it cannot load
        try:
            await self.agent.load()
        except LicensingError as exc:
            log.error("license agent not loaded: %s", exc.message)  # amqtt only drops what a hook raises
            raise

    async def on_broker_post_start(self) -> None:
        await self.agent.start(_AmqttTransport(self.context, self._patches))
        if self.agent.config.http_bind:  # the License page, /metrics and /healthz
            config = self.agent.config
            monitoring = metrics_app(
                self.agent.metrics, self.agent.status_document, token=config.metrics_token, login=self.agent.may_read
            ).routes
            self._http = await start_http(self.agent.config.http_bind, self._page, routes=monitoring)

    async def on_broker_pre_shutdown(self) -> None:
        if self._http is not None:
            await self._http.stop()
        await self.agent.stop()

    async def authenticate(self, *, session: Session) -> bool | None:
        """amqtt's hook, when other auth plugins are configured too (else :meth:`admit` is asked)."""
        return await self.admit(self._patches.connection_of(session), session)

    async def admit(self, conn: Hashable, session: Session) -> bool:
        decision = await self.agent.admit(
            conn,
            client_id=session.client_id or "",
            username=session.username,
            password=session.password,
            peer=session.remote_address,  # failed passwords back off per source address too
        )
        if decision.refusal in _SERVER_UNAVAILABLE:
            self._unavailable.add(conn)  # read back at once by connack_code (or dropped in closed)
        return decision.allowed

    async def topic_filtering(
        self, *, session: Session | None = None, topic: str | None = None, action: Action | None = None
    ) -> bool | None:
        if session is None or topic is None:
            return False
        conn = self._patches.connection_of(session)
        if action == Action.SUBSCRIBE:
            return self.agent.may_subscribe(conn, topic)
        if action == Action.RECEIVE:
            return self.agent.may_receive(conn, topic, session.client_id or "")
        # A PUBLISH to $license/... never reaches here (patches: _handle_message_delivery).
        return self.agent.may_publish(conn, topic)

    # -- what the patches report (patches.ConnectionHooks) ---------------------

    def opened(self, conn: Hashable) -> Meter | None:
        return self.agent.connected(conn)

    def closed(self, conn: Hashable) -> None:
        self._unavailable.discard(conn)
        self.agent.disconnected(conn)

    def connack_code(self, conn: Hashable) -> int:
        # Too many admin or dashboard sessions: 3 (server unavailable), so the operator is not told
        # "wrong username or password" (5) about a login that was right.
        if conn in self._unavailable:
            self._unavailable.discard(conn)
            return cast(int, SERVER_UNAVAILABLE)
        return cast(int, NOT_AUTHORIZED)

    def confined(self, conn: Hashable) -> bool:
        return self.agent.confined(conn)

    def may_get_retained(self, conn: Hashable, topic_filter: str) -> bool:
        return self.agent.may_subscribe(conn, topic_filter)

    def license_message(self, conn: Hashable, topic: str, payload: bytes) -> None:
        # Served off the client's message loop so a slow vendor call never stalls it.
        task = asyncio.create_task(self.agent.handle_message(conn, topic, payload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def page_config(config: AgentConfig, listeners: dict[str, Any]) -> PageConfig:
    """The License page's settings: its browsers speak MQTT to the broker's first ``ws``
    listener (or to ``ws_url``)."""
    ws = next((listener for listener in listeners.values() if listener.type == "ws"), None)
    port = (ws.bind or "").rpartition(":")[2] if ws is not None else ""
    return PageConfig(config.ws_url, int(port) if port.isdigit() else None, bool(ws and ws.ssl), config.store_url)


def check_adapter_limits(config: AgentConfig) -> None:
    if config.connect_timeout <= 0:
        raise LicensingError(ErrorCode.INVALID_FIELD, "connect_timeout must be a positive number of seconds")
    if config.metrics_token is not None and len(config.metrics_token) < 16:
        raise LicensingError(ErrorCode.INVALID_FIELD, "metrics_token: at least 16 characters (openssl rand -hex 16)")
    if config.max_packet_size < 1024:
        raise LicensingError(ErrorCode.INVALID_FIELD, "max_packet_size must be at least 1024 bytes")
    for name in ("session_expiry", "session_queue_messages", "session_queue_bytes"):
        if getattr(config, name) < 0:
            raise LicensingError(ErrorCode.INVALID_FIELD, f"{name} must be 0 or more")
    for name in ("offline_sessions_per_username", "offline_sessions_per_source"):
        if getattr(config, name) < 1:
            raise LicensingError(ErrorCode.INVALID_FIELD, f"{name} must be at least 1")


def raise_open_file_limit() -> int:
    """Every client is a file descriptor: lift the soft limit to the hard one (often 1,024 -> 1M)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, hard, exc)
    log.info("open-file limit: %d (at most about that many client connections)", soft)
    return soft
