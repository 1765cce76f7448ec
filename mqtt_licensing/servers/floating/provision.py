"""Provisioning a floating server against the vendor's activation server, online.

The offline path (codes copied by hand) needs no network and lives in the CLI on
top of :meth:`.service.FloatingService.offline_request` / ``install_certificate``.

Vendor routes used:

* ``POST /v1/floating/activations`` ``{"license_key", "request": b64(kind=floating_activate)}``
  -> ``{"certificate": b64, "activation_id", "license_id"}``
* ``POST /v1/floating/check-in`` ``{"request": b64(kind=floating_check_in)}`` -> ``{"certificate": b64}``
* ``POST /v1/activations/deactivate`` ``{"request": b64(kind=deactivate)}``
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ...clients.http import JsonApiClient
from ...core.documents import FloatingCertificate
from ...core.errors import ErrorCode, LicensingError
from ...core.keys import normalize_key
from ...core.signing import b64, unb64
from .service import FloatingService

log = logging.getLogger(__name__)

DEFAULT_REFRESH_INTERVAL = 24 * 3600


def _certificate(data: Any) -> bytes:
    if not isinstance(data, dict) or not isinstance(data.get("certificate"), str):
        raise LicensingError(ErrorCode.BAD_RESPONSE, "the vendor's answer has no certificate")
    return unb64(data["certificate"])


async def activate_online(
    service: FloatingService,
    license_key: str,
    vendor_url: str,
    *,
    vendor_public_key: Ed25519PublicKey | None = None,
    timeout: float = 30.0,
) -> FloatingCertificate:
    """Activate against the vendor; the certificate must verify against ``vendor_public_key``
    (then pinned) or the key already pinned."""
    key = normalize_key(license_key)  # a typo is caught before any network call
    request, nonce = service.activation_request(key)
    async with JsonApiClient(vendor_url, timeout=timeout) as vendor:
        data = await vendor.call("POST", "/v1/floating/activations", json={"license_key": key, "request": b64(request)})
    return service.install_certificate(
        _certificate(data), nonce=nonce, vendor_url=vendor_url.rstrip("/"), vendor_public_key=vendor_public_key
    )


async def refresh_online(
    service: FloatingService, vendor_url: str | None = None, *, timeout: float = 30.0
) -> FloatingCertificate:
    """Check in with the vendor and install the certificate it answers (new seats, features, validity)."""
    url = vendor_url or service.vendor_url
    if not url:
        raise LicensingError(ErrorCode.MISSING_FIELD, "no vendor URL known: pass --vendor URL")
    request, nonce = service.check_in_request()
    async with JsonApiClient(url, timeout=timeout) as vendor:
        data = await vendor.call("POST", "/v1/floating/check-in", json={"request": b64(request)})
    return service.install_certificate(_certificate(data), nonce=nonce, vendor_url=url.rstrip("/"))


async def deactivate_online(
    service: FloatingService, vendor_url: str | None = None, *, timeout: float = 30.0
) -> FloatingCertificate | None:
    """Return the activation to the vendor, then stop leasing (only once the vendor agreed)."""
    url = vendor_url or service.vendor_url
    if not url:
        raise LicensingError(ErrorCode.MISSING_FIELD, "no vendor URL known: pass --vendor URL")
    request = service.deactivation_request(offline=False)
    async with JsonApiClient(url, timeout=timeout) as vendor:
        try:
            await vendor.call("POST", "/v1/activations/deactivate", json={"request": b64(request)})
        except LicensingError as exc:
            if exc.code not in (ErrorCode.ALREADY_FREE, ErrorCode.ACTIVATION_NOT_FOUND):
                raise
    return service.forget_pool()


async def refresh_periodically(service: FloatingService, interval: float = DEFAULT_REFRESH_INTERVAL) -> None:
    """Background task for ``floating serve``: keep an online-provisioned pool's certificate fresh."""
    while True:
        await asyncio.sleep(interval)
        if not service.vendor_url:
            continue
        try:
            cert = await refresh_online(service)  # a few ms of SQLite once a day: fine on the loop
            log.info("floating certificate refreshed: %d seats, features %s", cert.seats, ",".join(cert.features))
        except LicensingError as exc:
            log.warning("floating certificate refresh failed: %s", exc)
