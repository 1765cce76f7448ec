"""HTTP clients for the vendor activation server.

* :class:`ActivationClient` - the public API used by agents and floating servers.
  Requests are :class:`~mqtt_licensing.core.documents.InstanceRequest` blobs made
  with ``sign_instance_request``; certificates come back as signed bytes that the
  caller verifies against its pinned vendor key.
* :class:`VendorAdminClient` - the admin API (bearer token).

Every failure is a :class:`~mqtt_licensing.core.errors.LicensingError` (HTTP errors
keep the server's code; a network failure is ``server_unreachable``).
"""

from __future__ import annotations

from typing import Any

from ..core.signing import b64
from .http import JsonApiClient, binary_field


def _certificate(data: Any) -> bytes:
    return binary_field(data, "certificate")


class ActivationClient(JsonApiClient):
    """``async with ActivationClient(vendor_url) as c: await c.activate(key, request)``."""

    async def health(self) -> dict[str, Any]:
        return await self.call("GET", "/v1/health")

    async def activate(self, license_key: str, request: bytes) -> dict[str, Any]:
        """-> {"certificate": bytes, "activation_id": str, "license_id": str, "reused": bool}"""
        data = await self.call("POST", "/v1/activations", json={"license_key": license_key, "request": b64(request)})
        certificate = _certificate(data)  # first: it checks the answer is an object at all
        return {**data, "certificate": certificate}

    async def check_in(self, request: bytes) -> bytes:
        return _certificate(await self.call("POST", "/v1/activations/check-in", json={"request": b64(request)}))

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


class VendorAdminClient(JsonApiClient):
    """The admin API: ``VendorAdminClient(url, token=token)``."""

    async def issue(
        self,
        *,
        features: list[str],
        model: str = "online",
        max_activations: int = 1,
        seats: int | None = None,
        expires_at: int | None = None,
        support_until: int | None = None,
        max_connections: int | None = None,
    ) -> dict[str, Any]:
        """-> {"license": {...}, "key": "MQL1-..."}"""
        body = {
            "features": list(features),
            "model": model,
            "max_activations": max_activations,
            "seats": seats,
            "expires_at": expires_at,
            "support_until": support_until,
            "max_connections": max_connections,
        }
        return await self.call("POST", "/v1/admin/licenses", json=body)

    async def licenses(self) -> list[dict[str, Any]]:
        return (await self.call("GET", "/v1/admin/licenses"))["licenses"]

    async def license(self, license_id: str) -> dict[str, Any]:
        return (await self.call("GET", f"/v1/admin/licenses/{license_id}"))["license"]

    async def update(self, license_id: str, **changes: Any) -> dict[str, Any]:
        """Fields: add_features, remove_features, expires_at, support_until, max_activations,
        max_connections, seats, status. A field given as None is cleared (where allowed)."""
        return (await self.call("PATCH", f"/v1/admin/licenses/{license_id}", json=changes))["license"]

    async def suspend(self, license_id: str) -> dict[str, Any]:
        return await self.update(license_id, status="suspended")

    async def reinstate(self, license_id: str) -> dict[str, Any]:
        return await self.update(license_id, status="active")

    async def revoke(self, license_id: str) -> dict[str, Any]:
        return await self.update(license_id, status="revoked")

    async def activations(self, license_id: str | None = None, *, include_freed: bool = False) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"include_freed": "true" if include_freed else "false"}
        if license_id is not None:
            params["license_id"] = license_id
        return (await self.call("GET", "/v1/admin/activations", params=params))["activations"]

    async def free(self, activation_id: str) -> dict[str, Any]:
        return (await self.call("DELETE", f"/v1/admin/activations/{activation_id}"))["activation"]

    async def offline_activate(self, request_code: str) -> dict[str, Any]:
        """-> {"usage_license": armoured text, "activation_id", "license_id", "reused"}"""
        return await self.call("POST", "/v1/admin/offline/activations", json={"request_code": request_code})

    async def offline_deactivate(self, code: str) -> dict[str, Any]:
        """-> {"freed": bool, "already_free": bool, "activation_id", "license_id"}"""
        return await self.call("POST", "/v1/admin/offline/deactivations", json={"code": code})

    async def floating_issue(self, request_code: str) -> dict[str, Any]:
        """-> {"certificate": armoured text, "activation_id", "license_id", "reused"}"""
        return await self.call("POST", "/v1/admin/floating/certificates", json={"request_code": request_code})


__all__ = ["ActivationClient", "VendorAdminClient"]
