"""Online licenses: activate with the vendor, check in periodically, trust only signed verdicts."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ...clients.activation import ActivationClient
from ...core import protocol
from ...core.documents import ActivationCertificate
from ...core.errors import ErrorCode, LicensingError
from ...core.keys import key_digest, normalize_key
from ...core.labels import KIND_ACTIVATE, KIND_CHECK_IN, KIND_DEACTIVATE
from ...core.models import LicenseModel
from ...core.signing import b64, unb64
from ...core.timefmt import iso
from ..metering.delivery import report_online
from . import (
    NO_OPERATIONS,
    AutoFactory,
    Handler,
    LicenseSource,
    Outcome,
    SourceContext,
    SourceFacts,
    UsageAccount,
    heartbeat,
    refuse_if_licensed_elsewhere,
    verify_certificate,
)
from .verdicts import trusted_verdict

if TYPE_CHECKING:
    from ..metering import Metering

log = logging.getLogger(__name__)


def vendor_url(ctx: SourceContext, fallback: str | None = None) -> str:
    url = ctx.config.vendor_url or fallback
    if not url:
        raise LicensingError(ErrorCode.SERVER_UNREACHABLE, "no vendor_url is configured for online activation")
    return url


@dataclass(eq=False)
class OnlineSource:
    model: ClassVar[str] = LicenseModel.ONLINE
    operations: ClassVar[Mapping[protocol.Operation, Handler]] = NO_OPERATIONS

    ctx: SourceContext = field(repr=False)
    certificate: ActivationCertificate
    blob: bytes = field(repr=False)
    server_url: str | None  # where the certificate came from: the vendor when the config names none
    vendor_verdict: str | None = None
    last_ok_at: int | None = None
    failing_since: int | None = None
    last_error: dict[str, str] | None = None
    last_attempt: float = 0.0
    gone: bool = False
    beat: heartbeat.Beat | None = None  # the last verified heartbeat ack of this activation
    last_beat_at: int | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    async def activate(
        cls, ctx: SourceContext, args: protocol.ActivateOnline, current: LicenseSource | None
    ) -> OnlineSource:
        key = normalize_key(args.license_key)
        refuse_if_licensed_elsewhere(current, key)
        url = vendor_url(ctx, current.server_url if isinstance(current, OnlineSource) else None)
        request = ctx.sign(KIND_ACTIVATE, key_digest=key_digest(key))
        async with ActivationClient(url, options=ctx.settings.http) as client:
            await learn_keys(ctx, client)
            answer = await client.activate(key, request)
        blob = answer["certificate"]
        cert = verify_certificate(ctx, blob, LicenseModel.ONLINE)
        ctx.clock.trust()
        ctx.emit("activated", method=str(cls.model), license_id=cert.license_id, activation_id=cert.activation_id)
        return cls(ctx, cert, blob, url, last_ok_at=ctx.now())

    @classmethod
    def auto_factory(cls, ctx: SourceContext) -> AutoFactory | None:
        """A license key in the config or environment: activate it whenever nothing is held (a fresh
        container); a restart finds the activation in state.json and uses no second one."""
        configured = ctx.settings.license_key
        if configured is None:
            return None

        async def activate() -> LicenseSource:
            log.info("activating the %s license key %s", configured.origin, configured.mask)
            return await cls.activate(ctx, protocol.ActivateOnline(configured.key), None)

        return activate

    @classmethod
    def from_json(cls, ctx: SourceContext, data: dict[str, Any], problems: list[LicensingError]) -> OnlineSource:
        blob = unb64(data["certificate"])
        cert = verify_certificate(ctx, blob, LicenseModel.ONLINE)
        return cls(
            ctx,
            cert,
            blob,
            data.get("server_url"),
            vendor_verdict=data.get("vendor_verdict"),
            # state.json before 0.3 named these last_checkin_ok_at / checkin_failing_since
            last_ok_at=data.get("last_ok_at", data.get("last_checkin_ok_at")),
            failing_since=data.get("failing_since", data.get("checkin_failing_since")),
            last_error=data.get("last_error"),
            beat=heartbeat.stored_ack(ctx, data.get("heartbeat_ack"), cert),
            last_beat_at=data.get("last_beat_at"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "model": str(self.model),
            "certificate": b64(self.blob),
            "server_url": self.server_url,
            "vendor_verdict": self.vendor_verdict,
            "last_ok_at": self.last_ok_at,
            "failing_since": self.failing_since,
            "last_error": self.last_error,
            "heartbeat_ack": self.beat.to_json() if self.beat is not None else None,
            "last_beat_at": self.last_beat_at,
        }

    def facts(self) -> SourceFacts:
        return SourceFacts(
            certificate=self.certificate,
            vendor_verdict=self.vendor_verdict,
            checkin_failing_since=self.failing_since,
            valid_until=self.beat.ack.valid_until if self.beat is not None else None,
        )

    @property
    def vacant(self) -> bool:
        return False

    @property
    def recovers_clock(self) -> bool:
        return False  # a check-in clears it: the vendor's answer vouches for the clock

    def status(self, next_due: float | None) -> dict[str, Any]:
        return {
            "check_in": {
                "server": self.ctx.config.vendor_url or self.server_url,
                "last_ok_at": iso(self.last_ok_at),
                "failing_since": iso(self.failing_since),
                "next_at": iso(next_due),
                "last_error": self.last_error,
                "heartbeat": heartbeat.status(self.certificate, self.beat, self.last_beat_at),
            }
        }

    # -- background check-in -------------------------------------------------------------

    def _retry_interval(self) -> float:
        """A heartbeat license retries at least once per heartbeat: a blip must not cost the activation."""
        beat = self.certificate.heartbeat_interval
        return min(self.ctx.config.retry_interval, beat) if beat else self.ctx.config.retry_interval

    def next_due(self) -> float | None:
        # released: ask for an activation again while one may come free
        if self.vendor_verdict == "released" or self.failing_since is not None or self.ctx.clock.tampered:
            return self.last_attempt + self._retry_interval()
        check_in = (self.last_ok_at or 0) + self.ctx.config.check_in_interval
        beat = self.certificate.heartbeat_interval
        if beat is None or self.vendor_verdict is not None:
            return check_in
        return min(check_in, max(self.last_beat_at or 0, self.last_ok_at or 0) + beat)

    async def run_due(self) -> None:
        """The released retry, a check-in when one is due (or after failures), else a heartbeat."""
        if self.vendor_verdict == "released":
            await self._take_back()
            return
        ctx = self.ctx
        check_in_due = ctx.now() >= (self.last_ok_at or 0) + ctx.config.check_in_interval
        if self.certificate.heartbeat_interval is None or check_in_due or self.failing_since is not None:
            await self._check_in()
        else:
            await self._heartbeat()

    @property
    def background_kind(self) -> str:
        return "check_in"

    def usage_account(self) -> UsageAccount:
        cert = self.certificate
        return UsageAccount(cert.license_id, cert.activation_id, cert.metering == "required")

    async def deliver_usage(self, metering: Metering, *, closing: bool = False) -> bool:
        """Report to the vendor (on its schedule and after each check-in; not at shutdown)."""
        if closing or self.gone:
            return False
        try:
            await report_online(
                metering,
                vendor_url=vendor_url(self.ctx, self.server_url),
                activation_id=self.certificate.activation_id,
                vendor_key=self.ctx.vendor_key,
                sign=self.ctx.sign,
                http=self.ctx.settings.http,  # timeout, CA and proxy, as every agent call
            )
        except LicensingError as exc:
            log.warning("usage report failed (records kept for the next attempt): %s", exc)
        return True

    async def reactivate(self) -> None:
        await self._check_in()

    async def _check_in(self) -> None:
        ctx = self.ctx
        now = ctx.now()
        self.last_attempt = now
        nonce = secrets.token_hex(16)
        try:
            async with ActivationClient(vendor_url(ctx, self.server_url), options=ctx.settings.http) as client:
                await learn_keys(ctx, client)
                blob = await client.check_in(
                    ctx.sign(
                        KIND_CHECK_IN,
                        nonce=nonce,
                        activation_id=self.certificate.activation_id,
                        chain=self.certificate.chain,
                    )
                )
            cert = verify_certificate(ctx, blob, LicenseModel.ONLINE)
        except LicensingError as exc:
            await self._refused(exc, now, nonce)
            return
        self._fresh(cert, blob, now)

    def _fresh(self, cert: ActivationCertificate, blob: bytes, now: int) -> None:
        if cert.activation_id != self.certificate.activation_id:
            self.beat = self.last_beat_at = None  # the ack of the old activation says nothing of the new
        self.certificate, self.blob = cert, blob
        self.vendor_verdict = self.failing_since = self.last_error = None
        self.last_ok_at = now
        self.ctx.clock.trust()

    async def _heartbeat(self) -> None:
        ctx = self.ctx
        now = ctx.now()
        self.last_attempt = now
        nonce = heartbeat.new_nonce()
        try:
            beat = await heartbeat.send(ctx, vendor_url(ctx, self.server_url), self.certificate, nonce)
        except LicensingError as exc:
            await self._refused(exc, now, nonce)
            return
        self.beat, self.last_beat_at = beat, now
        self.failing_since = self.last_error = None
        if beat.ack.terms_changed:  # the license changed: the new terms come with a certificate
            await self._check_in()

    async def _refused(self, exc: LicensingError, now: int, nonce: str) -> None:
        """A failed check-in or heartbeat; raises unless a release was answered with a new activation."""
        verdict = trusted_verdict(self.ctx, exc, self.certificate.activation_id, nonce)
        self._failed(exc, now, verdict)
        if verdict == ErrorCode.RELEASED:
            self.ctx.emit("activation_released", message=exc.message)
            await self._take_back()
            return
        raise exc

    async def _take_back(self) -> None:
        """After a release: the same activation back if the license has one free (else this raises,
        e.g. ``no_activations_left``, and the license serves out its last ack, then stops). A signed
        verdict on the way (revoked, or freed meanwhile by the vendor) counts as a check-in's would."""
        ctx = self.ctx
        now = ctx.now()
        self.last_attempt = now
        nonce = heartbeat.new_nonce()
        try:
            cert, blob = await heartbeat.take_back(ctx, vendor_url(ctx, self.server_url), self.certificate, nonce)
        except LicensingError as exc:
            verdict = trusted_verdict(ctx, exc, self.certificate.activation_id, nonce)
            if verdict is not None and verdict != ErrorCode.RELEASED:
                self._failed(exc, now, verdict)
            else:
                self.last_error = exc.to_dict()
            raise
        log.info("activation %s taken back after the vendor released it", cert.activation_id)
        self._fresh(cert, blob, now)
        ctx.emit("activated", method=str(self.model), license_id=cert.license_id, activation_id=cert.activation_id)

    def _failed(self, exc: LicensingError, now: int, verdict: ErrorCode | None) -> None:
        """Record a failed check-in. Only a verified vendor verdict stops the license."""
        self.last_error = exc.to_dict()
        if verdict == ErrorCode.ACTIVATION_NOT_FOUND:
            log.warning("the vendor no longer knows this activation (%s); license removed", exc.message)
            self.ctx.emit("activation_lost", message=exc.message)
            self.gone = True
        elif verdict == ErrorCode.RELEASED:  # serve out what the last answer granted, then stop
            log.warning("the vendor released this activation (%s)", exc.message)
            self.vendor_verdict = str(verdict)
        elif verdict is not None:  # revoked / suspended / expired: the state machine reads the code itself
            self.vendor_verdict = str(verdict)
        else:
            self.failing_since = self.failing_since or now

    # -- giving it up ----------------------------------------------------------------------

    async def deactivate(self) -> Outcome:
        ctx = self.ctx
        await free_activation(ctx, self.certificate.activation_id, self.server_url)  # raises: nothing was freed
        ctx.emit("deactivated", method=str(self.model), activation_id=self.certificate.activation_id)
        return Outcome(None)

    async def close(self) -> None:
        return None


async def free_activation(ctx: SourceContext, activation_id: str, server_url: str | None = None) -> None:
    """Free an online activation this instance holds (or held: a changed configured key replaced
    it) at the vendor; one the vendor already counts as free is freed. Raises when nothing was."""
    async with ActivationClient(vendor_url(ctx, server_url), options=ctx.settings.http) as client:
        try:
            await client.deactivate(ctx.sign(KIND_DEACTIVATE, activation_id=activation_id))
        except LicensingError as exc:
            if not exc.code.means_already_free:
                raise


async def learn_keys(ctx: SourceContext, client: ActivationClient) -> None:
    """The vendor's key rotations and retirements, fetched before an answer its new key signed is
    checked; each document is verified against the keys this site trusts already (an older
    vendor without them answers 404: nothing to learn)."""
    if ctx.keys is None:
        return
    try:
        documents = await client.key_documents()
    except LicensingError as exc:
        log.debug("no vendor key documents: %s", exc.message)
        return
    if ctx.keys.accept(documents):
        log.info("vendor keys trusted now: %s", ", ".join(fp[:12] for fp in sorted(ctx.keys.keys.keys)))
