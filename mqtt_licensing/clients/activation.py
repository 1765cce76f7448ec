"""HTTP client of the vendor activation server's public API, used by agents and floating servers
(the admin API's client is :mod:`.admin`).

Requests are :class:`~mqtt_licensing.core.documents.InstanceRequest` blobs made
with ``sign_instance_request``; certificates come back as signed bytes that the
caller verifies against its pinned vendor key.

Every failure is a :class:`~mqtt_licensing.core.errors.LicensingError` (HTTP errors
keep the server's code; a network failure is ``server_unreachable``).
"""

from __future__ import annotations

from typing import Any

from ..core.signing import b64, unb64
from .http import JsonApiClient, binary_field


def _certificate(data: Any) -> bytes:
    return binary_field(data, "certificate")


class ActivationClient(JsonApiClient):
    """``async with ActivationClient(vendor_url) as c: await c.activate(key, request)``."""

    async def health(self) -> dict[str, Any]:
        return dict(await self.call("GET", "/v1/health"))

    async def key_documents(self) -> list[bytes]:
        """The vendor's signed key rotations and retirements (unverified here: the site's KeyRing checks each)."""
        data = await self.call("GET", "/v1/keys")
        docs = data.get("documents") if isinstance(data, dict) else None
        return [unb64(d) for d in docs if isinstance(d, str)] if isinstance(docs, list) else []

    async def record_trial(self, request: bytes) -> bytes:
        """The vendor-signed TrialRecord answering a ``trial`` request."""
        return binary_field(await self.call("POST", "/v1/trials", json={"request": b64(request)}), "record")

    async def activate(self, license_key: str, request: bytes) -> dict[str, Any]:
        """-> {"certificate": bytes, "activation_id": str, "license_id": str, "reused": bool}"""
        data = await self.call("POST", "/v1/activations", json={"license_key": license_key, "request": b64(request)})
        certificate = _certificate(data)  # first: it checks the answer is an object at all
        return {**data, "certificate": certificate}

    async def check_in(self, request: bytes) -> bytes:
        return _certificate(await self.call("POST", "/v1/activations/check-in", json={"request": b64(request)}))

    async def heartbeat(self, request: bytes) -> bytes:
        """A signed ``heartbeat`` request -> the vendor's HeartbeatAck (verified by the caller)."""
        return binary_field(await self.call("POST", "/v1/activations/heartbeat", json={"request": b64(request)}), "ack")

    async def revive(self, request: bytes) -> bytes:
        """A signed ``revive`` request -> a certificate for the instance's own released activation."""
        return _certificate(await self.call("POST", "/v1/activations/revive", json={"request": b64(request)}))

    async def deactivate(self, request: bytes) -> None:
        await self.call("POST", "/v1/activations/deactivate", json={"request": b64(request)})

    async def floating_activate(self, license_key: str, request: bytes) -> bytes:
        """The signed FloatingCertificate for a floating server (activation id is inside it)."""
        data = await self.call(
            "POST", "/v1/floating/activations", json={"license_key": license_key, "request": b64(request)}
        )
        return _certificate(data)

    async def floating_check_in(self, request: bytes) -> bytes:
        return _certificate(await self.call("POST", "/v1/floating/check-in", json={"request": b64(request)}))

    async def report_usage(self, request: bytes, records: list[bytes]) -> bytes:
        """Usage records of one instance -> the vendor's signed UsageAck (verified by the caller)."""
        data = await self.call(
            "POST", "/v1/usage", json={"request": b64(request), "records": [b64(r) for r in records]}
        )
        return binary_field(data, "ack")

    async def forward_usage(self, request: bytes) -> bytes:
        """A floating server's signed batch of its brokers' records -> the vendor's ForwardedUsageAck."""
        return binary_field(await self.call("POST", "/v1/floating/usage", json={"request": b64(request)}), "ack")


__all__ = ["ActivationClient"]
