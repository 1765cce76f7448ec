"""Which refusals from a license server an online source may act on: only vendor-signed ones."""

from __future__ import annotations

import logging

from ...core.documents import Verdict
from ...core.errors import ErrorCode, LicensingError
from . import SourceContext

log = logging.getLogger(__name__)


def trusted_verdict(ctx: SourceContext, exc: LicensingError, activation_id: str, nonce: str) -> ErrorCode | None:
    """The refusal's code if the vendor signed it for this activation and this very request (a
    check-in or a heartbeat); else None.

    Anyone on the path can send an HTTP 403; only a verified Verdict may stop the license
    (an unsigned one counts as a failed check-in: grace)."""
    if not exc.code.is_verdict:
        return None
    try:
        if exc.evidence is None:
            raise LicensingError(ErrorCode.INVALID_SIGNATURE, "the refusal carries no signed verdict")
        verdict = Verdict.open(exc.evidence, ctx.vendor_key)
    except LicensingError as problem:
        log.warning("ignoring an unverified %s from the license server (%s)", exc.code, problem.message)
        return None
    if (verdict.verdict, verdict.activation_id, verdict.instance_fingerprint, verdict.request_nonce) != (
        str(exc.code),
        activation_id,
        ctx.fingerprint,
        nonce,
    ):
        log.warning("ignoring a %s verdict that answers another request", exc.code)
        return None
    return exc.code
