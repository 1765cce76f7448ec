"""The online source's heartbeats: what a license with heartbeat terms adds to the daily check-in.

The certificate says how often (``heartbeat_interval``) and how long the vendor waits before it
releases a silent activation (``release_after``). Each heartbeat is a small signed request; the
answer is a vendor-signed :class:`HeartbeatAck` bound to it, whose ``valid_until`` (vendor time +
release_after) is how long the instance may serve without news - so an instance cut off from the
vendor stops serving about when its activation is released, never long after another took it.

After a release (a signed ``released`` verdict) the instance takes its activation back - a request
signed with its own key, so no license key is kept on the broker - when the license has one free;
otherwise it serves out what the last ack granted, then stops, and keeps asking.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from ...clients.activation import ActivationClient
from ...core.documents import ActivationCertificate, HeartbeatAck
from ...core.errors import ErrorCode, LicensingError
from ...core.labels import KIND_HEARTBEAT, KIND_REVIVE
from ...core.models import LicenseModel
from ...core.signing import b64, unb64
from ...core.timefmt import iso
from . import SourceContext, verify_certificate


@dataclass(frozen=True)
class Beat:
    """A verified ack and its signed bytes (kept in state.json, verified again on load)."""

    ack: HeartbeatAck
    blob: bytes

    def to_json(self) -> str:
        return b64(self.blob)


def open_ack(ctx: SourceContext, blob: bytes, cert: ActivationCertificate, nonce: str | None = None) -> Beat:
    """Verify an ack against the vendor key, this instance and the activation it holds (and, fresh
    from the server, the request it answers)."""
    ack = HeartbeatAck.open(blob, ctx.vendor_key)
    if (ack.activation_id, ack.instance_fingerprint) != (cert.activation_id, ctx.fingerprint):
        raise LicensingError(ErrorCode.WRONG_DOCUMENT, "the heartbeat answer is for another activation")
    if nonce is not None and ack.request_nonce != nonce:
        raise LicensingError(ErrorCode.WRONG_DOCUMENT, "the heartbeat answer is for another request")
    return Beat(ack, blob)


def stored_ack(ctx: SourceContext, data: object, cert: ActivationCertificate) -> Beat | None:
    """The ack in state.json if it still verifies for this certificate; anything else is dropped
    (the instance then relies on its certificate alone: never longer than the vendor said)."""
    if not isinstance(data, str):
        return None
    try:
        return open_ack(ctx, unb64(data), cert)
    except (LicensingError, ValueError):
        return None


def new_nonce() -> str:
    return secrets.token_hex(16)


async def send(ctx: SourceContext, url: str, cert: ActivationCertificate, nonce: str) -> Beat:
    """One heartbeat with ``nonce``: the verified ack. A refusal raises with the server's evidence
    (a verdict the caller checks against ``nonce``)."""
    request = ctx.sign(KIND_HEARTBEAT, nonce=nonce, activation_id=cert.activation_id, issued_at=cert.issued_at)
    async with ActivationClient(url, options=ctx.settings.http) as client:
        blob = await client.heartbeat(request)
    return open_ack(ctx, blob, cert, nonce)


def status(cert: ActivationCertificate, beat: Beat | None, last_beat_at: int | None) -> dict[str, Any] | None:
    """``status.check_in.heartbeat``: None unless the license has heartbeat terms."""
    if cert.heartbeat_interval is None:
        return None
    return {
        "interval": cert.heartbeat_interval,
        "release_after": cert.release_after,
        "last_ok_at": iso(last_beat_at),
        "valid_until": iso(beat.ack.valid_until if beat is not None else None),
    }


async def take_back(
    ctx: SourceContext, url: str, cert: ActivationCertificate, nonce: str
) -> tuple[ActivationCertificate, bytes]:
    """The released activation back, with a fresh certificate (``no_activations_left`` when none
    is free). A refusal raises with the server's evidence, as a check-in's does."""
    request = ctx.sign(KIND_REVIVE, nonce=nonce, activation_id=cert.activation_id, chain=cert.chain)
    async with ActivationClient(url, options=ctx.settings.http) as client:
        blob = await client.revive(request)
    return verify_certificate(ctx, blob, LicenseModel.ONLINE), blob


__all__ = ["Beat", "new_nonce", "open_ack", "send", "status", "stored_ack", "take_back"]
