"""License sources: one module per license model, each behind :class:`LicenseSource`.

The agent holds at most one current source (``None`` is the trial). A source owns its
verified documents, its network duties (check-ins, lease renewals, usage delivery), the
operations only it answers, and its own section of ``state.json``; the agent evaluates,
schedules, persists and publishes, and never asks which model it holds. Adding a model is one
new module and one line in :data:`SOURCES` (tests/agent/test_sources.py registers a fourth).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from ...core import protocol
from ...core.documents import ActivationCertificate, FloatingCertificate, Lease
from ...core.errors import ErrorCode, LicensingError
from ...core.keyring import KeyRing
from ...core.keys import mask_key
from ...core.models import LicenseModel
from ...core.signing import VerifyingKey
from ...core.state import Facts
from ..config import AgentConfig, AgentSettings
from ..statefile import ClockRecord

if TYPE_CHECKING:
    from ..metering import Metering


@dataclass(frozen=True)
class SourceFacts:
    """What a source contributes to :func:`~mqtt_licensing.core.state.evaluate` (documents verified)."""

    certificate: ActivationCertificate | None = None
    lease: Lease | None = None
    floating_certificate: FloatingCertificate | None = None
    vendor_verdict: str | None = None
    checkin_failing_since: int | None = None
    pending_offline_at: int | None = None
    valid_until: int | None = None  # a signed heartbeat ack's: later than the certificate's


@dataclass(frozen=True)
class SourceContext:
    """Everything a source may use from the agent; nothing else reaches back into it."""

    config: AgentConfig
    settings: AgentSettings  # parsed once: the HTTP options, the floating replicas
    vendor_key: VerifyingKey  # the pinned key, or the site's KeyRing across vendor key rotations
    fingerprint: str
    now: Callable[[], int]
    # sign(kind, *, nonce=None, **fields): an instance request signed with the identity key
    sign: Callable[..., bytes]
    # emit(event_type, **data): announced on $license/events once the change is saved
    emit: Callable[..., None]
    clock: ClockRecord  # shared and mutable: a successful online check-in trusts the clock again
    # Metering: pending usage records for the codes that carry them offline.
    usage: UsageCarrier | None = None
    keys: KeyRing | None = None  # learns the vendor's key rotations (online check-ins fetch them)


class UsageCarrier(Protocol):
    def carried(self) -> list[bytes]:
        """The oldest pending usage records, as many as one offline code carries."""
        ...

    async def stored(self, sequences: list[int]) -> None:
        """The vendor's signed word (in a usage license) that it holds these records."""
        ...


@dataclass(frozen=True)
class Outcome:
    """What an operation leaves: the source holding the license afterwards (None: the trial) and the reply data."""

    source: LicenseSource | None
    reply: Mapping[str, Any] = field(default_factory=dict)
    # An operator gave up a license the config leases by itself: no auto-lease until a restart or an activate.
    holds_back_auto_lease: bool = False


@dataclass(frozen=True)
class UsageAccount:
    """Whose usage the records of an interval are, and whether the license requires them delivered."""

    license_id: str | None = None
    activation_id: str | None = None
    required: bool = False  # `metering: required`: metered clients are refused once usage is overdue


#: An operation a source answers beyond activate/reactivate/deactivate (offline_request, ...).
Handler = Callable[[SourceContext, protocol.Arguments, "LicenseSource | None"], Awaitable[Outcome]]
#: Leases or otherwise obtains a license with no operator action, as the config asks.
AutoFactory = Callable[[], Awaitable["LicenseSource"]]


NO_OPERATIONS: Mapping[protocol.Operation, Handler] = MappingProxyType({})


