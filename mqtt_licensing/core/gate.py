"""The CONNECT gate: may this client connect now? Pure and in-memory only.

Called on every CONNECT, so it must stay cheap: no I/O, no signature checks.
The inputs are an :class:`~.state.Evaluation` the agent refreshed earlier and a
connection count the agent keeps itself (amqtt's own session states are wrong).
"""

from __future__ import annotations

import math
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
    READER_LIMIT = "reader_limit"  # more than max_reader_connections readers (dashboards) at once


@dataclass(frozen=True)
class Decision:
    allowed: bool
    refusal: Refusal | None = None
    message: str = ""
    over_cap: bool = False  # admitted past max_connections, inside the license's overage


def connection_ceiling(evaluation: Evaluation) -> int | None:
    """⌊max_connections × (1 + overage)⌋, None for unlimited. The overage is counted in basis
    points in integers, so 10 × 1.1 is 11, never 10 by a float's rounding; a value outside
    0..1 (the vendor accepts none) counts as 0 below and 1 above."""
    limit = evaluation.max_connections
    if limit is None:
        return None
    overage = 0.0 if math.isnan(evaluation.overage) else min(max(evaluation.overage, 0.0), 1.0)
    basis_points = round(overage * 10_000)
    return limit + limit * basis_points // 10_000


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
    trial = evaluation.model == "trial"
    missing = frozenset() if trial else (required_features | evaluation.baseline) - set(evaluation.features)
    if missing:
        return Decision(
            False,
            Refusal.FEATURE_MISSING,
            f"this client needs feature(s) {', '.join(sorted(missing))} which the license lacks",
        )
    limit = evaluation.max_connections
    if limit is None or current_connections < limit:
        return ADMIT
    ceiling = connection_ceiling(evaluation)  # worked out only at the limit: the overage's headroom
    if ceiling is None:
        return ADMIT
    if current_connections < ceiling:
        return Decision(True, over_cap=True, message=f"admitted past the licensed limit ({limit}), up to {ceiling}")
    allowed = f"the licensed connection limit ({limit}" + (f", {ceiling} with overage)" if ceiling > limit else ")")
    return Decision(False, Refusal.CONNECTION_LIMIT, f"{allowed} is reached")


def must_disconnect_existing(evaluation: Evaluation, enforce_existing: bool) -> bool:
    """Existing clients are kept on a lapse unless the operator opted in (never stop a plant by surprise)."""
    return enforce_existing and not evaluation.serving
