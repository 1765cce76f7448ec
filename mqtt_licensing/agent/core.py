"""The state every part of the agent shares, in one object: the current source and its lock.

:class:`AgentCore` holds the current license source (``None`` is the trial), the derived
:class:`~mqtt_licensing.core.state.Evaluation`, the licensing clock, state.json and the event
publisher. The parts built around it (:class:`~.operations.Operations`,
:class:`~.scheduler.Scheduler`, :class:`~.metering.duty.UsageDuty`, :class:`~.alarms.Alarms`)
each take it in their constructor; none of them reaches into another.

* :meth:`changing` wraps one change of the source: drop a source its server disowned, save,
  then announce (events never go out before the state that explains them is on disk);
* :meth:`refresh` re-derives the state, the alarms and the published status;
* :meth:`save` writes state.json atomically, one writer at a time.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..core.documents import sign_instance_request
from ..core.errors import LicensingError
from ..core.keyring import KeyRing
from ..core.signing import b64, fingerprint, unb64
from ..core.state import Evaluation, Facts, LicenseState, evaluate
from ..core.timefmt import iso
from .access import Access
from .alarms import AlarmInputs, Alarms, log_alarm
from .autolease import AutoLease
from .clock import LicenseClock
from .config import AgentConfig, AgentSettings
from .features import mismatches
from .marker import load_checked
from .metering import Metering
from .publisher import Publisher
from .recent import FILE_NAME as RECENT_FILE
from .sources import LicenseSource, SourceContext, auto_factory, facts_of, source_from_json
from .statefile import ClockRecord, StateStore, StoredState, mac_key
from .status import build_status

log = logging.getLogger(__name__)


class AgentCore:
    def __init__(
        self,
        config: AgentConfig,
        settings: AgentSettings,
        *,
        clock: Callable[[], float],
        monotonic: Callable[[], float],
    ) -> None:
        self.config = config
        self.settings = settings
        # Every vendor document is verified through this: the pinned key, plus any key a rotation
        # signed by a trusted key endorsed (core/keyring.py).
        self.keys = KeyRing(settings.vendor_key)
        self.clock = clock  # read late (see _wall): tests move it on a running agent
        self.store = StateStore(config.state_dir)
        self.out = Publisher(clock)
        self.alarms = Alarms(settings.alarms)
        self.access = Access(
            config, now=self.now, evaluation=self.current_evaluation, emit=self.out.emit, users=settings.user_hashes
        )
        self.metering = Metering(config.state_dir, clock=self._wall)  # read late, like licensing time
        self.lock = asyncio.Lock()  # one license operation at a time (requests and background work)
        # Saves come from request handlers and the background loop: one at a time, newest last,
        # or two threads would share one temp file (a lost write, or a torn file at a crash).
        self._save_lock = asyncio.Lock()
        self.trial_started_at = int(clock())
        self.clock_record = ClockRecord()
        self.time = LicenseClock(
            self.clock_record, settings.limits.clock_tolerance, wall=self._wall, monotonic=monotonic
        )
        self.source: LicenseSource | None = None
        self.problems: list[LicensingError] = []
        self.evaluation = Evaluation(LicenseState.UNLICENSED, "not loaded yet")
        self.fingerprint = ""
        self.loaded = False
        self.load_error: LicensingError | None = None
        self.last_failure: dict[str, Any] | None = None  # the latest failed license request, until one succeeds
        self.last_clock_save = 0
        self.saved_usage_high_water = 0  # the usage sequence state.json holds (kept sealed there too)
        self.auto = AutoLease(None, retry_interval=config.retry_interval, now=self.now)  # the config's, from load()
        self._identity: Ed25519PrivateKey | None = None
        self._mac_key = b""
        self._context: SourceContext | None = None

    @property
    def context(self) -> SourceContext:
        assert self._context is not None, "load() builds the source context"
        return self._context

    @property
    def identity(self) -> Ed25519PrivateKey:
        assert self._identity is not None, "load() reads the identity"
        return self._identity

    async def load(self) -> None:
        """Read identity and state from disk (no network), then evaluate (see LicensingAgent.load)."""
        try:
            self._identity = identity = await asyncio.to_thread(self.store.load_identity)
            self._mac_key = mac_key(identity)
            self.fingerprint = fingerprint(identity)
            stored, self.problems = await asyncio.to_thread(
                load_checked, self.store, self._mac_key, self.fingerprint, self.config.trial_marker, int(self.clock())
            )
        except LicensingError as exc:
            self.load_error = exc
            self.problems = [exc]
            self.evaluation = Evaluation(
                LicenseState.UNLICENSED, f"the license state could not be loaded: {exc.message}"
            )
            raise  # the caller reports it (the amqtt runner refuses to start the broker)
        await self.metering.load(identity, self.fingerprint, stored.usage_high_water)
        self.trial_started_at = stored.trial_started_at
        record = self.clock_record
        record.last_seen, record.tampered, record.stepped_back = (
            stored.last_seen,
            stored.clock_tampered,
            stored.stepped_back,
        )
        self.alarms.restore(stored.alarms)
        self.keys.restore([unb64(d) for d in stored.vendor_key_documents or []])
        self.time.restart()
        now = self.now()  # logs a clock set back since the last run
        self._context = ctx = SourceContext(
            config=self.config,
            settings=self.settings,
            vendor_key=self.keys,
            keys=self.keys,
            fingerprint=self.fingerprint,
            now=self.now,
            sign=self.sign,
            emit=self.out.emit_when_saved,
            clock=record,
            usage=self.metering,
        )
        self.auto = AutoLease(
            auto_factory(ctx), retry_interval=self.config.retry_interval, now=self.now, settings=self.settings
        )
        self.auto.restore(stored.from_config)
        known = len(self.problems)
        self.source = source_from_json(ctx, stored.source, self.problems)
        for problem in self.problems[known:]:
            log.error("stored license document rejected: %s", problem.message)
        self.evaluation = self.evaluate(now)
        self.log_mismatches()
        self.loaded = True
        await asyncio.to_thread(self.out.keep_recent_in, self.store.dir / RECENT_FILE)
        await self.save()

    # -- evaluation and status -----------------------------------------------------------------

    def facts(self) -> Facts:
        return facts_of(self.source, trial_started_at=self.trial_started_at, clock_tampered=self.clock_record.tampered)

    def evaluate(self, now: int) -> Evaluation:
        return evaluate(self.facts(), now, self.settings.limits)

    def current_evaluation(self, now: int) -> Evaluation:
        if self.evaluation.deadline is not None and now >= self.evaluation.deadline:
            self.refresh(now)
        return self.evaluation

    def next_due(self) -> float | None:
        """When background work is due: the source's own, the config's order (a license where none
        is held, or the changed key's), an old activation to free at the vendor - the soonest."""
        dues = (self.source_due(), self.auto.next_due(self.source), self.auto.next_free_due())
        return min((d for d in dues if d is not None), default=None)

    def source_due(self) -> float | None:
        """The current source's own next step (a check-in, a renewal), else the config's auto-lease."""
        if self.source is not None:
            due = self.source.next_due()
            if due is not None:
                return due
        return self.auto.next_due(self.source)

    def refresh(self, now: int, *, force_publish: bool = False) -> None:
        """Re-derive the state; announce a transition and republish status when anything shown changed."""
        clock, source = self.clock_record, self.source
        if clock.tampered and source is not None and source.recovers_clock and self.time.wall_caught_up():
            clock.trust()  # nothing ever checks in to vouch for it: a corrected clock is all there is
        before = self.evaluation
        self.evaluation = self.evaluate(now)
        if (before.features, before.definitions) != (self.evaluation.features, self.evaluation.definitions):
            self.log_mismatches()
        if before.state != self.evaluation.state:
            log.info("license state %s -> %s: %s", before.state, self.evaluation.state, self.evaluation.reason)
            self.out.emit(
                "state_changed",
                previous=str(before.state),
                state=str(self.evaluation.state),
                reason=self.evaluation.reason,
            )
        inputs = AlarmInputs(self.evaluation, self.facts(), self.access.tracker.non_admin_count(now), self.auto.error)
        self.alarms.update(inputs, now)
        self.out.status(self.status_document(), force=force_publish)

    def _license_from(self) -> str | None:
        """Who put the held license here: the config or environment (its key), or an operator."""
        facts = self.facts()
        held = facts.certificate or facts.floating_certificate
        if held is None:
            return None
        configured = self.settings.license_key
        if configured is not None and held.key_mask == configured.mask:
            return configured.origin
        return "floating_server_url" if facts.certificate is None and self.settings.floating_servers else "operator"

    def log_mismatches(self) -> None:
        """At load and when the license's features change: where this broker's client classes and
        the license disagree (one line each)."""
        for line in mismatches(self.config.class_features(), self.evaluation):
            log.warning("%s", line)

    def status_document(self) -> dict[str, Any]:
        now = self.now()
        return build_status(
            evaluation=self.evaluation,
            facts=self.facts(),
            clock=self.clock_record,
            limits=self.settings.limits,
            fingerprint=self.fingerprint,
            label=self.settings.instance_label,
            sections=self.source.status(self.source_due()) if self.source is not None else {},
            connections=self.access.connection_count(now),
            problems=self.problems,
        ) | {
            "alarms": self.alarms.board.status(),
            "usage": self.metering.status() if self.loaded else None,
            "last_failure": self.last_failure,
            "license_from": self._license_from(),
            "configured": self.auto.status(),
            "updated_at": iso(now),
        }

    # -- changing and persisting ---------------------------------------------------------------

    @asynccontextmanager
    async def changing(self) -> AsyncIterator[None]:
        """Wrap one operation on the source: drop a source the server disowned, save, then announce."""
        with self.out.holding() as events:
            try:
                yield
            finally:
                if self.source is not None and self.source.gone:
                    self.source = None
                await self.save()
                self.out.release(events)

    async def save(self) -> None:
        if not self.loaded:
            return  # never overwrite a state file this agent could not read
        self.last_clock_save = self.now()
        self.saved_usage_high_water = self.metering.ledger.high_water
        # A snapshot taken on the loop: the thread never sees a half-updated state.
        clock = self.clock_record
        data = StoredState(
            trial_started_at=self.trial_started_at,
            last_seen=clock.last_seen,
            clock_tampered=clock.tampered,
            stepped_back=clock.stepped_back,
            source=self.source.to_json() if self.source is not None else None,
            alarms=self.alarms.board.to_json(),
            usage_high_water=self.saved_usage_high_water,
            vendor_key_documents=[b64(d) for d in self.keys.documents] or None,
            from_config=self.auto.to_json(),
        ).to_json(self._mac_key)
        alarm_events = self.alarms.board.take_events()  # announced once on disk: a restart raises none twice
        async with self._save_lock:
            write = asyncio.ensure_future(asyncio.to_thread(self.store.write, data))
            try:
                await asyncio.shield(write)
            except asyncio.CancelledError:
                # A cancelled await leaves the thread writing: the lock is held until it is done,
                # or the next save would share its temp file.
                await write
                raise
        for event in alarm_events:
            log_alarm(event)
            self.out.emit(event.pop("type"), **event)

    # -- small helpers -------------------------------------------------------------------------

    def now(self) -> int:
        """Licensing time (see :mod:`.clock`): never behind the highest time seen."""
        return self.time.now()

    def _wall(self) -> float:
        return self.clock()

    def sign(self, kind: str, *, nonce: str | None = None, **fields: Any) -> bytes:
        # Every request carries the label, so the servers learn a renamed broker at its next call.
        fields.setdefault("label", self.settings.instance_label)
        return sign_instance_request(
            self.identity, kind=kind, nonce=nonce or secrets.token_hex(16), created_at=self.now(), **fields
        )


__all__ = ["AgentCore"]
