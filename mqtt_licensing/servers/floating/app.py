"""The floating server's HTTP API: thin Starlette routes over :class:`.service.FloatingService`.

Lease API (JSON; binary fields are base64url without padding):

* ``POST /v1/leases``          ``{"request": b64(InstanceRequest kind=lease_acquire)}`` -> ``{"lease": b64}``
* ``POST /v1/leases/renew``    ``{"request": b64(kind=lease_renew)}``   -> ``{"lease": b64}``
* ``POST /v1/leases/release``  ``{"request": b64(kind=lease_release)}`` -> ``{"released": bool}``
* ``GET /v1/health``, ``GET /v1/noop`` (benchmark baseline)
* ``GET /v1/admin/status``     (``Authorization: Bearer <admin.token>``) -> pool and leases

Errors are ``{"error": {"code", "message"}}`` with the status of
:data:`..common.HTTP_STATUS` (``no_seats`` 410, ``not_provisioned`` 503, ...).
Database work is blocking, so it runs in the thread pool, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ...core.errors import ErrorCode, LicensingError
from ...core.signing import b64, unb64
from ..common import EXCEPTION_HANDLERS, error_response, read_json, require_bearer
from .service import FloatingService

log = logging.getLogger(__name__)


async def _request_blob(request: Request) -> bytes:
    data = await read_json(request)
    if "request" not in data:
        raise LicensingError(ErrorCode.BAD_REQUEST, "the body needs a 'request' field (base64 signed request)")
    blob = unb64(data["request"])
    if not blob:
        raise LicensingError(ErrorCode.BAD_REQUEST, "the 'request' field is empty")
    return blob


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    """Unknown route or method: the same JSON error shape as every other failure."""
    assert isinstance(exc, HTTPException)
    code = ErrorCode.NOT_FOUND if exc.status_code == 404 else ErrorCode.BAD_REQUEST
    response = error_response(LicensingError(code, f"{exc.detail}"))
    response.status_code = exc.status_code
    return response


def create_app(
    service: FloatingService, token: str, *, background: Callable[[], Awaitable[None]] | None = None
) -> Starlette:
    """``background``: an optional coroutine run for the server's lifetime (e.g. periodic vendor refresh)."""

    async def acquire(request: Request) -> JSONResponse:
        blob = await _request_blob(request)
        lease = await run_in_threadpool(service.acquire, blob)
        return JSONResponse({"lease": b64(lease)})

    async def renew(request: Request) -> JSONResponse:
        blob = await _request_blob(request)
        lease = await run_in_threadpool(service.renew, blob)
        return JSONResponse({"lease": b64(lease)})

    async def release(request: Request) -> JSONResponse:
        blob = await _request_blob(request)
        released = await run_in_threadpool(service.release, blob)
        return JSONResponse({"released": released})

    async def health(_request: Request) -> JSONResponse:
        return JSONResponse({"ok": True, "service": "floating", "server_fingerprint": service.fingerprint})

    async def noop(_request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    async def admin_status(request: Request) -> JSONResponse:
        require_bearer(request, token)
        return JSONResponse(await run_in_threadpool(service.status))

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        task: asyncio.Task[Any] | None = asyncio.create_task(background()) if background else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    return Starlette(
        routes=[
            Route("/v1/leases", acquire, methods=["POST"]),
            Route("/v1/leases/renew", renew, methods=["POST"]),
            Route("/v1/leases/release", release, methods=["POST"]),
            Route("/v1/health", health, methods=["GET"]),
            Route("/v1/noop", noop, methods=["GET"]),
            Route("/v1/admin/status", admin_status, methods=["GET"]),
        ],
        exception_handlers={**EXCEPTION_HANDLERS, HTTPException: _http_error},
        lifespan=lifespan,
    )
