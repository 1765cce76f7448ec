"""Offline licenses: exchanged as codes, never checking in.

The instance writes a request code; the vendor answers it with a usage license that names the
request's nonce, so only the newest request can be answered (older nonces are remembered as
superseded). Deactivation produces a signed code the operator carries back to the vendor.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ...core import protocol
from ...core.codes import armor, unarmor
from ...core.documents import ActivationCertificate
from ...core.errors import ErrorCode, LicensingError
from ...core.keys import key_digest, normalize_key
from ...core.labels import (
    DEACTIVATION_CODE,
    KIND_OFFLINE_DEACTIVATION,
    KIND_OFFLINE_REQUEST,
    USAGE_LICENSE,
    USAGE_REQUEST,
)
from ...core.models import LicenseModel
from ...core.signing import b64, unb64
from ...core.timefmt import iso
from ..marker import record_deactivation
from . import (
    AutoFactory,
    Handler,
    LicenseSource,
    Outcome,
    SourceContext,
    SourceFacts,
    UsageAccount,
    refuse_if_licensed_elsewhere,
    stored_document_problem,
    verify_certificate,
)

if TYPE_CHECKING:
    from ..metering import Metering

_SUPERSEDED_KEPT = 16


@dataclass(frozen=True)
class PendingRequest:
    """An offline request waiting for its usage license."""

    nonce: str
    created_at: int
    request_code: str


@dataclass(eq=False)
class OfflineSource:
    """Also stands for "nothing held yet" while a first request is pending, and for the
    deactivation code left after giving the license up."""

    model: ClassVar[str] = LicenseModel.OFFLINE
    operations: ClassVar[Mapping[protocol.Operation, Handler]] = {}  # filled below the class: the codes' exchange

    ctx: SourceContext = field(repr=False)
    certificate: ActivationCertificate | None = None
    blob: bytes | None = field(default=None, repr=False)
    pending: PendingRequest | None = None
    superseded_nonces: list[str] = field(default_factory=list)
    deactivation_code: str | None = None
    gone: bool = False

    # -- the exchange of codes ---------------------------------------------------------------

    @classmethod
    async def request(cls, ctx: SourceContext, args: protocol.Arguments, current: LicenseSource | None) -> Outcome:
        """Write a new request code (a renewal when an offline license is held); it supersedes the last one."""
        assert isinstance(args, protocol.OfflineRequest)
        key = normalize_key(args.license_key)
        source = current if isinstance(current, OfflineSource) else None
        if source is None:
            refuse_if_licensed_elsewhere(current)
            source = cls(ctx)
        now = ctx.now()
        nonce = secrets.token_hex(16)
        blob = ctx.sign(
            KIND_OFFLINE_REQUEST,
            nonce=nonce,
            key_digest=key_digest(key),
            activation_id=source.certificate.activation_id if source.certificate else None,
            usage=tuple(ctx.usage.carried()) if ctx.usage else (),
        )
        code = armor(USAGE_REQUEST, blob)
        old = source.pending
        source.pending = PendingRequest(nonce, now, code)
        source.superseded_nonces = _plus(source.superseded_nonces, old.nonce if old else None)
        ctx.emit("offline_request_created", created_at=iso(now), superseded_previous=old is not None)
        return Outcome(source, {"request_code": code})

    @classmethod
    async def cancel(cls, ctx: SourceContext, args: protocol.Arguments, current: LicenseSource | None) -> Outcome:
        """Drop the pending request; a usage license answering it later is refused as superseded."""
        source = current if isinstance(current, OfflineSource) else None
        if source is None or source.pending is None:
            raise LicensingError(ErrorCode.NO_PENDING_REQUEST, "no offline request is pending on this instance")
        nonce = source.pending.nonce
        source.pending = None
        source.superseded_nonces = _plus(source.superseded_nonces, nonce)
        ctx.emit("offline_request_cancelled")
        return Outcome(source, {"cancelled": True})

    @classmethod
    def auto_factory(cls, ctx: SourceContext) -> AutoFactory | None:
        return None  # codes are carried by an operator

    @classmethod
    async def activate(
        cls, ctx: SourceContext, args: protocol.ActivateOffline, current: LicenseSource | None
    ) -> OfflineSource:
        blob = unarmor(args.usage_license, USAGE_LICENSE)
        cert = verify_certificate(ctx, blob, LicenseModel.OFFLINE)
        source = current if isinstance(current, OfflineSource) else None
        pending = source.pending if source else None
        if pending is None or cert.request_nonce != pending.nonce:
            if source is not None and cert.request_nonce in source.superseded_nonces:
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
        assert source is not None
        if ctx.usage is not None and cert.usage_stored:
            await ctx.usage.stored(list(cert.usage_stored))
        ctx.clock.trust()
        ctx.emit("activated", method=str(cls.model), license_id=cert.license_id, activation_id=cert.activation_id)
        return cls(ctx, cert, blob, superseded_nonces=_plus(source.superseded_nonces, pending.nonce))

    async def deactivate(self) -> Outcome:
        cert = self.certificate
        if cert is None:
            raise LicensingError(ErrorCode.NOT_ACTIVATED, "no license is activated on this instance")
        # Recorded outside the state folder first: a state.json restored from a backup taken before
        # this code is refused at load, since the vendor may free the activation with it.
        await asyncio.to_thread(
            record_deactivation, self.ctx.config.trial_marker, self.ctx.fingerprint, cert.activation_id
        )
        code = armor(
            DEACTIVATION_CODE,
            self.ctx.sign(
                KIND_OFFLINE_DEACTIVATION,
                activation_id=cert.activation_id,
                license_id=cert.license_id,
                # kept here too: nothing says the code reaches the vendor; a resend is counted once
                usage=tuple(self.ctx.usage.carried()) if self.ctx.usage else (),
            ),
        )
        self.ctx.emit("deactivated", method=str(self.model), activation_id=cert.activation_id)
        # What remains is the code to carry to the vendor (shown in the status until replaced).
        return Outcome(OfflineSource(self.ctx, deactivation_code=code), {"deactivation_code": code})

    async def reactivate(self) -> None:
        if self.certificate is None:
            raise LicensingError(ErrorCode.NOT_ACTIVATED, "no license is activated on this instance")
        raise LicensingError(
            ErrorCode.OFFLINE_LICENSE_CANNOT_REACTIVATE,
            "an offline license cannot be reactivated: generate a new offline request and "
            "apply the usage license the vendor sends back (the broker keeps serving meanwhile)",
        )

    # -- state -------------------------------------------------------------------------------

    @classmethod
    def from_json(cls, ctx: SourceContext, data: dict[str, Any], problems: list[LicensingError]) -> OfflineSource:
        pending = data.get("pending")
        source = cls(
            ctx,
            pending=PendingRequest(str(pending["nonce"]), int(pending["created_at"]), str(pending["request_code"]))
            if pending
            else None,
            superseded_nonces=[str(n) for n in data.get("superseded_nonces") or []],
            deactivation_code=data.get("deactivation_code"),
        )
        if data.get("certificate"):
            try:
                blob = unb64(data["certificate"])
                source.certificate, source.blob = verify_certificate(ctx, blob, LicenseModel.OFFLINE), blob
            except LicensingError as exc:
                problems.append(stored_document_problem(exc))
        return source

    def to_json(self) -> dict[str, Any]:
        p = self.pending
        return {
            "model": str(self.model),
            "certificate": b64(self.blob) if self.blob is not None else None,
            "pending": {"nonce": p.nonce, "created_at": p.created_at, "request_code": p.request_code} if p else None,
            "superseded_nonces": list(self.superseded_nonces),
            "deactivation_code": self.deactivation_code,
        }

    def facts(self) -> SourceFacts:
        return SourceFacts(
            certificate=self.certificate, pending_offline_at=self.pending.created_at if self.pending else None
        )

    @property
    def vacant(self) -> bool:
        return self.certificate is None and self.pending is None

    @property
    def recovers_clock(self) -> bool:
        return self.certificate is not None  # it never checks in, so nothing else could clear the mark

    def next_due(self) -> float | None:
        return None

    async def run_due(self) -> None:
        return None

    @property
    def background_kind(self) -> str:
        return "check_in"  # never due: named for completeness

    def usage_account(self) -> UsageAccount:
        cert = self.certificate
        if cert is None:
            return UsageAccount()
        return UsageAccount(cert.license_id, cert.activation_id, cert.metering == "required")

    async def deliver_usage(self, metering: Metering, *, closing: bool = False) -> bool:
        return False  # offline usage travels in the request and deactivation codes

    async def close(self) -> None:
        return None

    def status(self, next_due: float | None) -> dict[str, Any]:
        p = self.pending
        if p is None and self.certificate is None and self.deactivation_code is None:
            return {}
        return {
            "offline": {
                "pending_request_at": iso(p.created_at) if p else None,
                "request_code": p.request_code if p else None,
                "deactivation_code": self.deactivation_code,
            }
        }


OfflineSource.operations = {
    protocol.Operation.OFFLINE_REQUEST: OfflineSource.request,
    protocol.Operation.OFFLINE_CANCEL: OfflineSource.cancel,
}


def _plus(nonces: list[str], nonce: str | None) -> list[str]:
    kept = list(nonces)
    if nonce:
        kept.append(nonce)
    return kept[-_SUPERSEDED_KEPT:]
