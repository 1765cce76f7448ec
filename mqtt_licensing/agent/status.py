"""The status document: what `$license/status` shows (retained) and every reply carries.

It never contains a secret: the key appears masked, request and deactivation
codes carry no key (only its digest), and nothing here would let a reader act
as the instance.
"""

from __future__ import annotations

from typing import Any

from ..core.documents import ActivationCertificate
from ..core.errors import LicensingError
from ..core.gate import connection_ceiling
from ..core.state import Evaluation, Facts, Limits
from ..core.timefmt import iso
from .statefile import ClockRecord


def build_status(
    *,
    evaluation: Evaluation,
    facts: Facts,
    clock: ClockRecord,
    limits: Limits,
    fingerprint: str,
    label: str | None,
    sections: dict[str, Any],
    connections: int,
    problems: list[LicensingError],
) -> dict[str, Any]:
    """``sections``: what the current source shows (``check_in``, ``offline`` or ``floating``)."""
    certificate, lease = facts.certificate, facts.lease
    held = certificate or facts.floating_certificate
    doc: dict[str, Any] = {
        "state": str(evaluation.state),
        "serving": evaluation.serving,
        "reason": evaluation.reason,
        # A stopped license (suspended, revoked) is still held by this model: Reactivate applies.
        "model": evaluation.model or _held_model(facts),
        "license_id": held.license_id if held else None,
        "key": held.key_mask if held else None,
        "activation_id": held.activation_id if held else None,
        "features": list(evaluation.features),
        # The granted features' signed definitions (title, kind, unit, gates), and whether they let
        # any non-admin client connect (false: the no_serving_feature alarm is raised).
        "definitions": [d.to_body() for d in evaluation.definitions],
        "serves_clients": evaluation.serves_clients,
        "support_until": iso(evaluation.support_until),
        "expires_at": iso(evaluation.expires_at),
        "valid_until": iso(_valid_until(certificate, facts))
        if certificate
        else (iso(lease.expires_at) if lease else None),
        "deadline": iso(evaluation.deadline),
        "max_connections": evaluation.max_connections,
        "connections": connections,
        "connections_over_cap": evaluation.max_connections is not None and connections > evaluation.max_connections,
        "overage": _overage(evaluation),
        # The label is the broker's own (config or host name, cleaned): shown as text, never markup.
        "instance": {"fingerprint": fingerprint, "label": label},
        "trial": None,
        # Where a deactivation leads: back to the evaluation period while it lasts.
        "trial_ends_at": iso(facts.trial_started_at + limits.trial_seconds),
        "check_in": None,
        "offline": None,
        "floating": None,
        "clock": {"last_seen": iso(clock.last_seen), "tampered": clock.tampered, "stepped_back": clock.stepped_back},
        "problems": [p.to_dict() for p in problems],
    }
    if held is None:
        doc["trial"] = {
            "started_at": iso(facts.trial_started_at),
            "ends_at": iso(facts.trial_started_at + limits.trial_seconds),
            "max_connections": limits.trial_max_connections,
        }
    doc.update(sections)
    return doc


def _valid_until(certificate: ActivationCertificate, facts: Facts) -> int | None:
    """The certificate's, or later when a signed heartbeat ack vouches for more."""
    if certificate.valid_until is None or facts.valid_until is None:
        return certificate.valid_until
    return max(certificate.valid_until, facts.valid_until)


def _held_model(facts: Facts) -> str | None:
    if facts.certificate is not None:
        return str(facts.certificate.model)
    return "floating" if facts.floating_certificate is not None else None


def _overage(evaluation: Evaluation) -> dict[str, Any] | None:
    """The license's headroom past max_connections, when it grants any."""
    ceiling = connection_ceiling(evaluation)
    if ceiling is None or evaluation.overage <= 0:
        return None
    return {"fraction": evaluation.overage, "allowed": ceiling}
