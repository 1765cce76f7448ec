"""Webhook signatures as the Standard Webhooks specification defines them.

A receiver gets three headers: ``webhook-id`` (the same on every retry of one event, so it
can drop duplicates), ``webhook-timestamp`` (Unix seconds) and ``webhook-signature``
(``v1,<base64 HMAC-SHA256>`` of ``{id}.{timestamp}.{body}`` under the endpoint's secret).
Secrets are shown once as ``whsec_<base64>``; the libraries receivers use (svix,
standardwebhooks) verify exactly this.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping

from ...core.errors import ErrorCode, LicensingError

PREFIX = "whsec_"
TOLERANCE = 300  # seconds a receiver accepts a timestamp off its own clock (replays beyond are refused)


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _key(secret: str) -> bytes:
    raw = secret.removeprefix(PREFIX)
    try:
        return base64.b64decode(raw, validate=True)
    except ValueError:
        raise LicensingError(ErrorCode.INVALID_FIELD, "a webhook secret is whsec_ followed by base64") from None


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(_key(secret), signed, hashlib.sha256).digest()).decode()


def headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, msg_id, timestamp, body),
        "content-type": "application/json",
    }


def verify(secret: str, received: Mapping[str, str], body: bytes, now: int) -> str:
    """What a receiver does: check the timestamp window and any of the listed signatures;
    return the message id. Used by our tests and documented for integrators."""
    msg_id = received.get("webhook-id", "")
    try:
        timestamp = int(received.get("webhook-timestamp", ""))
    except ValueError:
        raise LicensingError(ErrorCode.INVALID_SIGNATURE, "webhook-timestamp is missing") from None
    if abs(now - timestamp) > TOLERANCE:
        raise LicensingError(ErrorCode.INVALID_SIGNATURE, "webhook-timestamp is outside the tolerance")
    expected = signature(secret, msg_id, timestamp, body).split(",", 1)[1]
    for candidate in received.get("webhook-signature", "").split():
        version, _, sig = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(sig, expected):
            return msg_id
    raise LicensingError(ErrorCode.INVALID_SIGNATURE, "no webhook-signature matches")
