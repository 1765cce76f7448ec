"""License sources: one module per license model, each behind :class:`LicenseSource`.

The agent holds at most one current source (``None`` is the trial). A source owns its
verified documents, its network duties (check-ins, lease renewals) and its own section of
``state.json``; the agent evaluates, schedules, persists and publishes. Adding a model is one
new module and one line in :data:`SOURCES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ...core import protocol
from ...core.documents import ActivationCertificate, FloatingCertificate, Lease
from ...core.errors import ErrorCode, LicensingError
from ...core.keys import mask_key
from ...core.models import LicenseModel
from ...core.state import Facts
from ..config import AgentConfig
from ..statefile import ClockRecord


@dataclass(frozen=True)
class SourceFacts:
    """What a source contributes to :func:`~mqtt_licensing.core.state.evaluate` (documents verified)."""

    certificate: ActivationCertificate | None = None
    lease: Lease | None = None
    floating_certificate: FloatingCertificate | None = None
    vendor_verdict: str | None = None
    checkin_failing_since: int | None = None
    pending_offline_at: int | None = None


@dataclass(frozen=True)
class SourceContext:
    """Everything a source may use from the agent; nothing else reaches back into it."""

    config: AgentConfig
    vendor_key: Ed25519PublicKey
    fingerprint: str
    now: Callable[[], int]
    # sign(kind, *, nonce=None, **fields): an instance request signed with the identity key
    sign: Callable[..., bytes]
    # emit(event_type, **data): announced on $license/events once the change is saved
    emit: Callable[..., None]
    clock: ClockRecord  # shared and mutable: a successful online check-in trusts the clock again
    # Metering (issue 16): pending usage records for the codes that carry them offline.
    usage: UsageCarrier | None = None


class UsageCarrier(Protocol):
    def carried(self) -> list[bytes]:
        """The oldest pending usage records, as many as one offline code carries."""
        ...

    async def stored(self, sequences: list[int]) -> None:
        """The vendor's signed word (in a usage license) that it holds these records."""
        ...


class LicenseSource(Protocol):
    """One license model: its verified documents, its network duties, its slice of state.json.

    Operations return nothing and change the source in place; a source the server no longer
    knows sets :attr:`gone` and the agent drops it. Failures raise :class:`LicensingError`
    after the source recorded them (the agent saves either way).
    """

    model: ClassVar[LicenseModel]
    gone: bool

    @classmethod
    async def activate(
        cls, ctx: SourceContext, fields: dict[str, Any], current: LicenseSource | None
    ) -> LicenseSource: ...

    @classmethod
    def from_json(
        cls, ctx: SourceContext, data: dict[str, Any], problems: list[LicensingError]
    ) -> LicenseSource | None:
        """Rebuild from state.json, re-verifying every document; report what did not verify."""
        ...

    def to_json(self) -> dict[str, Any]: ...

    def facts(self) -> SourceFacts: ...

    @property
    def vacant(self) -> bool:
        """Holds no license and waits for none (an auto-lease from the config may replace it)."""
        ...

    @property
    def recovers_clock(self) -> bool:
        """May the clock-tampered mark clear once the clock is back (no check-in can clear it)?"""
        ...

    def next_due(self) -> float | None:
        """When the background work (check-in, renewal) is due next; None for never."""
        ...

    async def run_due(self) -> None: ...

    async def reactivate(self) -> None: ...

    async def deactivate(self) -> tuple[LicenseSource | None, dict[str, Any]]:
        """Give the license up; return what remains (e.g. an offline deactivation code) and the reply data."""
        ...

    async def close(self) -> None:
        """Clean shutdown (a floating seat is handed back)."""
        ...

    def status(self, next_due: float | None) -> dict[str, Any]:
        """The status sections this source fills (``check_in``, ``offline``, ``floating``)."""
        ...


def facts_of(source: LicenseSource | None, *, trial_started_at: int, clock_tampered: bool) -> Facts:
    """The facts :func:`~mqtt_licensing.core.state.evaluate` reads: the agent's and the source's."""
    held = source.facts() if source is not None else SourceFacts()
    return Facts(
        trial_started_at=trial_started_at,
        certificate=held.certificate,
        lease=held.lease,
        floating_certificate=held.floating_certificate,
        vendor_verdict=held.vendor_verdict,
        checkin_failing_since=held.checkin_failing_since,
        pending_offline_at=held.pending_offline_at,
        clock_tampered=clock_tampered,
    )


