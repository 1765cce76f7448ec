"""JsonApiClient: how answers that are not what a client expects become typed errors."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from mqtt_licensing.clients.activation import ActivationClient
from mqtt_licensing.clients.floating import FloatingClient
from mqtt_licensing.core.errors import ErrorCode, LicensingError
from mqtt_licensing.servers._run import free_port


async def _html(_request: Request) -> Response:
    return PlainTextResponse("<html>502 Bad Gateway</html>", status_code=502)


async def _no_certificate(_request: Request) -> Response:
    return JSONResponse({"ok": True})


async def _not_base64(_request: Request) -> Response:
    return JSONResponse({"lease": "not base64!"})


async def _unknown_code(_request: Request) -> Response:
    return JSONResponse({"error": {"code": "from_the_future", "message": "?"}}, status_code=400)


async def _bad_evidence(_request: Request) -> Response:
    return JSONResponse({"error": {"code": "revoked", "message": "gone"}, "evidence": "A"}, status_code=403)


# A stand-in for whatever may answer at a URL (a proxy, a wrong server): not one of ours.
STRANGER = Starlette(
    routes=[
        Route("/v1/activations/check-in", _html, methods=["POST"]),
        Route("/v1/floating/check-in", _no_certificate, methods=["POST"]),
        Route("/v1/leases", _not_base64, methods=["POST"]),
        Route("/v1/leases/renew", _unknown_code, methods=["POST"]),
        Route("/v1/activations/deactivate", _bad_evidence, methods=["POST"]),
    ]
)


def _transport() -> httpx.ASGITransport:
    return httpx.ASGITransport(app=STRANGER)


async def _code(call: object) -> LicensingError:
    with pytest.raises(LicensingError) as info:
        await call  # type: ignore[misc]
    return info.value


async def test_answers_that_are_not_ours_become_bad_response() -> None:
    async with ActivationClient("http://stranger.test", transport=_transport()) as c:
        assert (await _code(c.check_in(b"x"))).code == ErrorCode.BAD_RESPONSE
        assert (await _code(c.floating_check_in(b"x"))).code == ErrorCode.BAD_RESPONSE
        revoked = await _code(c.deactivate(b"x"))
        assert revoked.code == ErrorCode.REVOKED and revoked.evidence is None  # unreadable evidence is none
    async with FloatingClient("http://stranger.test", transport=_transport()) as f:
        assert (await _code(f.acquire(b"x"))).code == ErrorCode.BAD_RESPONSE
        assert (await _code(f.renew(b"x"))).code == ErrorCode.BAD_RESPONSE


async def test_nobody_listening_is_server_unreachable() -> None:
    async with ActivationClient(f"http://127.0.0.1:{free_port()}", timeout=5) as c:
        assert (await _code(c.health())).code == ErrorCode.SERVER_UNREACHABLE