class LicenseSource(Protocol):
    """One license model: its verified documents, its network duties, its slice of state.json.

    Operations change the source in place; a source the server no longer knows sets
    :attr:`gone` and the agent drops it. Failures raise :class:`LicensingError` after the source
    recorded them (the agent saves either way).
    """

    model: ClassVar[str]  # the activate request's ``method`` and state.json's ``model``
    #: Operations this model answers besides activate/reactivate/deactivate, with or without a
    #: current source of its kind (offline: ``offline_request``, ``offline_cancel``).
    operations: ClassVar[Mapping[protocol.Operation, Handler]]
    gone: bool

    @classmethod
    async def activate(cls, ctx: SourceContext, args: Any, current: LicenseSource | None) -> LicenseSource:
        """``args``: this model's :data:`~mqtt_licensing.core.protocol.Activate` member, checked."""
        ...

    @classmethod
    def auto_factory(cls, ctx: SourceContext) -> AutoFactory | None:
        """How to obtain this model's license with no operator action, if the config asks (None: it does not)."""
        ...

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

    @property
    def background_kind(self) -> str:
        """The metrics ``kind`` of :meth:`run_due`: ``check_in``, ``lease_renewal`` or ``lease_acquire``."""
        ...

    def usage_account(self) -> UsageAccount: ...

    async def deliver_usage(self, metering: Metering, *, closing: bool = False) -> bool:
        """Carry pending usage records to whoever takes them for this model; False when this model
        does not deliver now (offline usage travels in its codes). ``closing``: at shutdown."""
        ...

    async def reactivate(self) -> None: ...

    async def deactivate(self) -> Outcome:
        """Give the license up: what remains (e.g. an offline deactivation code) and the reply data."""
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
        valid_until=held.valid_until,
    )


def verify_certificate(ctx: SourceContext, blob: bytes, model: str) -> ActivationCertificate:
    if ctx.keys is not None:  # a rotation it carries (an offline usage license) is learnt first
        ctx.keys.accept_carried(blob)
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


def _registry() -> dict[str, type[LicenseSource]]:
    from .floating import FloatingSource
    from .offline import OfflineSource
    from .online import OnlineSource

    return {
        OnlineSource.model: OnlineSource,
        OfflineSource.model: OfflineSource,
        FloatingSource.model: FloatingSource,
    }


#: method / model name -> source class. One line per license model.
SOURCES: dict[str, type[LicenseSource]] = _registry()


def _methods() -> str:
    names = list(SOURCES)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


async def operate(
    ctx: SourceContext, operation: protocol.Operation, args: protocol.Arguments, current: LicenseSource | None
) -> Outcome:
    """One license request on the current source. ``activate`` picks the source class by ``method``;
    an operation no source answers is refused."""
    Op = protocol.Operation
    if operation is Op.ACTIVATE:
        assert isinstance(args, protocol.ACTIVATE_ARGUMENTS)
        method = args.method
        cls = SOURCES.get(method)
        if cls is None:
            raise LicensingError(ErrorCode.UNSUPPORTED_METHOD, f"method must be {_methods()}, not {method!r}")
        return Outcome(await cls.activate(ctx, args, current))
    for cls in SOURCES.values():
        handler = cls.operations.get(operation)
        if handler is not None:
            return await handler(ctx, args, current)
    if current is None:
        raise LicensingError(ErrorCode.NOT_ACTIVATED, "no license is activated on this instance")
    if operation is Op.REACTIVATE:
        await current.reactivate()
        return Outcome(current)
    if operation is Op.DEACTIVATE:
        return await current.deactivate()
    raise LicensingError(ErrorCode.UNKNOWN_OPERATION, f"{str(operation)!r} is not a license operation")


def auto_factory(ctx: SourceContext) -> AutoFactory | None:
    """The config's choice of a license obtained with no operator action (floating_server_url), if any."""
    for cls in SOURCES.values():
        factory = cls.auto_factory(ctx)
        if factory is not None:
            return factory
    return None


def source_from_json(ctx: SourceContext, data: Any, problems: list[LicensingError]) -> LicenseSource | None:
    """The stored source section back as a source (None: trial). Anything unreadable is reported and dropped."""
    if data is None:
        return None
    try:
        cls = SOURCES[str(data["model"])]
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
    "NO_OPERATIONS",
    "SOURCES",
    "AutoFactory",
    "Handler",
    "LicenseSource",
    "Outcome",
    "SourceContext",
    "SourceFacts",
    "UsageAccount",
    "auto_factory",
    "facts_of",
    "operate",
    "refuse_if_licensed_elsewhere",
    "source_from_json",
    "verify_certificate",
]
