"""What the activation service's main operations answer: frozen values with named fields.

The HTTP app turns each into its JSON body with ``to_json()`` (binary fields as base64url); the
CLI, the store and the tests read the fields. The JSON shapes are the API's and do not change.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ...core.signing import b64


@dataclass(frozen=True)
class ActivationResult:
    """An online activation (of a broker or a floating server): the signed certificate."""

    certificate: bytes
    activation_id: str
    license_id: str
    reused: bool  # the instance's live activation, renewed: no activation was used up

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "certificate": b64(self.certificate)}


@dataclass(frozen=True)
class OfflineActivation:
    """A usage request code turned into a usage license (armoured text)."""

    usage_license: str
    activation_id: str
    license_id: str
    reused: bool
    usage_records: int  # the usage records the request code carried, stored once

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FloatingIssue:
    """A floating server's request code turned into a floating certificate (armoured text)."""

    certificate: str
    activation_id: str
    license_id: str
    reused: bool
    usage_records: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class OfflineDeactivation:
    """A deactivation code handed in: the activation is freed, or was already."""

    freed: bool
    already_free: bool
    activation_id: str
    license_id: str
    usage_records: int
    freed_at: int | None = None  # when it was freed before (``already_free`` only)
    freed_reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        if not self.already_free:
            del out["freed_at"], out["freed_reason"]
        return out


__all__ = ["ActivationResult", "FloatingIssue", "OfflineActivation", "OfflineDeactivation"]
