"""The CONNECT gate: may this client connect now? Pure and in-memory only.

Called on every CONNECT, so it must stay cheap: no I/O, no signature checks.
The inputs are an :class:`~.state.Evaluation` the agent refreshed earlier and a
connection count the agent keeps itself (amqtt's own session states are wrong).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .state import Evaluation


class Refusal(StrEnum):
    NOT_LICENSED = "not_licensed"
    CONNECTION_LIMIT = "connection_limit"
    FEATURE_MISSING = "feature_missing"
    BAD_CREDENTIALS = "bad_credentials"
    METERING_UNDELIVERED = "metering_undelivered"  # metering: required, usage overdue at the vendor
    ADMIN_LIMIT = "admin_limit"  # more than max_admin_connections admins at once


@dataclass(frozen=True)
class Decision:
    allowed: bool
    refusal: Refusal | None = None
    message: str = ""


ADMIT = Decision(True)


def decide(
    evaluation: Evaluation,
    *,
    is_admin: bool,
    required_features: frozenset[str],
    current_connections: int,
) -> Decision:
    """Admins always pass; everyone else needs a serving state, a free slot and their features."""
    if is_admin:
        return ADMIT
    if not evaluation.serving:
        return Decision(False, Refusal.NOT_LICENSED, f"license state is {evaluation.state}: {evaluation.reason}")
    missing = required_features - set(evaluation.features) if evaluation.model != "trial" else frozenset()
    if missing:
        return Decision(
            False,
            Refusal.FEATURE_MISSING,
            f"this client needs feature(s) {', '.join(sorted(missing))} which the license lacks",
        )
    limit = evaluation.max_connections
    if limit is not None and current_connections >= limit:
        return Decision(False, Refusal.CONNECTION_LIMIT, f"the licensed connection limit ({limit}) is reached")
    return ADMIT


def must_disconnect_existing(evaluation: Evaluation, enforce_existing: bool) -> bool:
    """Existing clients are kept on a lapse unless the operator opted in (never stop a plant by surprise)."""
    return enforce_existing and not evaluation.serving
