"""The signed documents of the system, as typed dataclasses.

Who signs what:

* vendor   -> ``ActivationCertificate`` (online and offline; an offline one is the
              "usage license"), ``FloatingCertificate`` (binds a pool to a floating server),
              ``UsageAck`` (the receipt for usage records), ``ForwardedUsageAck`` (for records
              a floating server forwarded)
* floating -> ``Lease`` (carries the vendor-signed FloatingCertificate, so an agent
              verifies the whole chain against the one pinned vendor key), ``UsageAck``
              (its receipt for a leasing instance's usage records)
* instance -> ``InstanceRequest`` (activation, check-in, deactivation, offline
              request, offline deactivation code, usage report) - proves possession of the
              instance key; ``UsageRecord`` (one closed metering interval)

Each class knows its document type and checks field types when read back (:mod:`.document_base`);
signatures are checked in :mod:`.signing` before a body ever reaches ``from_body``. The usage
documents (``UsageRecord``, ``UsageAck``, ``ForwardedUsageAck``) are in :mod:`.usage_documents`,
the key rotation documents in :mod:`.keyring`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from . import instance_label
from .document_base import Document
from .errors import ErrorCode, LicensingError
from .features import Feature, resolve
from .signing import (
    Envelope,
    VerifyingKey,
    check_envelope,
    fingerprint,
    load_public_key,
    parse_envelope,
    verify_envelope,
)


@dataclass(frozen=True)
class ActivationCertificate(Document):
    """What an agent holds after an online or offline activation. Signed by the vendor."""

    TYP: ClassVar[str] = "activation_certificate"

    license_id: str
    key_mask: str
    activation_id: str
    model: str
    features: tuple[str, ...]
    instance_fingerprint: str
    issued_at: int
    valid_until: int | None  # online: issued_at + grace; offline: the license expiry (None = never)
    expires_at: int | None = None  # the license term itself
    support_until: int | None = None
    max_connections: int | None = None
    request_nonce: str | None = None  # offline: binds the usage license to one request
    # Offline metering: sequences of the usage records the request carried that the vendor now
    # holds (the instance deletes them on applying this usage license).
    usage_stored: tuple[int, ...] = field(default_factory=tuple)
    # "required": metered clients are refused once usage could not reach the vendor for longer
    # than the agent's metering_grace; "best_effort" never refuses for metering.
    metering: str = "best_effort"
    # Online: the check-in chain secret the next check-in must present; a copy of
    # the state folder holds the same one, so two instances diverge and the vendor sees it.
    chain: str | None = None
    # Non-admin connections allowed past max_connections, as a fraction of it (0..1);
    # certificates signed before it existed carry none, which means 0.
    overage: float = 0.0
    # The signed definitions of the granted features (core.features.Feature.to_body), so a broker
    # handles a feature its code never heard of; none (a certificate from before) means the built-ins.
    definitions: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    # The vendor's key rotations and retirements (core/keyring.py), carried to sites that never ask
    # for them (offline ones); each verifies on its own against keys the site trusts already.
    key_documents: tuple[bytes, ...] = field(default_factory=tuple)
    # Heartbeat terms (seconds): the instance sends a heartbeat every heartbeat_interval; the vendor
    # releases an activation silent longer than release_after. None (and older certificates): neither.
    heartbeat_interval: int | None = None
    release_after: int | None = None

    def feature_table(self) -> dict[str, Feature]:
        """The granted features' definitions: none carried (a certificate from before they travelled)
        means the built-in three; a feature without a definition is ``feature_undefined``."""
        return resolve(self.features, self.definitions)

    def check(self) -> None:
        self.feature_table()


@dataclass(frozen=True)
class HeartbeatAck(Document):
    """The vendor's signed answer to one heartbeat (bound to its nonce): the activation stays
    valid until ``valid_until`` (server time + release_after), no new certificate needed."""

    TYP: ClassVar[str] = "heartbeat_ack"

    activation_id: str
    instance_fingerprint: str
    request_nonce: str
    issued_at: int
    valid_until: int
    terms_changed: bool = False  # the license changed since the certificate was signed: check in now


@dataclass(frozen=True)
class FloatingCertificate(Document):
    """Binds a pool of seats to one floating server's key. Signed by the vendor."""

    TYP: ClassVar[str] = "floating_certificate"

    license_id: str
    key_mask: str
    activation_id: str
    server_fingerprint: str
    server_public_key: bytes
    seats: int
    features: tuple[str, ...]
    issued_at: int
    valid_until: int | None
    expires_at: int | None = None
    support_until: int | None = None
    max_connections: int | None = None
    request_nonce: str | None = None
    # Offline floating metering: ``usage_ref`` of every forwarded record the request
    # code carried that the vendor now holds (the floating server drops them on installing this).
    usage_stored: tuple[str, ...] = field(default_factory=tuple)
    overage: float = 0.0  # as ActivationCertificate.overage: the pool's instances may admit that much more
    chain: str | None = None  # the secret the server's next check-in presents (a copied data folder diverges)
    definitions: tuple[dict[str, Any], ...] = field(default_factory=tuple)  # as ActivationCertificate's
    key_documents: tuple[bytes, ...] = field(default_factory=tuple)  # as ActivationCertificate's (passed on in leases)

    def feature_table(self) -> dict[str, Feature]:
        """The granted features' definitions: none carried (a certificate from before they travelled)
        means the built-in three; a feature without a definition is ``feature_undefined``."""
        return resolve(self.features, self.definitions)

    def check(self) -> None:
        self.feature_table()


