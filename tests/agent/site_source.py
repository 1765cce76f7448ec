"""A fourth license model that exists only in the tests: a *site* license, a vendor-signed
certificate handed to the instance directly (no server, no codes, nothing due in the background).

It is one module; registering it is one line (``SOURCES["site"] = SiteSource``). The agent
serves it without knowing it exists: that is what tests/agent/test_sources.py checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mqtt_licensing.agent.metering import Metering
from mqtt_licensing.agent.sources import (
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
from mqtt_licensing.core import protocol
from mqtt_licensing.core.documents import ActivationCertificate
from mqtt_licensing.core.errors import ErrorCode, LicensingError
from mqtt_licensing.core.models import LicenseModel
from mqtt_licensing.core.signing import b64, unb64

SITE = "site"


def _verify(ctx: SourceContext, blob: bytes) -> ActivationCertificate:
    return verify_certificate(ctx, blob, SITE)


@dataclass(eq=False)
class SiteSource:
    model: ClassVar[str] = SITE
    operations: ClassVar[Mapping[protocol.Operation, Handler]] = NO_OPERATIONS

    ctx: SourceContext = field(repr=False)
    certificate: ActivationCertificate
    blob: bytes = field(repr=False)
    gone: bool = False

    @classmethod
    async def activate(cls, ctx: SourceContext, args: Any, current: LicenseSource | None) -> SiteSource:
        assert isinstance(args, protocol.ActivateOther)
        text = args.fields.get("site_certificate")
        if not isinstance(text, str):
            raise LicensingError(ErrorCode.MISSING_FIELD, "field 'site_certificate' is required")
        refuse_if_licensed_elsewhere(current)
        blob = unb64(text)
        cert = _verify(ctx, blob)
        ctx.emit("activated", method=SITE, license_id=cert.license_id, activation_id=cert.activation_id)
        return cls(ctx, cert, blob)

    @classmethod
    def auto_factory(cls, ctx: SourceContext) -> AutoFactory | None:
        return None

    @classmethod
    def from_json(cls, ctx: SourceContext, data: dict[str, Any], problems: list[LicensingError]) -> SiteSource:
        blob = unb64(data["certificate"])
        return cls(ctx, _verify(ctx, blob), blob)

    def to_json(self) -> dict[str, Any]:
        return {"model": SITE, "certificate": b64(self.blob)}

    def facts(self) -> SourceFacts:
        return SourceFacts(certificate=self.certificate)

    @property
    def vacant(self) -> bool:
        return False

    @property
    def recovers_clock(self) -> bool:
        return True  # nothing checks in: a corrected clock is all there is

    def next_due(self) -> float | None:
        return None

    async def run_due(self) -> None:
        return None

    @property
    def background_kind(self) -> str:
        return "check_in"

    def usage_account(self) -> UsageAccount:
        return UsageAccount(self.certificate.license_id, self.certificate.activation_id)

    async def deliver_usage(self, metering: Metering, *, closing: bool = False) -> bool:
        return False

    async def reactivate(self) -> None:
        raise LicensingError(ErrorCode.OFFLINE_LICENSE_CANNOT_REACTIVATE, "a site license has nothing to renew")

    async def deactivate(self) -> Outcome:
        self.ctx.emit("deactivated", method=SITE, activation_id=self.certificate.activation_id)
        return Outcome(None, {"released": True})

    async def close(self) -> None:
        return None

    def status(self, next_due: float | None) -> dict[str, Any]:
        return {"site": {"license_id": self.certificate.license_id}}


assert SITE not in set(LicenseModel)  # a model the core does not know
