"""Online licenses: activate with the vendor, check in periodically, trust only signed verdicts."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ...clients.activation import ActivationClient
from ...core import protocol
from ...core.documents import ActivationCertificate, Verdict
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
    refuse_if_licensed_elsewhere,
    verify_certificate,
)

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
        return cls(
            ctx,
            verify_certificate(ctx, blob, LicenseModel.ONLINE),
            blob,
            data.get("server_url"),
            vendor_verdict=data.get("vendor_verdict"),
            # state.json before 0.3 named these last_checkin_ok_at / checkin_failing_since
            last_ok_at=data.get("last_ok_at", data.get("last_checkin_ok_at")),
            failing_since=data.get("failing_since", data.get("checkin_failing_since")),
            last_error=data.get("last_error"),
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
        }

    def facts(self) -> SourceFacts:
        return SourceFacts(
            certificate=self.certificate, vendor_verdict=self.vendor_verdict, checkin_failing_since=self.failing_since
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
            }
        }

    # -- background check-in -------------------------------------------------------------

    def next_due(self) -> float | None:
        if self.failing_since is not None or self.ctx.clock.tampered:
            return self.last_attempt + self.ctx.config.retry_interval
        return (self.last_ok_at or 0) + self.ctx.config.check_in_interval

    async def run_due(self) -> None:
        await self._check_in()

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
            self._failed(exc, now, self._trusted_verdict(exc, nonce))
            raise
        self.certificate, self.blob = cert, blob
        self.vendor_verdict = self.failing_since = self.last_error = None
        self.last_ok_at = now
        ctx.clock.trust()

    def _trusted_verdict(self, exc: LicensingError, nonce: str) -> ErrorCode | None:
        """The refusal's code if the vendor signed it for this activation and this very request; else None.

        Anyone on the path can send an HTTP 403; only a verified Verdict may stop the license
        (an unsigned one counts as a failed check-in: grace)."""
        if not exc.code.is_verdict:
            return None
        try:
            if exc.evidence is None:
                raise LicensingError(ErrorCode.INVALID_SIGNATURE, "the refusal carries no signed verdict")
            verdict = Verdict.open(exc.evidence, self.ctx.vendor_key)
        except LicensingError as problem:
            log.warning("ignoring an unverified %s from the license server (%s)", exc.code, problem.message)
            return None
        if (verdict.verdict, verdict.activation_id, verdict.instance_fingerprint, verdict.request_nonce) != (
            str(exc.code),
            self.certificate.activation_id,
            self.ctx.fingerprint,
            nonce,
        ):
            log.warning("ignoring a %s verdict that answers another request", exc.code)
            return None
        return exc.code

    def _failed(self, exc: LicensingError, now: int, verdict: ErrorCode | None) -> None:
        """Record a failed check-in. Only a verified vendor verdict stops the license."""
        self.last_error = exc.to_dict()
        if verdict == ErrorCode.ACTIVATION_NOT_FOUND:
            log.warning("the vendor no longer knows this activation (%s); license removed", exc.message)
            self.ctx.emit("activation_lost", message=exc.message)
            self.gone = True
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