@dataclass(frozen=True)
class Lease(Document):
    """One seat of a floating pool for one instance. Signed by the floating server."""

    TYP: ClassVar[str] = "lease"

    lease_id: str
    instance_fingerprint: str
    features: tuple[str, ...]
    issued_at: int
    expires_at: int
    ttl: int
    certificate: bytes  # the vendor-signed FloatingCertificate of the issuing server
    chain: str | None = None  # the secret the next renewal presents (a copied folder diverges)


# Refusals that stop an instance, and so travel with a signed Verdict. Kept for the agent's
# imports until it asks ``ErrorCode.is_verdict`` itself; the one definition is the enum's.
VERDICT_CODES = frozenset(code for code in ErrorCode if code.is_verdict)


@dataclass(frozen=True)
class Verdict(Document):
    """The vendor's signed word that an activation no longer serves (revoked, suspended,
    expired, activation_not_found), bound to the one check-in request it answers.

    An unsigned HTTP error is something anyone on the path can send; an agent acts on
    a refusal only when it comes with a Verdict that verifies (else: grace)."""

    TYP: ClassVar[str] = "verdict"

    verdict: str
    activation_id: str
    instance_fingerprint: str
    request_nonce: str
    issued_at: int
    message: str = ""


@dataclass(frozen=True)
class TrialRecord(Document):
    """The vendor's signed word on when it first saw an instance on trial, bound to
    the request it answers. An agent with a vendor URL keeps the earlier of this and its own
    start, so deleting ``state.json`` and the trial marker (but not the identity) does not buy
    a new trial."""

    TYP: ClassVar[str] = "trial_record"

    instance_fingerprint: str
    trial_started_at: int
    request_nonce: str
    issued_at: int


