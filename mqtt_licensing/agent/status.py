"""The status document: what `$license/status` shows (retained) and every reply carries.

It never contains a secret: the key appears masked, request and deactivation
codes carry no key (only its digest), and nothing here would let a reader act
as the instance.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ..core.documents import ActivationCertificate, FloatingCertificate, Lease
from ..core.errors import LicensingError
from ..core.state import Evaluation, Limits
from .store import PersistedState


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_status(
    *,
    evaluation: Evaluation,
    state: PersistedState,
    limits: Limits,
    fingerprint: str,
    certificate: ActivationCertificate | None,
    lease: Lease | None,
    floating_certificate: FloatingCertificate | None,
    connections: int,
    next_sync_at: float | None,
    check_in_server: str | None,
    problems: list[LicensingError],
) -> dict[str, Any]:
    held = certificate or floating_certificate
    doc: dict[str, Any] = {
        "state": str(evaluation.state),
        "serving": evaluation.serving,
        "reason": evaluation.reason,
        "model": evaluation.model,
        "license_id": held.license_id if held else None,
        "key": held.key_mask if held else None,
        "activation_id": held.activation_id if held else None,
        "features": list(evaluation.features),
        "support_until": iso(evaluation.support_until),
        "expires_at": iso(evaluation.expires_at),
        "valid_until": iso(certificate.valid_until) if certificate else (iso(lease.expires_at) if lease else None),
        "deadline": iso(evaluation.deadline),
        "max_connections": evaluation.max_connections,
        "connections": connections,
        "instance": {"fingerprint": fingerprint},
        "trial": None,
        "check_in": None,
        "offline": None,
        "floating": None,
        "clock": {"last_seen": iso(state.last_seen), "tampered": state.clock_tampered},
        "problems": [p.to_dict() for p in problems],
    }
    if held is None:
        doc["trial"] = {
            "started_at": iso(state.trial_started_at),
            "ends_at": iso(state.trial_started_at + limits.trial_seconds),
            "max_connections": limits.trial_max_connections,
        }
    if certificate is not None and certificate.model == "online":
        doc["check_in"] = {
            "server": check_in_server,
            "last_ok_at": iso(state.last_checkin_ok_at),
            "failing_since": iso(state.checkin_failing_since),
            "next_at": iso(next_sync_at),
            "last_error": state.last_error,
        }
    if state.pending_offline or state.deactivation_code or (certificate and certificate.model == "offline"):
        pending = state.pending_offline or {}
        doc["offline"] = {
            "pending_request_at": iso(pending.get("created_at")),
            "request_code": pending.get("request_code"),
            "deactivation_code": state.deactivation_code,
        }
    if lease is not None or state.floating_features:
        doc["floating"] = {
            "server": state.server_url if lease is not None else None,
            "features": state.floating_features,
            "lease_id": lease.lease_id if lease else None,
            "lease_expires_at": iso(lease.expires_at) if lease else None,
            "seats": floating_certificate.seats if floating_certificate else None,
            "next_renewal_at": iso(next_sync_at),
            "last_error": state.last_error,
        }
    return doc
