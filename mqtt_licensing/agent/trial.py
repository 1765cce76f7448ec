"""The trial start recorded with the vendor.

With a vendor URL configured, an instance on trial tells the vendor once per run; the vendor
keeps the first time it saw that instance and answers with a signed :class:`TrialRecord`.
The agent keeps the earlier of that and its own start, so deleting ``state.json`` and the
trial marker (but keeping the identity) does not restart the trial. A vendor that cannot be
reached changes nothing: the local records stand.
"""

from __future__ import annotations

import logging
import secrets

from ..clients.activation import ActivationClient
from ..core.documents import TrialRecord
from ..core.errors import LicensingError
from ..core.labels import KIND_TRIAL
from .sources import SourceContext

log = logging.getLogger(__name__)


async def vendor_trial_start(ctx: SourceContext) -> int | None:
    """When the vendor first saw this instance on trial; None when it cannot tell us (verifiably)."""
    url = ctx.config.vendor_url
    if not url:
        return None
    nonce = secrets.token_hex(16)
    try:
        async with ActivationClient(url, options=ctx.settings.http) as client:  # CA and proxy as every call
            blob = await client.record_trial(ctx.sign(KIND_TRIAL, nonce=nonce))
        record = TrialRecord.open(blob, ctx.vendor_key)
    except LicensingError as exc:
        log.info("trial start not recorded with the vendor (%s)", exc.message)
        return None
    if (record.instance_fingerprint, record.request_nonce) != (ctx.fingerprint, nonce):
        log.warning("ignoring a trial record that answers another request")
        return None
    return record.trial_started_at


__all__ = ["vendor_trial_start"]