@dataclass(frozen=True)
class InstanceRequest(Document):
    """A request signed by an instance's (or floating server's) own identity key.

    ``kind`` says what it asks: activate, check_in, deactivate, offline_request,
    offline_deactivation, floating_request. The public key travels inside so the
    receiver can verify first-contact requests; later requests are checked against
    the key on record.
    """

    TYP: ClassVar[str] = "instance_request"

    kind: str
    public_key: bytes
    fingerprint: str
    nonce: str
    created_at: int
    key_digest: str | None = None
    activation_id: str | None = None
    license_id: str | None = None
    features: tuple[str, ...] = field(default_factory=tuple)
    # Signed UsageRecords riding in an offline request or deactivation code.
    usage: tuple[bytes, ...] = field(default_factory=tuple)
    chain: str | None = None  # a check-in: the chain secret of the certificate it refreshes
    # A floating server forwarding its brokers' records: the public keys of the
    # instances that signed them (each self-certifying: its fingerprint is the record's instance).
    usage_keys: tuple[bytes, ...] = field(default_factory=tuple)
    issued_at: int | None = None  # a heartbeat: when the certificate it holds was signed
    # The instance's label (core/instance_label.py): untrusted text the instance chose, signed so
    # nobody on the path renames it; absent from requests of agents that send none.
    label: str | None = None

    def to_body(self) -> dict[str, Any]:
        body = super().to_body()
        for name in ("label", "issued_at"):  # not sent: codes and requests stay as short as before them
            if body[name] is None:
                del body[name]
        return body

    def check(self) -> None:
        instance_label.check(self.label)


def sign_instance_request(private_key: Ed25519PrivateKey, **fields: Any) -> bytes:
    from .signing import public_bytes

    pub = public_bytes(private_key)
    return InstanceRequest(public_key=pub, fingerprint=fingerprint(pub), **fields).sign(private_key)


def check_instance_request(
    env: Envelope, claimed: InstanceRequest, expected_kind: str, known_public_key: Ed25519PublicKey
) -> InstanceRequest:
    """``claimed`` (decoded from ``env`` unverified, to find the key on record) once ``env``
    verifies against that key: the same checks as :func:`open_instance_request` without decoding
    the request a second time (a check-in's hot path)."""
    check_envelope(env, InstanceRequest.TYP, known_public_key)
    if fingerprint(claimed.public_key) != claimed.fingerprint:
        raise LicensingError(ErrorCode.INVALID_SIGNATURE, "the request's fingerprint does not match its key")
    if claimed.kind != expected_kind:
        raise LicensingError(ErrorCode.WRONG_DOCUMENT, f"expected a {expected_kind} request, got {claimed.kind}")
    return claimed


def open_instance_request(
    blob: bytes, expected_kind: str, known_public_key: Ed25519PublicKey | None = None
) -> InstanceRequest:
    """Verify a self-signed instance request: against the key on record when there is one,
    else against the key it carries (whose fingerprint must match)."""
    env = parse_envelope(blob)
    key = known_public_key
    if key is None:  # decoded unverified only to find the key it claims (the check-in path has one)
        key = load_public_key(InstanceRequest.from_body(env.unverified_body()).public_key)
    body = verify_envelope(env, InstanceRequest.TYP, key)
    request = InstanceRequest.from_body(body)
    if fingerprint(request.public_key) != request.fingerprint:
        raise LicensingError(ErrorCode.INVALID_SIGNATURE, "the request's fingerprint does not match its key")
    if request.kind != expected_kind:
        raise LicensingError(ErrorCode.WRONG_DOCUMENT, f"expected a {expected_kind} request, got {request.kind}")
    return request


def verify_lease(blob: bytes, vendor_key: VerifyingKey) -> tuple[Lease, FloatingCertificate]:
    """Verify the chain vendor -> floating server -> lease; return both documents."""
    env = parse_envelope(blob)
    unverified = Lease.from_body(env.unverified_body())
    cert = FloatingCertificate.open(unverified.certificate, vendor_key)
    lease = Lease.from_body(verify_envelope(env, Lease.TYP, load_public_key(cert.server_public_key)))
    if fingerprint(cert.server_public_key) != cert.server_fingerprint:
        raise LicensingError(ErrorCode.INVALID_SIGNATURE, "floating certificate fingerprint mismatch")
    if not set(lease.features) <= set(cert.features):
        raise LicensingError(ErrorCode.FEATURE_UNAVAILABLE, "the lease grants features its pool does not have")
    return lease, cert
