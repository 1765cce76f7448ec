"""Provisioning a floating server against the vendor's activation server, online, through
:class:`~mqtt_licensing.clients.activation.ActivationClient`.

The offline path (codes copied by hand) needs no network and lives in the CLI on
top of :meth:`.service.FloatingService.offline_request` / ``install_certificate``.

``options`` (:class:`~mqtt_licensing.clients.http.HttpOptions`) say whom to trust for HTTPS (the
system roots or a pinned CA file) and which proxy to go through.
"""

from __future__ import annotations

import asyncio
import logging

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ...clients.activation import ActivationClient
from ...clients.http import HttpOptions
from ...core.documents import FloatingCertificate, Verdict
from ...core.errors import ErrorCode, LicensingError
from ...core.keys import normalize_key
from .._duties import every
from .._requests import peek_request
from ..defaults import FLOATING_REFRESH_INTERVAL
from .service import FloatingService

log = logging.getLogger(__name__)

DEFAULT_REFRESH_INTERVAL = FLOATING_REFRESH_INTERVAL
VENDOR_HTTP = HttpOptions(timeout=30.0)


async def _vendor_url(service: FloatingService, vendor_url: str | None) -> str:
    url = vendor_url or await asyncio.to_thread(service.vendor_url)
    if not url:
        raise LicensingError(ErrorCode.MISSING_FIELD, "no vendor URL known: pass --vendor URL")
    return url


async def activate_online(
    service: FloatingService,
    license_key: str,
    vendor_url: str,
    *,
    vendor_public_key: Ed25519PublicKey | None = None,
    options: HttpOptions | None = None,
) -> FloatingCertificate:
    """Activate against the vendor; the certificate must verify against ``vendor_public_key``
    (then pinned) or the key already pinned."""
    key = normalize_key(license_key)  # a typo is caught before any network call
    request, nonce = service.activation_request(key)
    async with ActivationClient(vendor_url, options=options or VENDOR_HTTP) as vendor:
        certificate = await vendor.floating_activate(key, request)
    return await asyncio.to_thread(
        lambda: service.install_certificate(
            certificate, nonce=nonce, vendor_url=vendor_url.rstrip("/"), vendor_public_key=vendor_public_key
        )
    )


async def refresh_online(
    service: FloatingService, vendor_url: str | None = None, *, options: HttpOptions | None = None
) -> FloatingCertificate:
    """Check in with the vendor and install the certificate it answers (new seats, features, validity)."""
    url = await _vendor_url(service, vendor_url)
    request, nonce = await asyncio.to_thread(service.check_in_request)
    try:
        async with ActivationClient(url, options=options or VENDOR_HTTP) as vendor:
            certificate = await vendor.floating_check_in(request)
    except LicensingError as exc:
        if _signed_verdict(service, exc, request) in STOPPING_VERDICTS:
            await asyncio.to_thread(service.forget_pool)  # no new lease, no renewal: leases lapse within their ttl
            log.error("the vendor refused this floating license (%s): the pool stopped leasing", exc.message)
        raise
    return await asyncio.to_thread(
        lambda: service.install_certificate(certificate, nonce=nonce, vendor_url=url.rstrip("/"))
    )


# A revoked or expired license, an activation the vendor freed, a copied data folder under policy
# suspend: final. (``suspended`` is not: the certificate's lifetime ends leasing if it lasts.)
STOPPING_VERDICTS = (ErrorCode.REVOKED, ErrorCode.EXPIRED, ErrorCode.ACTIVATION_NOT_FOUND, ErrorCode.CLONED)


def _signed_verdict(service: FloatingService, exc: LicensingError, request: bytes) -> ErrorCode | None:
    """The refusal's code if the vendor signed it for this server and this very check-in; anyone
    on the path can send an HTTP 403, so an unsigned one is a failed refresh (retried)."""
    if not exc.code.is_verdict or exc.evidence is None:
        return None
    vendor_key = service.vendor_keys()  # a verdict the rotated key signed verifies too
    if vendor_key is None:
        return None
    try:
        verdict = Verdict.open(exc.evidence, vendor_key)
    except LicensingError as problem:
        log.warning("ignoring an unverified %s from the vendor (%s)", exc.code, problem.message)
        return None
    asked = peek_request(request)
    if (verdict.verdict, verdict.activation_id, verdict.instance_fingerprint, verdict.request_nonce) != (
        str(exc.code),
        asked.activation_id,
        service.fingerprint,
        asked.nonce,
    ):
        log.warning("ignoring a %s verdict that answers another request", exc.code)
        return None
    return exc.code


async def deactivate_online(
    service: FloatingService, vendor_url: str | None = None, *, options: HttpOptions | None = None
) -> FloatingCertificate | None:
    """Return the activation to the vendor, then stop leasing (only once the vendor agreed)."""
    from .usage import forward_online

    url = await _vendor_url(service, vendor_url)
    try:  # the brokers' usage held here still bills this activation: hand it over first
        await forward_online(service, url, options=options or VENDOR_HTTP)
    except LicensingError as exc:
        log.warning("usage records could not be forwarded before the deactivation (kept): %s", exc)
    request = await asyncio.to_thread(lambda: service.deactivation_request(offline=False))
    async with ActivationClient(url, options=options or VENDOR_HTTP) as vendor:
        try:
            await vendor.deactivate(request)
        except LicensingError as exc:
            if not exc.code.means_already_free:
                raise
    return await asyncio.to_thread(service.forget_pool)


async def refresh_held(service: FloatingService, options: HttpOptions | None = None) -> None:
    """One refresh pass: an online-provisioned pool checks in; an offline one has nothing to do."""
    if not await asyncio.to_thread(service.vendor_url):
        return
    cert = await refresh_online(service, options=options)
    log.info("floating certificate refreshed: %d seats, features %s", cert.seats, ",".join(cert.features))


async def refresh_periodically(
    service: FloatingService, interval: float = DEFAULT_REFRESH_INTERVAL, options: HttpOptions | None = None
) -> None:
    """Background task for ``floating serve``: keep an online-provisioned pool's certificate fresh."""
    await every("floating certificate refresh", interval, lambda: refresh_held(service, options))
