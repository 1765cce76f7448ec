"""The floating server's HTTP API: thin Starlette routes over :class:`.service.FloatingService`.

Lease API (JSON; binary fields are base64url without padding):

* ``POST /v1/leases``          ``{"request": b64(InstanceRequest kind=lease_acquire)}`` -> ``{"lease": b64}``
* ``POST /v1/leases/renew``    ``{"request": b64(kind=lease_renew)}``   -> ``{"lease": b64}``
* ``POST /v1/leases/release``  ``{"request": b64(kind=lease_release)}`` -> ``{"released": bool}``
* ``POST /v1/usage``          ``{"request": b64(kind=lease_usage), "records": [b64(UsageRecord)]}``
  -> ``{"ack": b64(UsageAck)}`` (issue 16: a lease holder's usage records, see :mod:`.usage`)
* ``GET /v1/health``, ``GET /v1/noop`` (benchmark baseline)
* ``GET /v1/admin/status``     (``Authorization: Bearer <admin.token>``) -> pool and leases

Errors are ``{"error": {"code", "message"}}`` with the status of
:data:`.._http.HTTP_STATUS` (``no_seats`` 410, ``not_provisioned`` 503, ...).
Database work is blocking, so it runs in the thread pool, never on the event loop.
Endpoints find the service and the admin token in ``request.app.state``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from ...core.errors import ErrorCode, LicensingError
from ...core.signing import b64, unb64
from .._http import EXCEPTION_HANDLERS, blob_field, client_address, read_json, require_bearer
from .._observe import ObserveMiddleware
from .metrics import floating_metrics
from .service import FloatingService


def _service(request: Request) -> FloatingService:
    service: FloatingService = request.app.state.service
    return service


async def acquire(request: Request) -> JSONResponse:
    data = await read_json(request)
    blob, token = blob_field(data), data.get("join_token")
    if token is not None and not isinstance(token, str):
        raise LicensingError(ErrorCode.INVALID_FIELD, "field 'join_token' must be a string")
    service, source = _service(request), client_address(request)
    lease = await run_in_threadpool(lambda: service.acquire(blob, source=source, join_token=token))
    return JSONResponse({"lease": b64(lease)})


async def renew(request: Request) -> JSONResponse:
    blob = blob_field(await read_json(request))
    lease = await run_in_threadpool(_service(request).renew, blob)
    return JSONResponse({"lease": b64(lease)})


async def release(request: Request) -> JSONResponse:
    blob = blob_field(await read_json(request))
    released = await run_in_threadpool(_service(request).release, blob)
    return JSONResponse({"released": released})


async def report_usage(request: Request) -> JSONResponse:
    data = await read_json(request)
    blob, records = blob_field(data), data.get("records")
    if not isinstance(records, list) or not all(isinstance(r, str) for r in records):
        raise LicensingError(ErrorCode.MISSING_FIELD, "records must be a list of base64 usage records")
    blobs = [unb64(r) for r in records]
    ack = await run_in_threadpool(_service(request).accept_usage, blob, blobs)
    return JSONResponse({"ack": b64(ack)})


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True, "service": "floating", "server_fingerprint": _service(request).fingerprint})


async def noop(_request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


async def admin_status(request: Request) -> JSONResponse:
    require_bearer(request, request.app.state.admin_token)
    return JSONResponse(await run_in_threadpool(_service(request).status))


ROUTES = [
    Route("/v1/leases", acquire, methods=["POST"]),
    Route("/v1/leases/renew", renew, methods=["POST"]),
    Route("/v1/leases/release", release, methods=["POST"]),
    Route("/v1/usage", report_usage, methods=["POST"]),
    Route("/v1/health", health, methods=["GET"]),
    Route("/v1/noop", noop, methods=["GET"]),
    Route("/v1/admin/status", admin_status, methods=["GET"]),
]


def create_app(
    service: FloatingService,
    admin_token: str,
    *,
    background: Callable[[], Coroutine[Any, Any, None]] | None = None,
    routes: Sequence[BaseRoute] = (),
) -> Starlette:
    """``background``: an optional coroutine run for the server's lifetime (e.g. periodic vendor
    refresh); ``routes``: extra routes served beside the lease API."""

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

    metrics = floating_metrics(service)
    app = Starlette(
        routes=[*ROUTES, metrics.route(), *routes],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
        middleware=[Middleware(ObserveMiddleware, metrics=metrics)],
    )
    app.state.service = service
    app.state.admin_token = admin_token
    return app


__all__ = ["ROUTES", "create_app"]
