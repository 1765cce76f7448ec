"""Client of a floating license server's lease API (used by the agent and the tests).

The requests are :class:`core.documents.InstanceRequest` documents signed by the
instance key; :func:`lease_request` builds one. Every request needs a fresh nonce
(the server refuses a replayed one), so sign a new request for every call,
including retries. The lease returned is the raw signed blob: verify it with
:func:`core.documents.verify_lease` and the pinned vendor key before trusting it.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..core import labels
from ..core.documents import sign_instance_request
from ..core.signing import b64
from .http import JsonApiClient, binary_field


def lease_request(
    instance_key: Ed25519PrivateKey,
    kind: str,
    *,
    features: Iterable[str] = (),
    now: float | None = None,
    label: str | None = None,
) -> bytes:
    """A signed lease_acquire / lease_renew / lease_release request with a fresh nonce; ``label``:
    the instance's name (core/instance_label.py), shown by the floating server's status."""
    if kind not in (labels.KIND_LEASE_ACQUIRE, labels.KIND_LEASE_RENEW, labels.KIND_LEASE_RELEASE):
        raise ValueError(f"not a lease request kind: {kind}")
    return sign_instance_request(
        instance_key,
        kind=kind,
        nonce=secrets.token_hex(16),
        created_at=int(time.time() if now is None else now),
        features=tuple(sorted(set(features))),
        label=label,
    )


class FloatingClient(JsonApiClient):
    """``async with FloatingClient(url) as c: blob = await c.acquire(request)``."""

    async def acquire(self, request: bytes, *, join_token: str | None = None) -> bytes:
        """``join_token``: the pool's secret, needed for a new seat of a pool with access rules."""
        body = {"request": b64(request)} | ({"join_token": join_token} if join_token else {})
        return _lease(await self.call("POST", "/v1/leases", json=body))

    async def renew(self, request: bytes) -> bytes:
        return _lease(await self.call("POST", "/v1/leases/renew", json={"request": b64(request)}))

    async def release(self, request: bytes) -> None:
        """Return the seat; succeeds too when the server held no lease for this instance."""
        await self.call("POST", "/v1/leases/release", json={"request": b64(request)})

    async def report_usage(self, request: bytes, records: list[bytes]) -> bytes:
        """The leasing instance's usage records -> the floating server's signed UsageAck."""
        data = await self.call(
            "POST", "/v1/usage", json={"request": b64(request), "records": [b64(r) for r in records]}
        )
        return binary_field(data, "ack")

    async def health(self) -> dict[str, Any]:
        return dict(await self.call("GET", "/v1/health"))

    async def admin_status(self, *, label: str | None = None, silent_for: int | None = None) -> dict[str, Any]:
        """Needs the admin token (``FloatingClient(url, token=...)``). ``label`` / ``silent_for``
        (seconds) show only the leases that match (core/listing.py: LeaseFilter)."""
        params = {"label": label, "silent_for": None if silent_for is None else str(silent_for)}
        given = {name: value for name, value in params.items() if value is not None}
        return dict(await self.call("GET", "/v1/admin/status", params=given))


def _lease(data: Any) -> bytes:
    return binary_field(data, "lease")


__all__ = ["FloatingClient", "lease_request"]
