"""The licensing agent: one per broker instance.

It holds at most one current license source (none is the trial), keeps the derived
:class:`~mqtt_licensing.core.state.Evaluation` fresh, persists state.json, and publishes status
and events. Admission and topic rights live in :mod:`.access`, the request path in
:mod:`.requests`, the operations it dispatches in :mod:`.operations`, the background tick in
:mod:`.scheduler`, each license model in :mod:`.sources`.

Broker-agnostic by construction: a broker adapter calls :meth:`admit`, :meth:`connected`,
:meth:`disconnected`, :meth:`may_subscribe`, :meth:`may_receive` and :meth:`handle_message`,
and gives the agent a :class:`Transport` to publish and disconnect with. Nothing here imports amqtt.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Hashable, Mapping
from types import MappingProxyType
from typing import Any

from ..core.documents import sign_instance_request
from ..core.errors import ErrorCode, LicensingError
from ..core.gate import Decision, Refusal
from ..core.signing import fingerprint
from ..core.state import Evaluation, Facts, LicenseState, evaluate
from ..core.timefmt import iso
from .access import Access, Client, Role, Transport
from .alarms import AlarmBoard, AlarmInputs, evaluate_alarms, log_alarm
from .clock import LicenseClock
from .config import AgentConfig
from .marker import load_checked
from .metering import Meter, Metering
from .metering.delivery import UsageDuty
from .metrics import AgentMetrics
from .operations import Operations
from .publisher import Publisher
from .requests import Requests
from .scheduler import Scheduler
from .sources import LicenseSource, SourceContext, facts_of, source_from_json
from .statefile import ClockRecord, StateStore, StoredState, mac_key
from .status import build_status

log = logging.getLogger(__name__)


class LicensingAgent(Operations, Scheduler):
    def __init__(
        self,
        config: AgentConfig,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] | None = None,
    ) -> None:
        config.validate()
        self.config = config
        self.clock = clock  # injectable: tests and simulations move time
        # An injected wall clock is its own monotonic clock unless a test gives one: a frozen test
        # clock must not look like a wall clock held back while real time runs.
        monotonic = monotonic or (time.monotonic if clock is time.time else clock)
        self._store = StateStore(config.state_dir)
        self._vendor_key = config.pinned_vendor_key()
        self._limits = config.limits()
        self._alarm_settings = config.alarm_settings()
        self._alarms = AlarmBoard()
        self.metrics = AgentMetrics(self.status_document)
        self._out = Publisher(clock)
        self._access = Access(config, now=self._now, evaluation=self._current_evaluation, emit=self._out.emit)
        self._requests = Requests(
            self._access,
            dispatch=self._dispatch,
            publish=self._out.publish,
            emit=self._out.emit,
            max_payload=config.max_payload,
            server_timeout=config.http_timeout,
            vendor_url=config.vendor_url,
        )
        self._lock = asyncio.Lock()  # one license operation at a time (requests and background work)
        # Saves come from request handlers and the background loop: one at a time, newest last,
        # or two threads would share one temp file (a lost write, or a torn file at a crash).
        self._save_lock = asyncio.Lock()
        self._trial_started_at = int(clock())
        self._clock = ClockRecord()
        self._time = LicenseClock(self._clock, self._limits.clock_tolerance, wall=self._wall, monotonic=monotonic)
        self._source: LicenseSource | None = None
        self._problems: list[LicensingError] = []
        self._evaluation = Evaluation(LicenseState.UNLICENSED, "not loaded yet")
        self.fingerprint = ""
        self._loaded = False
        self._load_error: LicensingError | None = None
        self.metering = Metering(config.state_dir, clock=clock)
        self._usage = UsageDuty(self.metering)  # its context is set by load()
        self._last_failure: dict[str, Any] | None = None  # the latest failed license request, until one succeeds

    # -- lifecycle -----------------------------------------------------------------------------

    async def load(self) -> None:
        """Read identity and state from disk (no network), then evaluate. Safe before the broker listens.

        Raises LicensingError (STATE_CORRUPT for an unusable identity key, STATE_TOO_NEW for a
        state file from a newer version): the broker must not start. Should it start anyway, the
        agent admits no client, answers every request with that error and never writes the folder."""
        try:
            self._identity = await asyncio.to_thread(self._store.load_identity)
            self._mac_key = mac_key(self._identity)
            self.fingerprint = fingerprint(self._identity)
            stored, self._problems = await asyncio.to_thread(
                load_checked, self._store, self._mac_key, self.fingerprint, self.config.trial_marker, int(self.clock())
            )
        except LicensingError as exc:
            self._load_error = exc
            self._problems = [exc]
            self._evaluation = Evaluation(
                LicenseState.UNLICENSED, f"the license state could not be loaded: {exc.message}"
            )
            raise  # the caller reports it (the amqtt runner refuses to start the broker)
        await self.metering.load(self._identity, self.fingerprint)
        self._trial_started_at = stored.trial_started_at
        self._clock.last_seen, self._clock.tampered = stored.last_seen, stored.clock_tampered
        self._clock.stepped_back = stored.stepped_back
        self._alarms = AlarmBoard.from_json(stored.alarms)
        self._time.restart()
        now = self._now()  # logs a clock set back since the last run
        self._context = SourceContext(
            config=self.config,
            vendor_key=self._vendor_key,
            fingerprint=self.fingerprint,
            now=self._now,
            sign=self._sign,
            emit=self._out.emit_when_saved,
            clock=self._clock,
            usage=self.metering,
        )
        known = len(self._problems)
        self._source = source_from_json(self._context, stored.source, self._problems)
        self._usage.ctx = self._context
        for problem in self._problems[known:]:
            log.error("stored license document rejected: %s", problem.message)
        self._evaluation = self._evaluate(now)
        self._loaded = True
        await self._save()
        log.info("license agent loaded: instance %s, state %s", self.fingerprint, self._evaluation.state)

    async def start(self, transport: Transport) -> None:
        """Begin publishing status and syncing in the background."""
        self._out.transport = transport
        if not self._loaded:
            raise self._load_error or LicensingError(ErrorCode.INTERNAL_ERROR, "the agent was started before load()")
        self._start_background()

    async def stop(self) -> None:
        """Clean shutdown: a floating seat is handed back at once, state is saved."""
        await self._stop_background()
        async with self._lock:
            await self._usage.close(self._source)  # the open interval becomes a record, not a loss
            if self._source is not None:
                await self._source.close()
            await self._save()
        await self._out.close()
        self._access.close()

    @property
    def loaded(self) -> bool:
        return self._loaded

    @property
    def evaluation(self) -> Evaluation:
        return self._evaluation

    @property
    def clients(self) -> Mapping[Hashable, Client]:
        """The admitted connections and their roles, read-only (for tests and diagnostics)."""
        return MappingProxyType(self._access.clients)

    @property
    def source(self) -> LicenseSource | None:
        """The current license source (None: the trial). Read-only: for status tools and tests."""
        return self._source

    # -- the broker adapter's calls ------------------------------------------------------------

    async def admit(
        self, conn: Hashable, *, client_id: str, username: str | None, password: str | None, peer: str | None = None
    ) -> Decision:
        """Authenticate and gate one CONNECT. Only admins and password users cost a hash check."""
        decision = await self._access.admit(conn, client_id=client_id, username=username, password=password, peer=peer)
        refusal = self._usage.gate(self._access.clients.get(conn) if decision.allowed else None, self._source)
        if refusal is not None:
            self._access.disconnected(conn)  # undo the reservation (no await since it was made)
            decision = refusal
        if not decision.allowed:
            self.metrics.refused.labels(str(decision.refusal)).inc()
        return decision

    def admitted(self, conn: Hashable, *, client_id: str, username: str | None, role: Role) -> None:
        """A connection the broker admitted itself, from a snapshot of this agent's rules (a broker
        plugin deciding on its own thread): counted and known by role, as if :meth:`admit` had run."""
        self._access.register(conn, client_id=client_id, username=username, role=role)
        self.connected(conn)

    def refused(self, client_id: str, username: str | None, refusal: Refusal) -> None:
        """A CONNECT the broker refused itself, from the snapshot: logged, counted and announced."""
        self._access.refused_elsewhere(client_id, username, refusal, f"refused by the broker plugin ({refusal})")
        self.metrics.refused.labels(str(refusal)).inc()

    def holds(self, conn: Hashable) -> bool:
        """Is this connection still counted (a take-over can leave one key holding a second socket)?"""
        return self._access.holds(conn)

    def connected(self, conn: Hashable) -> None:
        self._access.connected(conn)
        self._usage.connected(conn, self._access.clients.get(conn))

    def disconnected(self, conn: Hashable) -> None:
        self._access.disconnected(conn)
        self.metering.closed(conn)

    def meter_of(self, conn: Hashable) -> Meter | None:
        """The meter a broker adapter counts this connection's deliveries into (None: not metered)."""
        return self.metering.meter if self.metering.meter.is_metered(conn) else None

    def may_subscribe(self, conn: Hashable, topic_filter: str) -> bool:
        return self._access.may_subscribe(conn, topic_filter)

    def confined(self, conn: Hashable) -> bool:
        """An admin connection while the license does not serve: ``$license/...`` only."""
        return self._access.confined(conn)

    def may_publish(self, conn: Hashable, topic: str) -> bool:
        return self._access.may_publish(conn, topic)

    def may_receive(self, conn: Hashable, topic: str, client_id: str) -> bool:
        """Delivery-time check. ``client_id`` is the receiving session's: a persistent session
        that is offline right now still gets its own replies queued (and only its own)."""
        return self._access.may_receive(conn, topic, client_id)

    async def handle_message(self, conn: Hashable, topic: str, payload: bytes) -> None:
        """Serve one PUBLISH to a ``$license/...`` topic; always answers, never raises."""
        await self._requests.handle(conn, topic, payload)

    # -- evaluation, status, persistence -------------------------------------------------------

    def _facts(self) -> Facts:
        return facts_of(self._source, trial_started_at=self._trial_started_at, clock_tampered=self._clock.tampered)

    def _evaluate(self, now: int) -> Evaluation:
        return evaluate(self._facts(), now, self._limits)

    def _current_evaluation(self, now: int) -> Evaluation:
        if self._evaluation.deadline is not None and now >= self._evaluation.deadline:
            self._refresh(now)
        return self._evaluation

    def _refresh(self, now: int, *, force_publish: bool = False) -> None:
        """Re-derive the state; announce a transition and republish status when anything shown changed."""
        clock = self._clock
        if clock.tampered and self._source is not None and self._source.recovers_clock and self._time.wall_caught_up():
            clock.trust()  # nothing ever checks in to vouch for it: a corrected clock is all there is
        before = self._evaluation
        self._evaluation = self._evaluate(now)
        if before.state != self._evaluation.state:
            log.info("license state %s -> %s: %s", before.state, self._evaluation.state, self._evaluation.reason)
            self._out.emit(
                "state_changed",
                previous=str(before.state),
                state=str(self._evaluation.state),
                reason=self._evaluation.reason,
            )
        inputs = AlarmInputs(
            self._evaluation, self._facts(), self._access.tracker.non_admin_count(now), self._lease_error
        )
        self._alarms.update(evaluate_alarms(inputs, now, self._alarm_settings, self._alarms.codes()), now)
        self._out.status(self.status_document(), force=force_publish)

    def status_document(self) -> dict[str, Any]:
        now = self._now()
        return build_status(
            evaluation=self._evaluation,
            facts=self._facts(),
            clock=self._clock,
            limits=self._limits,
            fingerprint=self.fingerprint,
            sections=self._source.status(self._next_due()) if self._source is not None else {},
            connections=self._access.connection_count(now),
            problems=self._problems,
        ) | {
            "alarms": self._alarms.status(),
            "usage": self.metering.status() if self._loaded else None,
            "last_failure": self._last_failure,
            "updated_at": iso(now),
        }

    async def save(self) -> None:
        """Write state.json now (it is also written after every change and every minute)."""
        await self._save()

    async def _save(self) -> None:
        if not self._loaded:
            return  # never overwrite a state file this agent could not read
        self._last_clock_save = self._now()
        # A snapshot taken on the loop: the thread never sees a half-updated state.
        data = StoredState(
            trial_started_at=self._trial_started_at,
            last_seen=self._clock.last_seen,
            clock_tampered=self._clock.tampered,
            stepped_back=self._clock.stepped_back,
            source=self._source.to_json() if self._source is not None else None,
            alarms=self._alarms.to_json(),
        ).to_json(self._mac_key)
        alarm_events = self._alarms.take_events()  # announced once on disk: a restart raises none twice
        async with self._save_lock:
            write = asyncio.ensure_future(asyncio.to_thread(self._store.write, data))
            try:
                await asyncio.shield(write)
            except asyncio.CancelledError:
                # A cancelled await leaves the thread writing: the lock is held until it is done,
                # or the next save would share its temp file.
                await write
                raise
        for event in alarm_events:
            log_alarm(event)
            self._out.emit(event.pop("type"), **event)

    # -- small helpers -------------------------------------------------------------------------

    def _now(self) -> int:
        """Licensing time (see :mod:`.clock`): never behind the highest time seen."""
        return self._time.now()

    def _wall(self) -> float:
        return self.clock()  # read late: tests replace ``clock`` on a running agent

    def _sign(self, kind: str, *, nonce: str | None = None, **fields: Any) -> bytes:
        return sign_instance_request(
            self._identity, kind=kind, nonce=nonce or secrets.token_hex(16), created_at=self._now(), **fields
        )
