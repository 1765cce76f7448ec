"""HTTP client of the activation server's admin API (bearer token): licenses, activations,
offline and floating codes. Every failure is a :class:`~mqtt_licensing.core.errors.LicensingError`."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, cast

from ..core.listing import MAX_LIMIT, STATUSES, ActivationFilter
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
        features: list[str] | None = None,
        template: str | None = None,
        model: str | None = None,
        max_activations: int | None = None,
        seats: int | None = None,
        expires_at: int | None = None,
        support_until: int | None = None,
        max_connections: int | None = None,
        overage: float | None = None,
        **terms: Any,
    ) -> dict[str, Any]:
        """-> {"license": {...}, "key": "MQL1-..."}. With ``template`` the terms given override the
        template's; a term left None is the template's (or the server's default)."""
        given = {
            "features": list(features) if features is not None else None,
            "template": template,
            "model": model,
            "max_activations": max_activations,
            "seats": seats,
            "expires_at": expires_at,
            "support_until": support_until,
            "max_connections": max_connections,
            "overage": overage,
            **terms,
        }
        body = {name: value for name, value in given.items() if value is not None}
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
        """Every activation (of a license), live ones only unless ``include_freed``: all pages."""
        statuses = STATUSES if include_freed else ("active",)
        wanted = ActivationFilter(license_id=license_id, statuses=statuses, limit=MAX_LIMIT)
        found: list[dict[str, Any]] = []
        while True:
            page = await self.find_activations(wanted)
            found += _objects(page["activations"])
            if page.get("next") is None:
                return found
            wanted = replace(wanted, after=page["next"])

    async def find_activations(self, wanted: ActivationFilter) -> dict[str, Any]:
        """One page: ``{"activations", "total", "shown", "limit", "next", "filter", "now"}``;
        ``replace(wanted, after=page["next"])`` asks for the next while ``next`` is not None."""
        return _object(await self.call("GET", "/v1/admin/activations", params=wanted.to_query()))

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

    # -- the product line: features and templates --------------------------------------
    async def features(self) -> list[dict[str, Any]]:
        """The catalogue, retired features included (``retired_at`` set)."""
        return _objects((await self.call("GET", "/v1/admin/features"))["features"])

    async def add_feature(self, name: str, *, title: str, kind: str, **definition: Any) -> dict[str, Any]:
        """Definition: gates ("all" | "class" | "none"), unit (metered), requires [names]."""
        body = {"name": name, "title": title, "kind": kind, **definition}
        return _object((await self.call("POST", "/v1/admin/features", json=body))["feature"])

    async def update_feature(self, name: str, **changes: Any) -> dict[str, Any]:
        return _object((await self.call("PATCH", f"/v1/admin/features/{name}", json=changes))["feature"])

    async def retire_feature(self, name: str) -> dict[str, Any]:
        return _object((await self.call("POST", f"/v1/admin/features/{name}/retire"))["feature"])

    async def templates(self) -> list[dict[str, Any]]:
        return _objects((await self.call("GET", "/v1/admin/templates"))["templates"])

    async def add_template(self, name: str, *, replace: bool = False, **terms: Any) -> dict[str, Any]:
        """Terms: features, model, max_activations, seats, max_connections, overage, valid_days,
        support_years, clone_policy, metering."""
        body = {"name": name, "replace": replace, **terms}
        return _object((await self.call("POST", "/v1/admin/templates", json=body))["template"])

    async def remove_template(self, name: str) -> None:
        await self.call("DELETE", f"/v1/admin/templates/{name}")


__all__ = ["VendorAdminClient"]
