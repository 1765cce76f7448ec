"""The licensing agent: one per broker instance.

It holds at most one current license source (none is the trial), keeps the derived
:class:`~mqtt_licensing.core.state.Evaluation` fresh, schedules the source's background work,
persists state.json, and publishes status and events. Admission and topic rights live in
:mod:`.access`, the request path in :mod:`.requests`, each license model in :mod:`.sources`.

Broker-agnostic by construction: a broker adapter calls :meth:`admit`, :meth:`connected`,
:meth:`disconnected`, :meth:`may_subscribe`, :meth:`may_receive` and :meth:`handle_message`,
and gives the agent a :class:`Transport` to publish and disconnect with. Nothing here imports amqtt.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Hashable, Mapping
from contextlib import asynccontextmanager
from types import MappingProxyType
from typing import Any

from ..core import protocol
from ..core.documents import sign_instance_request
from ..core.errors import ErrorCode, LicensingError
from ..core.features import MQTT_SERVER
from ..core.gate import Decision
from ..core.models import LicenseModel
from ..core.signing import fingerprint
from ..core.state import Evaluation, Facts, LicenseState, evaluate
from ..core.timefmt import iso
from .access import Access, Client, Transport
from .alarms import AlarmBoard, AlarmInputs, evaluate_alarms, log_alarm
from .clock import LicenseClock
from .config import AgentConfig
from .marker import load_checked
from .metering import Meter, Metering
from .metering.delivery import UsageDuty
from .metrics import AgentMetrics, background_kind
from .publisher import Publisher
from .requests import Requests
from .sources import LicenseSource, SourceContext, facts_of, operate, source_from_json
from .sources.floating import FloatingSource
from .statefile import ClockRecord, StateStore, StoredState, mac_key
from .status import build_status
from .trial import vendor_trial_start

log = logging.getLogger(__name__)

_CLOCK_SAVE_EVERY = 60


class LicensingAgent:
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
        self._lease_error: str | None = None  # the last auto-lease failure (no_seat)
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
        self._runner: asyncio.Task[None] | None = None
        self._trial_started_at = int(clock())
        self._clock = ClockRecord()
        self._time = LicenseClock(self._clock, self._limits.clock_tolerance, wall=self._wall, monotonic=monotonic)
        self._source: LicenseSource | None = None
        self._problems: list[LicensingError] = []
        self._evaluation = Evaluation(LicenseState.UNLICENSED, "not loaded yet")
        self._last_clock_save = 0
        self._last_auto_lease_attempt = 0.0
        self._auto_lease_enabled = True
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
        self._runner = asyncio.create_task(self._run(), name="license-agent")

    async def stop(self) -> None:
        """Clean shutdown: a floating seat is handed back at once, state is saved."""
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
            self._runner = None
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

    # -- license operations --------------------------------------------------------------------

    async def _dispatch(self, request: protocol.Request) -> dict[str, Any]:
        with self.metrics.timed(request.operation):
            return await self._dispatch_timed(request)

    async def _dispatch_timed(self, request: protocol.Request) -> dict[str, Any]:
        if request.operation == "status":
            return {"status": self.status_document()}
        if request.operation == "events_recent":
            return {"events": self._out.recent(protocol.optional_seconds(request.fields, "since"))}
        if not self._loaded:
            raise self._load_error or LicensingError(ErrorCode.INTERNAL_ERROR, "the license agent is not loaded")
        async with self._lock:
            try:
                async with self._changing():
                    data = await self._operate(request.operation, request.fields)
            except LicensingError as exc:
                # Kept in the status until an operation succeeds: a refusal (say the vendor's
                # no_activations_left) stays visible to whoever looks later, not only to the requester.
                self._last_failure = {"operation": request.operation, **exc.to_dict(), "at": iso(self._now())}
                self._refresh(self._now())
                raise
            self._last_failure = None
            self._refresh(self._now())
            if self._alarms.pending:
                await self._save()
        self._out.emit(
            "command",
            operation=request.operation,
            correlation_id=request.correlation_id,
            state=str(self._evaluation.state),
        )
        return {**data, "status": self.status_document()}

    async def _operate(self, operation: str, fields: dict[str, Any]) -> dict[str, Any]:
        current = self._source
        self._source, data = await operate(self._context, operation, fields, current)
        if operation == "deactivate" and current is not None and current.model is LicenseModel.FLOATING:
            self._auto_lease_enabled = False  # until a restart or an explicit activate
        return data

    @asynccontextmanager
    async def _changing(self) -> AsyncIterator[None]:
        """Wrap one operation on the source: drop a source the server disowned, save, then announce."""
        with self._out.holding() as events:
            try:
                yield
            finally:
                if self._source is not None and self._source.gone:
                    self._source = None
                await self._save()
                self._out.release(events)

    # -- background work -----------------------------------------------------------------------

    async def _run(self) -> None:
        self._refresh(self._now(), force_publish=True)
        trial = asyncio.create_task(self._record_trial(), name="license-trial") if self._source is None else None
        try:
            await self._loop()
        finally:
            if trial is not None:
                trial.cancel()

    async def _record_trial(self) -> None:
        """Issue 10: the vendor's first sighting of this instance on trial wins if it is earlier."""
        started = await vendor_trial_start(self._context)
        if started is not None and started < self._trial_started_at:
            log.warning("the vendor saw this instance on trial since %s: the trial counts from then", iso(started))
            self._trial_started_at = started
            await self._save()
            self._refresh(self._now())

    async def _loop(self) -> None:
        while True:
            try:
                now = self._now()
                self._refresh(now)
                due = self._next_due()
                checked_in = False
                if due is not None and now >= due and not self._lock.locked():
                    async with self._lock:
                        checked_in = await self._run_due()
                        self._refresh(self._now())
                await self._usage.tick(self._source, checked_in=checked_in)
                if self._alarms.pending or now - self._last_clock_save >= _CLOCK_SAVE_EVERY:
                    await self._save()
                await self._access.enforce_existing(self._evaluation, self._out.transport)
                self._access.refusal_log.flush()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("license agent background step failed; retrying")
            await asyncio.sleep(self.config.tick_interval)

    def _next_due(self) -> float | None:
        if self._source is not None:
            due = self._source.next_due()
            if due is not None:
                return due
        if self._wants_auto_lease():
            return self._last_auto_lease_attempt + self.config.retry_interval
        return None

    def _wants_auto_lease(self) -> bool:
        """Auto-activation from config: lease a seat when nothing else is held - until an operator
        deactivates (then only a restart or an explicit activate leases again)."""
        return (
            bool(self.config.floating_server_url)
            and self._auto_lease_enabled
            and (self._source is None or self._source.vacant)
        )

    async def _run_due(self) -> bool:
        """True when the source's own work (a check-in) succeeded: usage records travel with it."""
        kind = background_kind(self._source)
        self.metrics.sync_attempts.labels(kind).inc()
        try:
            async with self._changing():
                if self._source is not None and self._source.next_due() is not None:
                    await self._source.run_due()
                elif self._wants_auto_lease():
                    assert self.config.floating_server_url is not None
                    self._last_auto_lease_attempt = self._now()
                    self._source = await FloatingSource.auto_lease(
                        self._context, self.config.floating_server_url, self.config.floating_features or [MQTT_SERVER]
                    )
            self._lease_error = None
        except LicensingError as exc:
            self.metrics.sync_failures.labels(kind, str(exc.code)).inc()
            if kind == "lease_acquire":
                self._lease_error = str(exc.code)
            log.warning("background license sync failed (%s): %s", kind, exc)
            return False
        return True

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
            await asyncio.to_thread(self._store.write, data)
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
