"""Billing metered usage through Stripe, with the official ``stripe`` library.

One Stripe *meter event* per license per day: ``event_name`` (the meter's, e.g.
``iot_bridge_messages``), ``payload = {stripe_customer_id, value}`` and an ``identifier`` and
``Idempotency-Key`` both derived from (license, day, unit). A retry - after a timeout, a crash
of this process or an operator running the command twice - carries the same key, so Stripe
bills the day once (it answers a repeated key with the first answer, and drops a repeated
identifier).

Only a day that is over (UTC, plus ``SETTLE_SECONDS`` for late online reports) is billed: the
key fixes the day's quantity at the first report. Records that reach the vendor after that
(e.g. an offline code brought weeks later) are stored and shown by ``vendor usage`` but not
billed again automatically; the report shows the difference.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from ...core.errors import ErrorCode, LicensingError

UNITS = ("messages", "bytes", "client_hours")
SETTLE_SECONDS = 2 * 3600


def idempotency_key(license_id: str, day: str, unit: str) -> str:
    """Stable for (license, day, unit): every retry of one day's report carries the same key."""
    digest = hashlib.sha256(f"mqtt-licensing/usage/{license_id}/{day}/{unit}".encode()).hexdigest()[:32]
    return f"usage-{digest}"


def _day_end(day: str) -> int:
    start = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC)
    return int((start + timedelta(days=1)).timestamp())


def report_day(
    service: Any,
    license_id: str,
    day: str,
    *,
    customer: str,
    event_name: str,
    unit: str = "messages",
    api_key: str,
    api_base: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """Send one day's usage of one license to Stripe; returns what was sent."""
    if unit not in UNITS:
        raise LicensingError(ErrorCode.INVALID_FIELD, f"unit must be one of {', '.join(UNITS)}")
    usage = service.usage_by_day(license_id, day, day)
    end = _day_end(usage["from"])
    if (time.time() if now is None else now) < end + SETTLE_SECONDS:
        raise LicensingError(
            ErrorCode.BAD_REQUEST, f"{day} is not over yet (billable from {SETTLE_SECONDS // 3600} h after its end)"
        )
    row = usage["days"][0] if usage["days"] else {"messages": 0, "bytes": 0, "client_seconds": 0}
    value = row["client_seconds"] // 3600 if unit == "client_hours" else row[unit]
    key = idempotency_key(license_id, usage["from"], unit)
    with service.store.transaction() as tx:
        done = tx.usage.billed(license_id, usage["from"], unit)
    if done is not None:  # Stripe forgets idempotency keys after 24 h: this table does not
        return {**done, "already_reported": True}
    import stripe  # imported here: only the billing command needs it

    client = stripe.StripeClient(api_key, base_addresses={"api": api_base} if api_base else None, max_network_retries=2)
    params: dict[str, Any] = {
        "event_name": event_name,
        "identifier": key,
        "timestamp": end - 1,
        "payload": {"stripe_customer_id": customer, "value": str(value)},
    }
    try:
        event = client.v1.billing.meter_events.create(params=params, options={"idempotency_key": key})  # type: ignore[arg-type]
    except stripe.StripeError as exc:
        raise LicensingError(ErrorCode.SERVER_UNREACHABLE, f"Stripe refused or could not be reached: {exc}") from None
    sent = {"license_id": license_id, "day": usage["from"], "unit": unit, "value": value, "idempotency_key": key}
    with service.store.transaction() as tx:
        if tx.usage.billed(license_id, usage["from"], unit) is None:
            tx.usage.record_billed({**sent, "reported_at": int(time.time())})
    return {**sent, "already_reported": False, "stripe_identifier": getattr(event, "identifier", key)}
