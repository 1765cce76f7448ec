"""HTTP client of the activation server's admin API (bearer token): licenses, activations,
offline and floating codes. Every failure is a :class:`~mqtt_licensing.core.errors.LicensingError`."""

from __future__ import annotations

from typing import Any, cast

from .http import JsonApiClient


# The admin API answers JSON objects; these name what a reply holds (the JSON decoder returns Any).
def _object(data: Any) -> dict[str, Any]:
    return cast("dict[str, Any]", data)


def _objects(data: Any) -> list[dict[str, Any]]:
    return cast("list[dict[str, Any]]", data)


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
        overage: float = 0.0,
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
            "overage": overage,
        }
        return _object(await self.call("POST", "/v1/admin/licenses", json=body))

    async def licenses(self) -> list[dict[str, Any]]:
        return _objects((await self.call("GET", "/v1/admin/licenses"))["licenses"])

    async def license(self, license_id: str) -> dict[str, Any]:
        return _object((await self.call("GET", f"/v1/admin/licenses/{license_id}"))["license"])

    async def update(self, license_id: str, **changes: Any) -> dict[str, Any]:
        """Fields: add_features, remove_features, expires_at, support_until, max_activations,
        max_connections, overage, seats, status. A field given as None is cleared (where allowed)."""
        return _object((await self.call("PATCH", f"/v1/admin/licenses/{license_id}", json=changes))["license"])

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
        return _objects((await self.call("GET", "/v1/admin/activations", params=params))["activations"])

    async def free(self, activation_id: str) -> dict[str, Any]:
        return _object((await self.call("DELETE", f"/v1/admin/activations/{activation_id}"))["activation"])

    async def offline_activate(self, request_code: str) -> dict[str, Any]:
        """-> {"usage_license": armoured text, "activation_id", "license_id", "reused"}"""
        return _object(await self.call("POST", "/v1/admin/offline/activations", json={"request_code": request_code}))

    async def offline_deactivate(self, code: str) -> dict[str, Any]:
        """-> {"freed": bool, "already_free": bool, "activation_id", "license_id"}"""
        return _object(await self.call("POST", "/v1/admin/offline/deactivations", json={"code": code}))

    async def floating_issue(self, request_code: str) -> dict[str, Any]:
        """-> {"certificate": armoured text, "activation_id", "license_id", "reused"}"""
        return _object(await self.call("POST", "/v1/admin/floating/certificates", json={"request_code": request_code}))

    async def usage(self, license_id: str, *, first: str | None = None, last: str | None = None) -> dict[str, Any]:
        """Usage per day (UTC): {"license_id", "from", "to", "days": [{day, messages, bytes, client_seconds,
        client_hours, records}], "missing": {instance: [sequence, ...]}}"""
        params = {k: v for k, v in (("from", first), ("to", last)) if v}
        return _object((await self.call("GET", f"/v1/admin/licenses/{license_id}/usage", params=params))["usage"])


__all__ = ["VendorAdminClient"]