def verify_certificate(ctx: SourceContext, blob: bytes, model: LicenseModel) -> ActivationCertificate:
    cert = ActivationCertificate.open(blob, ctx.vendor_key)
    if cert.instance_fingerprint != ctx.fingerprint:
        raise LicensingError(
            ErrorCode.WRONG_INSTANCE,
            "this certificate belongs to another instance (fingerprint "
            f"{cert.instance_fingerprint}, this instance is {ctx.fingerprint})",
        )
    if cert.model != model:
        raise LicensingError(ErrorCode.WRONG_MODEL, f"expected an {model} license, got an {cert.model} one")
    return cert


def refuse_if_licensed_elsewhere(current: LicenseSource | None, key: str | None = None) -> None:
    """Refuse to replace a license held now; activating the same online key again refreshes it."""
    if current is None:
        return
    facts = current.facts()
    held = facts.certificate or facts.floating_certificate
    if held is None:
        return
    same_key = key is not None and facts.certificate is not None and facts.certificate.key_mask == mask_key(key)
    if same_key and current.model is LicenseModel.ONLINE:
        return
    raise LicensingError(
        ErrorCode.ALREADY_ACTIVATED,
        f"this instance already holds license {held.license_id} ({held.key_mask}); deactivate it first",
    )


def stored_document_problem(exc: LicensingError) -> LicensingError:
    return LicensingError(
        ErrorCode.STATE_CORRUPT, f"the stored license did not verify ({exc.code}: {exc.message}); activate again"
    )


def _registry() -> dict[LicenseModel, type[LicenseSource]]:
    from .floating import FloatingSource
    from .offline import OfflineSource
    from .online import OnlineSource

    return {
        LicenseModel.ONLINE: OnlineSource,
        LicenseModel.OFFLINE: OfflineSource,
        LicenseModel.FLOATING: FloatingSource,
    }


SOURCES: dict[LicenseModel, type[LicenseSource]] = _registry()


async def operate(
    ctx: SourceContext, operation: str, fields: dict[str, Any], current: LicenseSource | None
) -> tuple[LicenseSource | None, dict[str, Any]]:
    """One license request on the current source: the source that holds the license afterwards,
    and the reply data. ``activate`` picks the source class by ``method`` (a :class:`LicenseModel`)."""
    if operation == "activate":
        method = protocol.optional_str(fields, "method", LicenseModel.ONLINE) or LicenseModel.ONLINE
        try:
            model = LicenseModel(method)
        except ValueError:
            raise LicensingError(
                ErrorCode.UNSUPPORTED_METHOD, f"method must be online, offline or floating, not {method!r}"
            ) from None
        return await SOURCES[model].activate(ctx, fields, current), {}
    if operation == "offline_request":
        from .offline import OfflineSource

        return await OfflineSource.request(ctx, fields, current)
    if operation == "offline_cancel":
        from .offline import OfflineSource

        return OfflineSource.cancel(ctx, current)
    if current is None:
        raise LicensingError(ErrorCode.NOT_ACTIVATED, "no license is activated on this instance")
    if operation == "reactivate":
        await current.reactivate()
        return current, {}
    if operation == "deactivate":
        return await current.deactivate()
    raise LicensingError(ErrorCode.UNKNOWN_OPERATION, f"{operation!r} is not a license operation")


def source_from_json(ctx: SourceContext, data: Any, problems: list[LicensingError]) -> LicenseSource | None:
    """The stored source section back as a source (None: trial). Anything unreadable is reported and dropped."""
    if data is None:
        return None
    try:
        cls = SOURCES[LicenseModel(data["model"])]
        return cls.from_json(ctx, data, problems)
    except LicensingError as exc:
        problems.append(stored_document_problem(exc))
    except (KeyError, TypeError, ValueError) as exc:
        problems.append(
            LicensingError(
                ErrorCode.STATE_CORRUPT, f"the stored license section was unreadable ({exc!r}); activate again"
            )
        )
    return None


__all__ = [
    "SOURCES",
    "LicenseSource",
    "SourceContext",
    "SourceFacts",
    "facts_of",
    "operate",
    "refuse_if_licensed_elsewhere",
    "source_from_json",
    "verify_certificate",
]
