"""The licensing agent: one per broker instance.

It owns the license facts (loaded from the state folder, re-verified), keeps the
derived :class:`~mqtt_licensing.core.state.Evaluation` fresh, answers
``$license/*`` requests, gates CONNECTs from memory, and in the background checks
in with the vendor or renews its floating lease.

Broker-agnostic by construction: a broker adapter calls :meth:`admit`,
:meth:`connected`, :meth:`disconnected`, :meth:`may_subscribe`,
:meth:`may_receive` and :meth:`handle_message`, and gives the agent a
:class:`Transport` to publish and disconnect with. Nothing here imports amqtt.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from ..clients.activation import ActivationClient
from ..clients.floating import FloatingClient
from ..core import protocol
from ..core.codes import armor, unarmor
from ..core.documents import (
    VERDICT_CODES,
    ActivationCertificate,
    FloatingCertificate,
    Lease,
    Verdict,
    sign_instance_request,
    verify_lease,
)
from ..core.errors import ErrorCode, LicensingError
from ..core.features import MQTT_SERVER, validate_features
from ..core.gate import Decision, Refusal, decide, must_disconnect_existing
from ..core.keys import key_digest, mask_key, normalize_key
from ..core.labels import (
    DEACTIVATION_CODE,
    KIND_ACTIVATE,
    KIND_CHECK_IN,
    KIND_DEACTIVATE,
    KIND_LEASE_ACQUIRE,
    KIND_LEASE_RELEASE,
    KIND_LEASE_RENEW,
    KIND_OFFLINE_DEACTIVATION,
    KIND_OFFLINE_REQUEST,
    USAGE_LICENSE,
    USAGE_REQUEST,
)
from ..core.passwords import verify_password
from ..core.signing import b64, fingerprint, unb64
from ..core.state import Evaluation, Facts, LicenseState, evaluate, observe_clock
from .config import AgentConfig
from .connections import ConnectionTracker
from .status import build_status, iso
from .store import PersistedState, StateStore

log = logging.getLogger(__name__)

_SUPERSEDED_KEPT = 16
_CLOCK_SAVE_EVERY = 60


class Transport(Protocol):
    """What the agent needs from a broker adapter."""

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None: ...

    async def disconnect(self, conn: Hashable) -> None: ...


@dataclass(frozen=True)
class Client:
    """What the agent remembers of an admitted connection."""

    client_id: str
    username: str | None
    role: str  # "admin" | "reader" | "user"

    @property
    def may_read_status(self) -> bool:
        return self.role in ("admin", "reader")


class LicensingAgent:
    def __init__(self, config: AgentConfig, *, clock: Callable[[], float] = time.time) -> None:
        config.validate()
        self.config = config
        self.clock = clock  # injectable: tests and simulations move time
        self._store = StateStore(config.state_dir)
        self._vendor_key = config.pinned_vendor_key()
        self._limits = config.limits()
        self._tracker = ConnectionTracker()
        self._clients: dict[Hashable, Client] = {}
        # client id -> the connection most recently admitted with it. amqtt lets a second
        # connection (clean session) take a live client id without closing the first; replies
        # to that id belong to the newest connection alone, and the older one is answered no more.
        self._holders: dict[str, Hashable] = {}
        self._lock = asyncio.Lock()
        # Saves come from request handlers and the background loop: one at a time, newest last,
        # or two threads would share one temp file (a lost write, or a torn file at a crash).
        self._save_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: asyncio.Task[None] | None = None
        self._transport: Transport | None = None
        self._state = PersistedState(trial_started_at=int(clock()))
        self._certificate: ActivationCertificate | None = None
        self._lease: Lease | None = None
        self._floating_certificate: FloatingCertificate | None = None
        self._problems: list[LicensingError] = []
        self._evaluation = Evaluation(LicenseState.UNLICENSED, "not loaded yet")
        self._last_sync_attempt = 0.0
        self._last_clock_save = 0
        self._published: dict[str, Any] | None = None
        self._auto_lease_enabled = True
        self.fingerprint = ""

    # -- lifecycle -------------------------------------------------------------

    async def load(self) -> None:
        """Read identity and state from disk (no network), then evaluate. Safe before the broker listens."""
        self._identity = await asyncio.to_thread(self._store.load_identity)
        self.fingerprint = fingerprint(self._identity)
        now = self._now()
        self._state, self._problems = await asyncio.to_thread(self._store.load, now)
        self._state.last_seen, tampered = observe_clock(self._state.last_seen, now, self._limits.clock_tolerance)
        if tampered:
            self._state.clock_tampered = True
            log.warning("system clock is behind the last time this instance saw; license not serving")
        self._verify_stored_documents()
        self._evaluation = self._evaluate(now)
        await self._save()
        log.info("license agent loaded: instance %s, state %s", self.fingerprint, self._evaluation.state)

    async def start(self, transport: Transport) -> None:
        """Begin publishing status and syncing in the background."""
        self._transport = transport
        self._runner = asyncio.create_task(self._run(), name="license-agent")

    async def stop(self) -> None:
        """Clean shutdown: a floating seat is handed back at once, state is saved."""
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
            self._runner = None
        async with self._lock:
            if self._lease is not None and self._state.server_url:
                try:
                    await asyncio.wait_for(self._release_lease(), timeout=min(5.0, self.config.http_timeout))
                except (LicensingError, TimeoutError) as exc:
                    log.warning("could not return the floating seat at shutdown: %s", exc)
                self._drop_floating(keep_auto=True)
            await self._save()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def evaluation(self) -> Evaluation:
        return self._evaluation

    # -- connections (called by the broker adapter) ----------------------------

    async def admit(self, conn: Hashable, *, client_id: str, username: str | None, password: str | None) -> Decision:
        """Authenticate and gate one CONNECT. Only admins and password users cost a hash check."""
        role = await self._authenticate(username, password)
        if role is None:
            decision = Decision(False, Refusal.BAD_CREDENTIALS, "unknown user or wrong password")
            self._refused(client_id, username, decision)
            return decision
        # From here to the reservation there is no await: racing CONNECTs see each other.
        now = self._now()
        if self._evaluation.deadline is not None and now >= self._evaluation.deadline:
            self._refresh(now)
        if role == "admin":
            decision = Decision(True)
        else:
            decision = decide(
                self._evaluation,
                is_admin=False,
                required_features=self.config.required_features(username, client_id),
                current_connections=self._tracker.non_admin_count(now),
            )
        if not decision.allowed:
            self._refused(client_id, username, decision)
            return decision
        self._tracker.reserve(conn, admin=role == "admin", now=now)
        self._clients[conn] = Client(client_id, username, role)
        self._holders[client_id] = conn
        return decision

    def holds(self, conn: Hashable) -> bool:
        """Is this connection still counted (a take-over can leave one key holding a second socket)?"""
        return self._tracker.holds(conn)

    def connected(self, conn: Hashable) -> None:
        self._tracker.confirm(conn)

    def disconnected(self, conn: Hashable) -> None:
        self._tracker.release(conn)
        if not self._tracker.holds(conn):
            client = self._clients.pop(conn, None)
            if client is not None and self._holders.get(client.client_id) == conn:
                del self._holders[client.client_id]

    def may_subscribe(self, conn: Hashable, topic_filter: str) -> bool:
        if not topic_filter.startswith(protocol.PREFIX):
            return True
        client = self._clients.get(conn)
        if client is None or (
            topic_filter.startswith(protocol.REPLY_ROOT + "/") and self._holders.get(client.client_id) != conn
        ):
            return False  # not the connection that now holds this client id
        return protocol.subscription_allowed(topic_filter, client.client_id, may_read_status=client.may_read_status)

    def may_receive(self, conn: Hashable, topic: str, client_id: str) -> bool:
        """Delivery-time check. ``client_id`` is the receiving session's: a persistent session
        that is offline right now still gets its own replies queued (and only its own)."""
        if not topic.startswith(protocol.PREFIX):
            return True
        holder = self._holders.get(client_id)
        if holder is not None and holder != conn and topic.startswith(protocol.REPLY_ROOT + "/"):
            return False  # another live connection holds this client id now: the replies are its own
        client = self._clients.get(conn)
        return protocol.delivery_allowed(
            topic, client_id, may_read_status=client is not None and client.may_read_status
        )

    async def _authenticate(self, username: str | None, password: str | None) -> str | None:
        for role, table in (("admin", self.config.admins), ("user", self.config.users)):
            if username is not None and username in table:
                ok = await asyncio.to_thread(verify_password, password or "", table[username])
                if not ok:
                    return None
                return "reader" if role == "user" and username in self.config.readers else role
        if not self.config.allow_anonymous:
            return None
        return "reader" if username in self.config.readers else "user"

    def _refused(self, client_id: str, username: str | None, decision: Decision) -> None:
        log.warning(
            "refused CONNECT client_id=%r username=%r: %s (%s)", client_id, username, decision.refusal, decision.message
        )
        self._emit(
            "connection_refused",
            client_id=client_id,
            username=username,
            reason=str(decision.refusal),
            message=decision.message,
            state=str(self._evaluation.state),
        )

    # -- requests ---------------------------------------------------------------

    async def handle_message(self, conn: Hashable, topic: str, payload: bytes) -> None:
        """Serve one PUBLISH to a ``$license/...`` topic; always answers, never raises."""
        client = self._clients.get(conn)
        client_id = client.client_id if client else ""
        if not protocol.client_id_can_receive_replies(client_id):
            # Its reply topic would be readable by another client: answer nobody.
            log.warning("ignored %s from client id %r: not usable as a reply topic", topic, client_id)
            return
        if self._requester_gone(conn, client):
            return  # a newer connection holds this client id: its reply topic is no longer ours
        try:
            request = protocol.decode_request(topic, payload, client_id, max_payload=self.config.max_payload)
        except protocol.RequestError as exc:
            if client is None or client.role != "admin":
                exc = protocol.RequestError(
                    ErrorCode.NOT_AUTHORIZED,
                    "only admin clients may send license requests",
                    encoding=exc.encoding,
                    reply_to=exc.reply_to,
                    correlation_id=exc.correlation_id,
                    operation=exc.operation,
                )
            await self._reply_error(exc, exc.reply_to, exc.encoding, exc.operation, exc.correlation_id)
            return
        if client is None or client.role != "admin":
            self._emit("request_refused", client_id=client_id, operation=request.operation, reason="not_authorized")
            await self._reply_error(
                LicensingError(ErrorCode.NOT_AUTHORIZED, "only admin clients may send license requests"),
                request.reply_to,
                request.encoding,
                request.operation,
                request.correlation_id,
            )
            return
        try:
            data = await self._dispatch(request)
            if self._requester_gone(conn, client):
                return
        except LicensingError as exc:
            if self._requester_gone(conn, client):
                return
            # Also announced on $license/events, so a mosquitto_pub user watching events sees why.
            self._emit(
                "command_failed",
                operation=request.operation,
                client_id=client_id,
                correlation_id=request.correlation_id,
                error=exc.to_dict(),
            )
            await self._reply_error(exc, request.reply_to, request.encoding, request.operation, request.correlation_id)
            return
        except Exception:
            log.exception("license request %s failed", request.operation)
            if self._requester_gone(conn, client):
                return
            await self._reply_error(
                LicensingError(ErrorCode.INTERNAL_ERROR, "internal error; see the broker log"),
                request.reply_to,
                request.encoding,
                request.operation,
                request.correlation_id,
            )
            return
        await self._publish(request.reply_to, protocol.success_reply(request, data))

    def _requester_gone(self, conn: Hashable, client: Client | None) -> bool:
        """Would a reply now reach someone else than the requester? True when another connection
        has since taken its client id, or its persistent session is now held by another principal."""
        if client is None:
            return False
        holder = self._holders.get(client.client_id)
        current = self._clients.get(conn)
        lost = (holder is not None and holder != conn) or (
            current is not None and (current.username, current.role) != (client.username, client.role)
        )
        if lost:
            log.warning("reply for client id %r dropped: the connection that asked is gone", client.client_id)
        return lost

    async def _reply_error(
        self,
        error: LicensingError,
        reply_to: str,
        encoding: str,
        operation: str | None,
        correlation_id: str | int | None,
    ) -> None:
        await self._publish(
            reply_to, protocol.error_reply(error, encoding=encoding, operation=operation, correlation_id=correlation_id)
        )

    async def _dispatch(self, request: protocol.Request) -> dict[str, Any]:
        if request.operation == "status":
            return {"status": self.status_document()}
        handlers: dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]] = {
            "activate": self._cmd_activate,
            "reactivate": self._cmd_reactivate,
            "deactivate": self._cmd_deactivate,
            "offline_request": self._cmd_offline_request,
        }
        async with self._lock:
            data = await handlers[request.operation](request.fields)
            self._refresh(self._now())
        self._emit(
            "command",
            operation=request.operation,
            correlation_id=request.correlation_id,
            state=str(self._evaluation.state),
        )
        return {**data, "status": self.status_document()}

    async def _cmd_activate(self, fields: dict[str, Any]) -> dict[str, Any]:
        method = protocol.optional_str(fields, "method", "online")
        if method == "online":
            return await self._activate_online(normalize_key(protocol.require_str(fields, "license_key")))
        if method == "offline":
            return await self._activate_offline(protocol.require_str(fields, "usage_license", max_len=32768))
        if method == "floating":
            url = protocol.require_url(fields, "server_url")
            features = validate_features(protocol.optional_str_list(fields, "features") or [MQTT_SERVER])
            if not (self._lease is not None and self._state.server_url == url):
                self._refuse_if_licensed_elsewhere(None)
            await self._acquire_lease(url, list(features))  # the same instance gets its own seat back
            return {}
        raise LicensingError(
            ErrorCode.UNSUPPORTED_METHOD, f"method must be online, offline or floating, not {method!r}"
        )

    async def _activate_online(self, key: str) -> dict[str, Any]:
        self._refuse_if_licensed_elsewhere(key)
        url = self._vendor_url()
        request = self._sign(KIND_ACTIVATE, key_digest=key_digest(key))
        async with ActivationClient(url, timeout=self.config.http_timeout) as client:
            answer = await client.activate(key, request)
        blob = answer["certificate"]
        cert = self._verify_certificate(blob, model="online")
        now = self._now()
        self._state = replace(
            self._state,
            certificate=b64(blob),
            lease=None,
            server_url=url,
            vendor_verdict=None,
            last_checkin_ok_at=now,
            checkin_failing_since=None,
            last_error=None,
            clock_tampered=False,
            pending_offline=None,
            deactivation_code=None,
            floating_features=[],
        )
        self._set_documents(cert, None, None)
        await self._save()
        self._emit("activated", method="online", license_id=cert.license_id, activation_id=cert.activation_id)
        return {}

    def _refuse_if_licensed_elsewhere(self, key: str | None) -> None:
        held = self._certificate or self._floating_certificate
        if held is None:
            return
        if (
            key is not None
            and self._certificate is not None
            and self._certificate.key_mask == mask_key(key)
            and self._certificate.model == "online"
        ):
            return  # activating the same key again refreshes it
        raise LicensingError(
            ErrorCode.ALREADY_ACTIVATED,
            f"this instance already holds license {held.license_id} ({held.key_mask}); deactivate it first",
        )

    async def _activate_offline(self, usage_license: str) -> dict[str, Any]:
        blob = unarmor(usage_license, USAGE_LICENSE)
        cert = self._verify_certificate(blob, model="offline")
        pending = self._state.pending_offline
        if pending is None or cert.request_nonce != pending.get("nonce"):
            if cert.request_nonce in self._state.superseded_nonces:
                raise LicensingError(
                    ErrorCode.REQUEST_SUPERSEDED,
                    "this usage license answers an older request that a newer one replaced; "
                    "send the newest request code to the vendor",
                )
            if pending is None:
                raise LicensingError(
                    ErrorCode.NO_PENDING_REQUEST, "no offline request is pending on this instance; generate one first"
                )
            raise LicensingError(ErrorCode.REQUEST_SUPERSEDED, "this usage license does not answer the pending request")
        if self._floating_certificate is not None:
            self._refuse_if_licensed_elsewhere(None)
        self._state = replace(
            self._state,
            certificate=b64(blob),
            lease=None,
            server_url=None,
            vendor_verdict=None,
            last_checkin_ok_at=None,
            checkin_failing_since=None,
            last_error=None,
            clock_tampered=False,
            pending_offline=None,
            deactivation_code=None,
            superseded_nonces=self._superseded_plus(pending.get("nonce")),
        )
        self._set_documents(cert, None, None)
        await self._save()
        self._emit("activated", method="offline", license_id=cert.license_id, activation_id=cert.activation_id)
        return {}

    async def _cmd_offline_request(self, fields: dict[str, Any]) -> dict[str, Any]:
        key = normalize_key(protocol.require_str(fields, "license_key"))
        if self._floating_certificate is not None or (self._certificate and self._certificate.model == "online"):
            self._refuse_if_licensed_elsewhere(None)
        now = self._now()
        nonce = secrets.token_hex(16)
        activation_id = self._certificate.activation_id if self._certificate else None
        blob = sign_instance_request(
            self._identity,
            kind=KIND_OFFLINE_REQUEST,
            nonce=nonce,
            created_at=now,
            key_digest=key_digest(key),
            activation_id=activation_id,
        )
        code = armor(USAGE_REQUEST, blob)
        old = self._state.pending_offline
        self._state = replace(
            self._state,
            pending_offline={"nonce": nonce, "created_at": now, "request_code": code},
            superseded_nonces=self._superseded_plus(old.get("nonce") if old else None),
        )
        await self._save()
        self._emit("offline_request_created", created_at=iso(now), superseded_previous=old is not None)
        return {"request_code": code}

    def _superseded_plus(self, nonce: str | None) -> list[str]:
        kept = list(self._state.superseded_nonces)
        if nonce:
            kept.append(nonce)
        return kept[-_SUPERSEDED_KEPT:]

    async def _cmd_reactivate(self, _fields: dict[str, Any]) -> dict[str, Any]:
        if self._lease is not None or (self._state.floating_features and self._state.server_url):
            await self._renew_lease(reacquire=True)
            return {}
        cert = self._certificate
        if cert is None:
            raise LicensingError(ErrorCode.NOT_ACTIVATED, "no license is activated on this instance")
        if cert.model == "offline":
            raise LicensingError(
                ErrorCode.OFFLINE_LICENSE_CANNOT_REACTIVATE,
                "an offline license cannot be reactivated: generate a new offline request and "
                "apply the usage license the vendor sends back (the broker keeps serving meanwhile)",
            )
        await self._check_in(raise_errors=True)
        return {}

    async def _cmd_deactivate(self, _fields: dict[str, Any]) -> dict[str, Any]:
        if self._lease is not None or self._state.floating_features:
            released = True
            if self._lease is not None:
                try:
                    await self._release_lease()
                except LicensingError as exc:
                    released = False
                    log.warning("floating seat not released (%s); it frees itself when the lease expires", exc)
            self._drop_floating(keep_auto=False)
            self._auto_lease_enabled = False
            await self._save()
            self._emit("deactivated", method="floating", seat_released=released)
            return {"seat_released": released}
        cert = self._certificate
        if cert is None:
            raise LicensingError(ErrorCode.NOT_ACTIVATED, "no license is activated on this instance")
        if cert.model == "offline":
            code = armor(
                DEACTIVATION_CODE,
                self._sign(KIND_OFFLINE_DEACTIVATION, activation_id=cert.activation_id, license_id=cert.license_id),
            )
            self._state = replace(
                self._state, certificate=None, deactivation_code=code, pending_offline=None, superseded_nonces=[]
            )
            self._set_documents(None, None, None)
            await self._save()
            self._emit("deactivated", method="offline", activation_id=cert.activation_id)
            return {"deactivation_code": code}
        async with ActivationClient(self._vendor_url(), timeout=self.config.http_timeout) as client:
            try:
                await client.deactivate(self._sign(KIND_DEACTIVATE, activation_id=cert.activation_id))
            except LicensingError as exc:
                if exc.code not in (ErrorCode.ACTIVATION_NOT_FOUND, ErrorCode.ALREADY_FREE):
                    raise  # keep the license: nothing was freed
        self._forget_certificate()
        await self._save()
        self._emit("deactivated", method="online", activation_id=cert.activation_id)
        return {}

    # -- background sync ------------------------------------------------------

    async def _run(self) -> None:
        self._refresh(self._now(), force_publish=True)
        while True:
            try:
                now = self._now()
                self._refresh(now)
                if self._sync_due(now) and not self._lock.locked():
                    async with self._lock:
                        await self._sync()
                        self._refresh(self._now())
                if now - self._last_clock_save >= _CLOCK_SAVE_EVERY:
                    await self._save()
                await self._enforce_existing()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("license agent background step failed; retrying")
            await asyncio.sleep(self.config.tick_interval)

    def _next_sync_at(self) -> float | None:
        failing = self._state.checkin_failing_since is not None
        if self._lease is not None:
            if failing:
                return self._last_sync_attempt + min(self.config.retry_interval, self._lease.ttl / 3)
            return self._lease.issued_at + self._lease.ttl / 3
        if self._state.floating_features and self._state.server_url:  # auto or lost lease: try to lease again
            return self._last_sync_attempt + self.config.retry_interval
        if self._wants_auto_lease():
            return self._last_sync_attempt + self.config.retry_interval
        cert = self._certificate
        if cert is None or cert.model != "online":
            return None
        if failing or self._state.clock_tampered:
            return self._last_sync_attempt + self.config.retry_interval
        return (self._state.last_checkin_ok_at or 0) + self.config.check_in_interval

    def _wants_auto_lease(self) -> bool:
        """Auto-activation from config: lease a seat when nothing else is held - until an operator
        deactivates (then only a restart or an explicit activate leases again)."""
        return (
            bool(self.config.floating_server_url)
            and self._auto_lease_enabled
            and self._certificate is None
            and self._lease is None
            and not self._state.floating_features
            and self._state.pending_offline is None
        )

    def _sync_due(self, now: float) -> bool:
        due = self._next_sync_at()
        return due is not None and now >= due

    async def _sync(self) -> None:
        try:
            if self._lease is not None:
                await self._renew_lease(reacquire=True)
            elif self._state.floating_features and self._state.server_url:
                await self._acquire_lease(self._state.server_url, self._state.floating_features)
            elif self._wants_auto_lease():
                assert self.config.floating_server_url is not None
                await self._acquire_lease(
                    self.config.floating_server_url, self.config.floating_features or [MQTT_SERVER]
                )
            elif self._certificate is not None and self._certificate.model == "online":
                await self._check_in(raise_errors=False)
        except LicensingError as exc:
            log.warning("background license sync failed: %s", exc)

    async def _check_in(self, *, raise_errors: bool) -> None:
        cert = self._certificate
        assert cert is not None
        now = self._now()
        self._last_sync_attempt = now
        nonce = secrets.token_hex(16)
        try:
            async with ActivationClient(self._vendor_url(), timeout=self.config.http_timeout) as client:
                blob = await client.check_in(self._sign(KIND_CHECK_IN, nonce=nonce, activation_id=cert.activation_id))
            new_cert = self._verify_certificate(blob, model="online")
        except LicensingError as exc:
            await self._sync_failed(exc, now, verdict=self._trusted_verdict(exc, cert, nonce))
            if raise_errors:
                raise
            return
        self._state = replace(
            self._state,
            certificate=b64(blob),
            vendor_verdict=None,
            last_checkin_ok_at=now,
            checkin_failing_since=None,
            last_error=None,
            clock_tampered=False,
        )
        self._set_documents(new_cert, None, None)
        await self._save()

    def _trusted_verdict(self, exc: LicensingError, cert: ActivationCertificate, nonce: str) -> ErrorCode | None:
        """The refusal's code if the vendor signed it for this activation and this very request; else None.

        Anyone on the path can send an HTTP 403; only a verified Verdict may stop the license
        (an unsigned one counts as a failed check-in: grace)."""
        if exc.code not in VERDICT_CODES:
            return None
        try:
            if exc.evidence is None:
                raise LicensingError(ErrorCode.INVALID_SIGNATURE, "the refusal carries no signed verdict")
            verdict = Verdict.open(exc.evidence, self._vendor_key)
        except LicensingError as problem:
            log.warning("ignoring an unverified %s from the license server (%s)", exc.code, problem.message)
            return None
        if (verdict.verdict, verdict.activation_id, verdict.instance_fingerprint, verdict.request_nonce) != (
            str(exc.code),
            cert.activation_id,
            self.fingerprint,
            nonce,
        ):
            log.warning("ignoring a %s verdict that answers another request", exc.code)
            return None
        return exc.code

    async def _sync_failed(self, exc: LicensingError, now: int, *, verdict: ErrorCode | None = None) -> None:
        """Record a failed check-in or renewal. Only a verified vendor verdict stops the license."""
        if verdict == ErrorCode.ACTIVATION_NOT_FOUND and self._certificate is not None:
            log.warning("the vendor no longer knows this activation (%s); license removed", exc.message)
            self._emit("activation_lost", message=exc.message)
            self._forget_certificate()
            self._state.last_error = exc.to_dict()
        elif verdict is not None:  # revoked / suspended / expired: the state machine reads the code itself
            self._state = replace(self._state, vendor_verdict=str(verdict), last_error=exc.to_dict())
        else:
            self._state = replace(
                self._state, last_error=exc.to_dict(), checkin_failing_since=self._state.checkin_failing_since or now
            )
        await self._save()

    # -- floating -------------------------------------------------------------

    async def _acquire_lease(self, url: str, features: list[str]) -> None:
        now = self._now()
        self._last_sync_attempt = now
        request = self._sign(KIND_LEASE_ACQUIRE, features=tuple(features))
        try:
            async with FloatingClient(url, timeout=self.config.http_timeout) as client:
                blob = await client.acquire(request)
            lease, fcert = self._verify_lease(blob, features)
        except LicensingError as exc:
            if self._state.floating_features:  # keep trying in the background
                await self._sync_failed(exc, now)
            raise
        self._install_lease(url, features, blob, lease, fcert, now)
        await self._save()
        self._emit(
            "activated", method="floating", server=url, lease_id=lease.lease_id, lease_expires_at=iso(lease.expires_at)
        )

    async def _renew_lease(self, *, reacquire: bool) -> None:
        url = self._state.server_url
        if url is None:
            raise LicensingError(ErrorCode.NOT_ACTIVATED, "no floating server is configured")
        features = self._state.floating_features or [MQTT_SERVER]
        if self._lease is None or self._now() >= self._lease.expires_at:
            await self._acquire_lease(url, features)
            return
        now = self._now()
        self._last_sync_attempt = now
        try:
            async with FloatingClient(url, timeout=self.config.http_timeout) as client:
                blob = await client.renew(self._sign(KIND_LEASE_RENEW, features=tuple(features)))
            lease, fcert = self._verify_lease(blob, features)
        except LicensingError as exc:
            if exc.code == ErrorCode.LEASE_NOT_FOUND and reacquire:
                await self._acquire_lease(url, features)
                return
            await self._sync_failed(exc, now)
            raise
        self._install_lease(url, features, blob, lease, fcert, now)
        await self._save()

    async def _release_lease(self) -> None:
        assert self._state.server_url is not None
        async with FloatingClient(self._state.server_url, timeout=self.config.http_timeout) as client:
            await client.release(self._sign(KIND_LEASE_RELEASE))

    def _install_lease(
        self, url: str, features: list[str], blob: bytes, lease: Lease, fcert: FloatingCertificate, now: int
    ) -> None:
        self._state = replace(
            self._state,
            certificate=None,
            lease=b64(blob),
            server_url=url,
            floating_features=list(features),
            vendor_verdict=None,
            last_checkin_ok_at=now,
            checkin_failing_since=None,
            last_error=None,
            pending_offline=None,
            deactivation_code=None,
        )
        self._set_documents(None, lease, fcert)

    def _drop_floating(self, *, keep_auto: bool) -> None:
        self._state = replace(
            self._state,
            lease=None,
            checkin_failing_since=None,
            last_error=None,
            floating_features=self._state.floating_features if keep_auto else [],
            server_url=self._state.server_url if keep_auto else None,
        )
        self._set_documents(self._certificate, None, None)

    def _verify_lease(self, blob: bytes, features: list[str]) -> tuple[Lease, FloatingCertificate]:
        lease, fcert = verify_lease(blob, self._vendor_key)
        if lease.instance_fingerprint != self.fingerprint:
            raise LicensingError(ErrorCode.WRONG_INSTANCE, "the floating server sent a lease for another instance")
        missing = set(features) - set(lease.features)
        if missing:
            raise LicensingError(
                ErrorCode.FEATURE_UNAVAILABLE, f"the lease lacks requested feature(s) {', '.join(sorted(missing))}"
            )
        return lease, fcert

    # -- documents and state ----------------------------------------------------

    def _verify_certificate(self, blob: bytes, *, model: str) -> ActivationCertificate:
        cert = ActivationCertificate.open(blob, self._vendor_key)
        if cert.instance_fingerprint != self.fingerprint:
            raise LicensingError(
                ErrorCode.WRONG_INSTANCE,
                "this certificate belongs to another instance (fingerprint "
                f"{cert.instance_fingerprint}, this instance is {self.fingerprint})",
            )
        if cert.model != model:
            raise LicensingError(ErrorCode.WRONG_MODEL, f"expected an {model} license, got an {cert.model} one")
        return cert

    def _verify_stored_documents(self) -> None:
        """Re-verify what was read from disk; drop (and report) anything that does not check."""
        state = self._state
        cert = lease = fcert = None
        try:
            if state.certificate:
                blob = unb64(state.certificate)
                cert = ActivationCertificate.open(blob, self._vendor_key)
                cert = self._verify_certificate(blob, model=cert.model)
            if state.lease:
                lease, fcert = self._verify_lease(unb64(state.lease), list(state.floating_features))
        except LicensingError as exc:
            log.error("stored license document rejected: %s", exc)
            self._problems.append(
                LicensingError(
                    ErrorCode.STATE_CORRUPT,
                    f"the stored license did not verify ({exc.code}: {exc.message}); activate again",
                )
            )
            self._state = replace(state, certificate=None, lease=None)
            cert = lease = fcert = None
        self._set_documents(cert, lease, fcert)

    def _set_documents(
        self, cert: ActivationCertificate | None, lease: Lease | None, fcert: FloatingCertificate | None
    ) -> None:
        self._certificate, self._lease, self._floating_certificate = cert, lease, fcert

    def _forget_certificate(self) -> None:
        self._state = replace(
            self._state, certificate=None, checkin_failing_since=None, vendor_verdict=None, last_checkin_ok_at=None
        )
        self._set_documents(None, self._lease, self._floating_certificate)

    def _facts(self) -> Facts:
        return Facts(
            trial_started_at=self._state.trial_started_at,
            certificate=self._certificate,
            lease=self._lease,
            floating_certificate=self._floating_certificate,
            vendor_verdict=self._state.vendor_verdict,
            checkin_failing_since=self._state.checkin_failing_since,
            pending_offline_at=(self._state.pending_offline or {}).get("created_at"),
            clock_tampered=self._state.clock_tampered,
        )

    def _evaluate(self, now: int) -> Evaluation:
        return evaluate(self._facts(), now, self._limits)

    def _refresh(self, now: int, *, force_publish: bool = False) -> None:
        """Re-derive the state; announce a transition and republish status when anything shown changed."""
        last_seen, tampered = observe_clock(self._state.last_seen, now, self._limits.clock_tolerance)
        self._state.last_seen = last_seen
        if tampered and not self._state.clock_tampered:
            self._state.clock_tampered = True
            log.warning("system clock ran back by more than %ss", self._limits.clock_tolerance)
        elif (
            self._state.clock_tampered
            and now >= last_seen
            and self._certificate is not None
            and self._certificate.model != "online"
        ):
            self._state.clock_tampered = False  # the clock is back; offline licenses cannot check in
        before = self._evaluation
        self._evaluation = self._evaluate(now)
        if before.state != self._evaluation.state:
            log.info("license state %s -> %s: %s", before.state, self._evaluation.state, self._evaluation.reason)
            self._emit(
                "state_changed",
                previous=str(before.state),
                state=str(self._evaluation.state),
                reason=self._evaluation.reason,
            )
        document = self.status_document()
        comparable = {k: v for k, v in document.items() if k not in ("connections", "clock", "updated_at")}
        if force_publish or comparable != self._published:
            self._published = comparable
            self._spawn(self._publish(protocol.STATUS_TOPIC, json.dumps(document).encode(), retain=True))

    def status_document(self) -> dict[str, Any]:
        now = self._now()
        return build_status(
            evaluation=self._evaluation,
            state=self._state,
            limits=self._limits,
            fingerprint=self.fingerprint,
            certificate=self._certificate,
            lease=self._lease,
            floating_certificate=self._floating_certificate,
            connections=self._tracker.non_admin_count(now),
            next_sync_at=self._next_sync_at(),
            check_in_server=self.config.vendor_url or self._state.server_url,
            problems=self._problems,
        ) | {"updated_at": iso(now)}

    async def _enforce_existing(self) -> None:
        if not must_disconnect_existing(self._evaluation, self.config.enforce_existing):
            return
        keys = self._tracker.non_admin_keys()
        if not keys or self._transport is None:
            return
        log.warning(
            "license not serving (%s): disconnecting %d client(s) (enforce_existing)", self._evaluation.state, len(keys)
        )
        for key in keys:
            client = self._clients.get(key)
            self._emit(
                "client_disconnected",
                client_id=client.client_id if client else None,
                reason=str(Refusal.NOT_LICENSED),
                state=str(self._evaluation.state),
            )
            await self._transport.disconnect(key)
            self._tracker.release(key)  # never kick the same socket twice, even if the broker is slow

    async def _save(self) -> None:
        self._last_clock_save = self._now()
        data = self._state.to_json()  # a snapshot taken on the loop: the thread never sees a half-updated state
        async with self._save_lock:
            await asyncio.to_thread(self._store.write, data)

    # -- small helpers ------------------------------------------------------------

    def _now(self) -> int:
        return int(self.clock())

    def _vendor_url(self) -> str:
        url = self.config.vendor_url or self._state.server_url
        if not url:
            raise LicensingError(ErrorCode.SERVER_UNREACHABLE, "no vendor_url is configured for online activation")
        return url

    def _sign(self, kind: str, *, nonce: str | None = None, **fields: Any) -> bytes:
        return sign_instance_request(
            self._identity, kind=kind, nonce=nonce or secrets.token_hex(16), created_at=self._now(), **fields
        )

    def _emit(self, event_type: str, **data: Any) -> None:
        event = {"type": event_type, "at": iso(self.clock()), **data}
        self._spawn(self._publish(protocol.EVENTS_TOPIC, json.dumps(event).encode()))

    async def _publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        if self._transport is None:
            return
        try:
            await self._transport.publish(topic, payload, retain=retain)
        except Exception:
            log.exception("could not publish on %s", topic)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        try:
            task = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        except RuntimeError:
            coro.close()  # type: ignore[attr-defined]
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
