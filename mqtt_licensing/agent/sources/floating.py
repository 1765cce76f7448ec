"""Floating licenses: a seat leased from a floating license server, renewed at a third of its TTL.

The source keeps the server and features after a lease is lost (or returned at shutdown), so
the background work leases again; only an operator's deactivate forgets them.

Failover: ``floating_server_url`` may list the replicas of one floating server (one database, one
identity key). Each lease call goes to the server that answered last, then to the others in
config order while a server cannot be reached or fails inside (``FAILOVER``); any other answer (no
seats, a refused request) is the pool's answer, the same from every replica, and is final.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ...clients.floating import FloatingClient
from ...core import protocol
from ...core.documents import FloatingCertificate, Lease, Verdict, verify_lease
from ...core.errors import ErrorCode, LicensingError
from ...core.features import MQTT_SERVER, validate_features
from ...core.labels import KIND_LEASE_ACQUIRE, KIND_LEASE_RELEASE, KIND_LEASE_RENEW
from ...core.models import LicenseModel
from ...core.signing import b64, load_public_key, unb64
from ...core.timefmt import iso
from ..metering.floating import report_to_floating
from . import (
    NO_OPERATIONS,
    AutoFactory,
    Handler,
    LicenseSource,
    Outcome,
    SourceContext,
    SourceFacts,
    UsageAccount,
    refuse_if_licensed_elsewhere,
    stored_document_problem,
)

if TYPE_CHECKING:
    from ..metering import Metering

log = logging.getLogger(__name__)

# Answers that say "this server, not the pool": try the next replica. Each lease call is signed
# afresh per attempt (the servers accept a nonce once), so a retry is never a replay.
FAILOVER = frozenset({ErrorCode.SERVER_UNREACHABLE, ErrorCode.INTERNAL_ERROR, ErrorCode.BAD_RESPONSE})


@dataclass(eq=False)
class FloatingSource:
    model: ClassVar[str] = LicenseModel.FLOATING
    operations: ClassVar[Mapping[protocol.Operation, Handler]] = NO_OPERATIONS

    ctx: SourceContext = field(repr=False)
    server_url: str | None = None
    features: list[str] = field(default_factory=list)
    lease: Lease | None = None
    certificate: FloatingCertificate | None = None  # the pool certificate the lease carries
    blob: bytes | None = field(default=None, repr=False)
    last_ok_at: int | None = None
    failing_since: int | None = None
    last_error: dict[str, str] | None = None
    last_attempt: float = 0.0
    gone: bool = False
    sent_nonce: str | None = field(default=None, repr=False)  # the nonce of the last lease call sent

    @classmethod
    async def activate(
        cls, ctx: SourceContext, args: protocol.ActivateFloating, current: LicenseSource | None
    ) -> FloatingSource:
        url = args.server_url
        features = list(validate_features(args.features or [MQTT_SERVER]))
        source = current if isinstance(current, FloatingSource) else None
        if not (source is not None and source.lease is not None and source.server_url == url):
            refuse_if_licensed_elsewhere(current)
        source = source or cls(ctx)
        await source.acquire(url, features)  # the same instance gets its own seat back
        return source

    @classmethod
    def auto_factory(cls, ctx: SourceContext) -> AutoFactory | None:
        """``floating_server_url`` in the config: lease a seat whenever nothing else is held."""
        servers = ctx.settings.floating_servers
        if not servers:
            return None
        features = list(ctx.config.floating_features or [MQTT_SERVER])

        async def lease() -> LicenseSource:
            return await cls.auto_lease(ctx, servers[0], features)

        return lease

    @classmethod
    async def auto_lease(cls, ctx: SourceContext, first: str, features: list[str]) -> FloatingSource:
        """Lease a seat because the config says so (nothing else is held).

        A refused first lease (``no_seats``, a closed pool) is kept as this source's error, shown
        in status and announced, and retried in the background, never only logged."""
        source = cls(ctx, server_url=first, features=list(features))
        try:
            await source.acquire(first, features)
        except LicensingError as exc:
            log.warning("floating lease from %s refused: %s", first, exc)
        return source

    def _servers(self, first: str) -> list[str]:
        """``first``, then the configured replicas, each once."""
        return list(dict.fromkeys([first, *self.ctx.settings.floating_servers]))

    async def _call(self, first: str, kind: str, features: tuple[str, ...] = ()) -> tuple[str, bytes]:
        """One lease call (acquire, renew or release) to the first server that answers it:
        (that server, its answer)."""
        error: LicensingError | None = None
        for url in self._servers(first):
            # A renewal presents the lease's chain secret (a copied folder diverges)
            chain = {"chain": self.lease.chain} if kind == KIND_LEASE_RENEW and self.lease is not None else {}
            self.sent_nonce = nonce = secrets.token_hex(16)  # what a signed refusal must answer
            request = (
                self.ctx.sign(kind, nonce=nonce, features=features, **chain)
                if features
                else self.ctx.sign(kind, nonce=nonce, **chain)
            )
            try:
                async with FloatingClient(url, options=self.ctx.settings.http) as client:
                    if kind == KIND_LEASE_ACQUIRE:
                        return url, await client.acquire(request, join_token=self.ctx.config.floating_join_token)
                    if kind == KIND_LEASE_RENEW:
                        return url, await client.renew(request)
                    await client.release(request)
                    return url, b""
            except LicensingError as exc:
                if exc.code not in FAILOVER:
                    raise
                if error is not None or len(self._servers(first)) > 1:
                    log.warning("floating server %s failed (%s); trying the next one", url, exc)
                error = exc
        assert error is not None
        raise error

    # -- the lease ---------------------------------------------------------------------------

    async def acquire(self, url: str, features: list[str]) -> None:
        ctx = self.ctx
        now = ctx.now()
        self.last_attempt = now
        try:
            url, blob = await self._call(url, KIND_LEASE_ACQUIRE, tuple(features))
            lease, fcert = self._verify(blob, features)
        except LicensingError as exc:
            if self.features:  # keep trying in the background
                self._failed(exc, now)
            raise
        self._install(url, features, blob, lease, fcert, now)
        ctx.emit(
            "activated",
            method=str(self.model),
            server=url,
            lease_id=lease.lease_id,
            lease_expires_at=iso(lease.expires_at),
        )

    async def renew(self) -> None:
        """Renew the lease, or lease again when it is gone (expired here, or forgotten by the server)."""
        assert self.server_url is not None
        url, features = self.server_url, self.features or [MQTT_SERVER]
        if self.lease is None or self.ctx.now() >= self.lease.expires_at:
            await self.acquire(url, features)
            return
        now = self.ctx.now()
        self.last_attempt = now
        try:
            url, blob = await self._call(url, KIND_LEASE_RENEW, tuple(features))
            lease, fcert = self._verify(blob, features)
        except LicensingError as exc:
            if exc.code == ErrorCode.LEASE_NOT_FOUND:
                await self.acquire(url, features)
                return
            if exc.code == ErrorCode.CLONED and self._signed_by_pool(exc):
                log.warning("the floating server suspended this instance's lease: %s", exc.message)
                self._drop_lease()
            self._failed(exc, now)
            raise
        self._install(url, features, blob, lease, fcert, now)

    async def _release(self) -> None:
        assert self.server_url is not None
        await self._call(self.server_url, KIND_LEASE_RELEASE)

    def _install(  # noqa: PLR0917 - one call site, each argument named by its type
        self, url: str, features: list[str], blob: bytes, lease: Lease, fcert: FloatingCertificate, now: int
    ) -> None:
        self.server_url, self.features = url, list(features)
        self.lease, self.certificate, self.blob = lease, fcert, blob
        self.last_ok_at, self.failing_since, self.last_error = now, None, None
        self.ctx.clock.trust()  # the floating server vouched for the time

    def _drop_lease(self) -> None:
        self.lease = self.certificate = self.blob = None
        self.failing_since = self.last_error = None

    def _signed_by_pool(self, exc: LicensingError) -> bool:
        """A ``cloned`` refusal signed by the key the pool certificate names, for this lease, this
        instance and the request just sent. Anything less is a failed renewal."""
        if self.certificate is None or self.lease is None or exc.evidence is None:
            return False
        try:
            verdict = Verdict.open(exc.evidence, load_public_key(self.certificate.server_public_key))
        except LicensingError as problem:
            log.warning("ignoring an unverified cloned refusal from the floating server (%s)", problem.message)
            return False
        expected = (str(ErrorCode.CLONED), self.lease.lease_id, self.ctx.fingerprint, self.sent_nonce)
        return (verdict.verdict, verdict.activation_id, verdict.instance_fingerprint, verdict.request_nonce) == expected

    def _failed(self, exc: LicensingError, now: int) -> None:
        if self.last_error is None or self.last_error.get("code") != str(exc.code):  # once per kind, not per retry
            self.ctx.emit("lease_failed", server=self.server_url, code=str(exc.code), message=exc.message)
        self.last_error = exc.to_dict()
        self.failing_since = self.failing_since or now

    def _verify(self, blob: bytes, features: list[str]) -> tuple[Lease, FloatingCertificate]:
        if self.ctx.keys is not None:  # the vendor's rotations reach leasing brokers inside the certificate
            self.ctx.keys.accept_carried(blob)
        lease, fcert = verify_lease(blob, self.ctx.vendor_key)
        if lease.instance_fingerprint != self.ctx.fingerprint:
            raise LicensingError(ErrorCode.WRONG_INSTANCE, "the floating server sent a lease for another instance")
        missing = set(features) - set(lease.features)
        if missing:
            raise LicensingError(
                ErrorCode.FEATURE_UNAVAILABLE, f"the lease lacks requested feature(s) {', '.join(sorted(missing))}"
            )
        return lease, fcert

    # -- the source interface ----------------------------------------------------------------

    def next_due(self) -> float | None:
        retry = self.ctx.config.retry_interval
        if self.lease is not None:
            if self.failing_since is not None:
                return self.last_attempt + min(retry, self.lease.ttl / 3)
            return self.lease.issued_at + self.lease.ttl / 3
        if self.features and self.server_url:  # lost or returned lease: lease again
            return self.last_attempt + retry
        return None

    async def run_due(self) -> None:
        if self.lease is not None:
            await self.renew()
        elif self.features and self.server_url:
            await self.acquire(self.server_url, self.features)

    @property
    def background_kind(self) -> str:
        return "lease_renewal" if self.lease is not None else "lease_acquire"

    def usage_account(self) -> UsageAccount:
        cert = self.certificate
        return UsageAccount(cert.license_id, cert.activation_id) if cert is not None else UsageAccount()

    async def deliver_usage(self, metering: Metering, *, closing: bool = False) -> bool:
        """To the floating server (it carries them on to the vendor), also at shutdown before the
        seat is handed back. Only while a lease is held: the server takes records from holders only."""
        cert, url = self.certificate, self.server_url
        if self.lease is not None and cert is not None and url:
            ctx = self.ctx
            await report_to_floating(
                metering, url=url, server_public_key=cert.server_public_key, sign=ctx.sign, http=ctx.settings.http
            )
        return True

    async def reactivate(self) -> None:
        if self.server_url is None:
            raise LicensingError(ErrorCode.NOT_ACTIVATED, "no floating server is configured")
        await self.renew()

    async def deactivate(self) -> Outcome:
        released = True
        if self.lease is not None:
            try:
                await self._release()
            except LicensingError as exc:
                released = False
                log.warning("floating seat not released (%s); it frees itself when the lease expires", exc)
        self.ctx.emit("deactivated", method=str(self.model), seat_released=released)
        # an operator gave the seat up: the config's auto-lease waits for a restart or an activate
        return Outcome(None, {"seat_released": released}, holds_back_auto_lease=True)

    async def close(self) -> None:
        """Hand the seat back now rather than when the lease runs out; the next start leases again."""
        if self.lease is None or not self.server_url:
            return
        try:
            await asyncio.wait_for(self._release(), timeout=min(5.0, self.ctx.config.http_timeout))
        except (LicensingError, TimeoutError) as exc:
            log.warning("could not return the floating seat at shutdown: %s", exc)
        self._drop_lease()

    @classmethod
    def from_json(cls, ctx: SourceContext, data: dict[str, Any], problems: list[LicensingError]) -> FloatingSource:
        source = cls(
            ctx,
            server_url=data.get("server_url"),
            features=[str(f) for f in data.get("features") or []],
            last_ok_at=data.get("last_ok_at"),
            failing_since=data.get("failing_since"),
            last_error=data.get("last_error"),
        )
        if data.get("lease"):
            try:
                blob = unb64(data["lease"])
                source.lease, source.certificate = source._verify(blob, source.features)
                source.blob = blob
            except LicensingError as exc:
                problems.append(stored_document_problem(exc))
        return source

    def to_json(self) -> dict[str, Any]:
        return {
            "model": str(self.model),
            "server_url": self.server_url,
            "features": list(self.features),
            "lease": b64(self.blob) if self.blob is not None else None,
            "last_ok_at": self.last_ok_at,
            "failing_since": self.failing_since,
            "last_error": self.last_error,
        }

    def facts(self) -> SourceFacts:
        return SourceFacts(
            lease=self.lease, floating_certificate=self.certificate, checkin_failing_since=self.failing_since
        )

    @property
    def vacant(self) -> bool:
        return False

    @property
    def recovers_clock(self) -> bool:
        return False

    def status(self, next_due: float | None) -> dict[str, Any]:
        lease = self.lease
        return {
            "floating": {
                "server": self.server_url if lease is not None else None,
                "features": self.features,
                "lease_id": lease.lease_id if lease else None,
                "lease_expires_at": iso(lease.expires_at) if lease else None,
                "seats": self.certificate.seats if self.certificate else None,
                "next_renewal_at": iso(next_due),
                "last_error": self.last_error,
            }
        }
