"""The activation server's rows as frozen values: what :mod:`.store` reads and writes."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class LicenseRecord:
    id: str
    key_digest: str
    key_mask: str
    model: str
    features: tuple[str, ...]
    max_activations: int
    seats: int | None
    expires_at: int | None
    support_until: int | None
    max_connections: int | None
    status: str
    created_at: int
    updated_at: int
    metering: str = "best_effort"
    clone_policy: str = "flag"  # "flag" | "suspend": what a second instance on one activation gets
    overage: float = 0.0  # connections allowed past max_connections, as a fraction of it
    heartbeat_interval: int | None = None  # seconds between an online instance's heartbeats
    release_after: int | None = None  # an activation silent this long is released


@dataclass(frozen=True)
class ActivationRecord:
    id: str
    license_id: str
    instance_fingerprint: str
    public_key: bytes
    model: str
    created_at: int
    last_check_in_at: int | None
    request_nonce: str | None
    request_created_at: int | None
    freed_at: int | None
    freed_reason: str | None
    chain: str | None = None  # the check-in chain secret the next check-in presents
    chain_prev: str | None = None  # accepted once more while ``chain`` was never presented (a lost answer)
    cloned_at: int | None = None  # when two instances were first seen on this activation
    clone_count: int = 0
    label: str | None = None  # untrusted text the instance sent (core/instance_label.py)
    last_heartbeat_at: int | None = None

    @property
    def active(self) -> bool:
        return self.freed_at is None

    @property
    def last_seen_at(self) -> int:
        """When the vendor last heard from the instance: its activation, check-in or usage license
        (``last_check_in_at``), or its heartbeat, whichever is later (listing.py asks it in SQL)."""
        seen = self.last_check_in_at if self.last_check_in_at is not None else self.created_at
        return max(seen, self.last_heartbeat_at or 0)


_LICENSE_FIELDS = tuple(f.name for f in fields(LicenseRecord))
_ACTIVATION_FIELDS = tuple(f.name for f in fields(ActivationRecord))


def license_row(row: Any) -> LicenseRecord:
    return license_from(dict(row._mapping))  # noqa: SLF001 - SQLAlchemy's public Row API


def license_from(values: dict[str, Any]) -> LicenseRecord:
    """The record of a row's ``{column: value}`` (a :class:`.._prepared.Prepared` row too)."""
    values["features"] = tuple(values["features"] or ())
    return LicenseRecord(**{name: values[name] for name in _LICENSE_FIELDS})


def activation_row(row: Any) -> ActivationRecord:
    return activation_from(dict(row._mapping))  # noqa: SLF001 - SQLAlchemy's public Row API


def activation_from(values: dict[str, Any]) -> ActivationRecord:
    values["public_key"] = bytes(values["public_key"])
    return ActivationRecord(**{name: values[name] for name in _ACTIVATION_FIELDS})


def license_values(values: dict[str, Any]) -> dict[str, Any]:
    if "features" in values:
        values = {**values, "features": list(values["features"])}
    return values


__all__ = [
    "ActivationRecord",
    "LicenseRecord",
    "activation_from",
    "activation_row",
    "license_from",
    "license_row",
    "license_values",
]
