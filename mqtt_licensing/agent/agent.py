"""The licensing agent: one per broker instance, the facade a broker adapter calls.

It is built of objects, each with an explicit constructor: :class:`~.core.AgentCore` holds what
every part shares (the current license source, its lock, state.json, the evaluation, status and
events); :class:`~.access.Access` admits connections and checks topic rights;
:class:`~.requests.Requests` serves the ``$license/*`` request path; :class:`~.operations.Operations`
runs the license operations; :class:`~.scheduler.Scheduler` the background tick;
:class:`~.metering.duty.UsageDuty` the metering schedule; each license model lives in :mod:`.sources`.

Broker-agnostic by construction: a broker adapter calls :meth:`admit`, :meth:`connected`,
:meth:`disconnected`, :meth:`may_subscribe`, :meth:`may_receive` and :meth:`handle_message`,
and gives the agent a :class:`Transport` to publish and disconnect with. Nothing here imports amqtt.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable, Mapping
from types import MappingProxyType
from typing import Any

from ..core.errors import ErrorCode, LicensingError
from ..core.gate import Decision, Refusal
from ..core.state import Evaluation
from .access import Client, Role, Transport
from .config import AgentConfig
from .core import AgentCore
from .metering import Meter, Metering
from .metering.duty import UsageDuty
from .metrics import AgentMetrics
from .operations import Operations
from .requests import Requests
from .scheduler import Scheduler
from .sources import LicenseSource

log = logging.getLogger(__name__)


class LicensingAgent:
    def __init__(
        self,
        config: AgentConfig,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] | None = None,
    ) -> None:
        settings = config.settings()  # checked and parsed once; a config error is one line
        self.config = config
        # An injected wall clock is its own monotonic clock unless a test gives one: a frozen test
        # clock must not look like a wall clock held back while real time runs.
        monotonic = monotonic or (time.monotonic if clock is time.time else clock)
        self._core = core = AgentCore(config, settings, clock=clock, monotonic=monotonic)
        self.metrics = AgentMetrics(core.status_document)
        self._operations = Operations(core, self.metrics)
        self._requests = Requests(
            core.access,
            dispatch=self._operations.dispatch,
            publish=core.out.publish,
            emit=core.out.emit,
            max_payload=config.max_payload,
            server_timeout=config.http_timeout,
            vendor_url=config.vendor_url,
        )
        self._usage: UsageDuty | None = None  # built by load(): it needs the instance identity
        self._scheduler: Scheduler | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    async def load(self) -> None:
        """Read identity and state from disk (no network), then evaluate. Safe before the broker listens.

        Raises LicensingError (STATE_CORRUPT for an unusable identity key, STATE_TOO_NEW for a
        state file from a newer version): the broker must not start. Should it start anyway, the
        agent admits no client, answers every request with that error and never writes the folder."""
        core = self._core
        await core.load()
        self._usage = UsageDuty(core.metering, core.context, lambda: core.evaluation.definitions)
        self._scheduler = Scheduler(core, self.metrics, self._usage)
        log.info("license agent loaded: instance %s, state %s", core.fingerprint, core.evaluation.state)

    async def start(self, transport: Transport, *, background: bool = True) -> None:
        """Begin publishing status and syncing in the background.

        ``background=False`` (tests): nothing runs by itself; :meth:`tick` takes each step."""
        self._core.out.transport = transport
        if self._scheduler is None:
            raise self._core.load_error or LicensingError(
                ErrorCode.INTERNAL_ERROR, "the agent was started before load()"
            )
        await self._operations.install_usage_license_file()  # no network: before the first status
        if background:
            self._scheduler.start()
        else:
            core = self._core
            core.refresh(core.now(), force_publish=True)
        core = self._core
        core.out.emit("broker_started", instance=core.fingerprint, state=str(core.evaluation.state))

    async def tick(self) -> None:
        """One step of the background work, as the loop takes it every ``tick_interval``."""
        if self._scheduler is None:
            raise LicensingError(ErrorCode.INTERNAL_ERROR, "the agent ticked before load()")
        await self._scheduler.tick()

    async def stop(self) -> None:
        """Clean shutdown: a floating seat is handed back at once, state is saved."""
        core = self._core
        if self._scheduler is not None:
            await self._scheduler.stop()
        async with core.lock:
            if self._usage is not None:
                await self._usage.close(core.source)  # the open interval becomes a record, not a loss
            if core.source is not None:
                await core.source.close()
            await core.save()
        await core.out.close()
        core.access.close()

    @property
    def loaded(self) -> bool:
        return self._core.loaded

    @property
    def evaluation(self) -> Evaluation:
        return self._core.evaluation

    @property
    def clients(self) -> Mapping[Hashable, Client]:
        """The admitted connections and their roles, read-only (for tests and diagnostics)."""
        return MappingProxyType(self._core.access.clients)

    @property
    def source(self) -> LicenseSource | None:
        """The current license source (None: the trial). Read-only: for status tools and tests."""
        return self._core.source

    @property
    def fingerprint(self) -> str:
        return self._core.fingerprint

    @property
    def metering(self) -> Metering:
        return self._core.metering

    @property
    def clock(self) -> Callable[[], float]:
        return self._core.clock

    @clock.setter
    def clock(self, clock: Callable[[], float]) -> None:
        self._core.clock = clock  # read late: tests move time on a running agent

    # -- the broker adapter's calls ------------------------------------------------------------

    async def may_read(self, username: str, password: str, peer: str | None = None) -> bool:
        """Is this an admin's or a reader's login? (the HTTP listener's /metrics)"""
        return await self._core.access.may_read(username, password, peer)

    async def admit(
        self, conn: Hashable, *, client_id: str, username: str | None, password: str | None, peer: str | None = None
    ) -> Decision:
        """Authenticate and gate one CONNECT. Only admins and password users cost a hash check."""
        access = self._core.access
        decision = await access.admit(conn, client_id=client_id, username=username, password=password, peer=peer)
        if self._usage is not None:
            refusal = self._usage.gate(access.clients.get(conn) if decision.allowed else None, self._core.source)
            if refusal is not None:
                access.disconnected(conn)  # undo the reservation (no await since it was made)
                decision = refusal
        if not decision.allowed:
            self.metrics.refused.labels(str(decision.refusal)).inc()
        return decision

    def admitted(self, conn: Hashable, *, client_id: str, username: str | None, role: Role) -> None:
        """A connection the broker admitted itself, from a snapshot of this agent's rules (a broker
        plugin deciding on its own thread): counted and known by role, as if :meth:`admit` had run."""
        self._core.access.register(conn, client_id=client_id, username=username, role=role)
        self.connected(conn)

    def refused(self, client_id: str, username: str | None, refusal: Refusal) -> None:
        """A CONNECT the broker refused itself, from the snapshot: logged, counted and announced."""
        self._core.access.refused_elsewhere(client_id, username, refusal, f"refused by the broker plugin ({refusal})")
        self.metrics.refused.labels(str(refusal)).inc()

    def refuses_metered(self) -> bool:
        """Would a client of a metered class be refused now (``metering: required``, usage overdue
        past ``metering_grace``)? For a broker plugin that admits from a snapshot of the rules."""
        return self._usage is not None and self._usage.overdue(self._core.source) > self.config.metering_grace

    def holds(self, conn: Hashable) -> bool:
        """Is this connection still counted (a take-over can leave one key holding a second socket)?"""
        return self._core.access.holds(conn)

    def connected(self, conn: Hashable) -> Meter | None:
        """The broker confirms an admitted connection. Returns the meter a broker adapter counts
        its deliveries into (None: not of a metered class)."""
        access = self._core.access
        access.connected(conn)
        if self._usage is not None and self._usage.connected(conn, access.clients.get(conn)):
            return self._core.metering.meter
        return None

    def disconnected(self, conn: Hashable) -> None:
        self._core.access.disconnected(conn)
        self._core.metering.closed(conn)

    def may_subscribe(self, conn: Hashable, topic_filter: str) -> bool:
        return self._core.access.may_subscribe(conn, topic_filter)

    def confined(self, conn: Hashable) -> bool:
        """An admin connection while the license does not serve: ``$license/...`` only."""
        return self._core.access.confined(conn)

    def may_publish(self, conn: Hashable, topic: str) -> bool:
        return self._core.access.may_publish(conn, topic)

    def may_receive(self, conn: Hashable, topic: str, client_id: str) -> bool:
        """Delivery-time check. ``client_id`` is the receiving session's: a persistent session
        that is offline right now still gets its own replies queued (and only its own)."""
        return self._core.access.may_receive(conn, topic, client_id)

    async def handle_message(self, conn: Hashable, topic: str, payload: bytes) -> None:
        """Serve one PUBLISH to a ``$license/...`` topic; always answers, never raises."""
        await self._requests.handle(conn, topic, payload)

    # -- status and persistence ----------------------------------------------------------------

    def status_document(self) -> dict[str, Any]:
        return self._core.status_document()

    async def save(self) -> None:
        """Write state.json now (it is also written after every change and every minute)."""
        await self._core.save()
