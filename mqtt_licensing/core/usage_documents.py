"""The signed documents of metering (units in topics.md "Usage"): an instance's records and the
receipts for them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from .document_base import Document


@dataclass(frozen=True)
class UsageRecord(Document):
    """One closed metering interval of one instance. Signed by the instance key.

    ``sequence`` counts the instance's records from 1 without gaps, so the vendor sees a lost
    record as a hole and a resent one as a duplicate of (instance, sequence)."""

    TYP: ClassVar[str] = "usage_record"

    instance_fingerprint: str
    sequence: int
    period_start: int
    period_end: int
    messages: int  # PUBLISH packets delivered to metered clients
    bytes: int  # their payload bytes
    client_seconds: int  # connected time of metered clients (client-hours = / 3600)
    license_id: str | None = None
    activation_id: str | None = None


@dataclass(frozen=True)
class UsageAck(Document):
    """The vendor's signed receipt for usage records: the agent deletes a record only on one.

    ``sequences`` lists every record now stored (new or a duplicate of one stored before);
    ``missing`` names holes the vendor sees below the highest sequence it holds; ``conflicts``
    the records whose sequence the vendor holds with other content (never acknowledged: the
    agent numbers them again above ``high_water``, the highest sequence the vendor holds)."""

    TYP: ClassVar[str] = "usage_ack"

    instance_fingerprint: str
    sequences: tuple[int, ...]
    request_nonce: str
    issued_at: int
    missing: tuple[int, ...] = field(default_factory=tuple)
    high_water: int = 0
    conflicts: tuple[int, ...] = field(default_factory=tuple)


def usage_ref(instance_fingerprint: str, sequence: int) -> str:
    """Names one usage record across instances: what a floating server's receipts list."""
    return f"{instance_fingerprint}:{sequence}"


@dataclass(frozen=True)
class ForwardedUsageAck(Document):
    """The vendor's signed receipt for records a floating server forwarded, bound to
    the batch request's nonce; ``stored`` lists :func:`usage_ref` of every record now held."""

    TYP: ClassVar[str] = "forwarded_usage_ack"

    server_fingerprint: str
    stored: tuple[str, ...]
    request_nonce: str
    issued_at: int


__all__ = ["ForwardedUsageAck", "UsageAck", "UsageRecord", "usage_ref"]
