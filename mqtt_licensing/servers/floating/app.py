"""The floating server's HTTP API: thin Starlette routes over :class:`.service.FloatingService`.

Lease API (JSON; binary fields are base64url without padding):

* ``POST /v1/leases``          ``{"request": b64(InstanceRequest kind=lease_acquire)}`` -> ``{"lease": b64}``
* ``POST /v1/leases/renew``    ``{"request": b64(kind=lease_renew)}``   -> ``{"lease": b64}``
* ``POST /v1/leases/release``  ``{"request": b64(kind=lease_release)}`` -> ``{"released": bool}``
* ``POST /v1/usage``          ``{"request": b64(kind=lease_usage), "records": [b64(UsageRecord)]}``
  -> ``{"ack": b64(UsageAck)}`` (a lease holder's usage records, see :mod:`.usage`)
* ``GET /v1/health``, ``GET /v1/noop``, ``GET /metrics`` (the same on both servers: :mod:`.._app`)
* ``GET /v1/admin/status``     (``Authorization: Bearer <admin.token>``) -> pool and leases;
  ``?label=TEXT&silent_for=2h`` shows only the leases that match (``filter`` says which)

Errors are ``{"error": {"code", "message"}}`` with the status of
:data:`.._http.HTTP_STATUS` (``no_seats`` 410, ``not_provisioned`` 503, ...).
The service is blocking (database, signing), so routes run it in the thread pool (:mod:`.._db`);
lease requests (acquire, renew, release: the fleet's steady traffic) run on the service's batch
thread instead
(:mod:`.._jobs`: one thread, one transaction and one wake-up of the loop per batch).
Endpoints find the service and the admin token in ``request.app.state``.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from ...core.errors import ErrorCode, LicensingError
from ...core.listing import LeaseFilter
from ...core.signing import b64
from .._app import build_app
from .._duties import Duty
from .._http import blob_field, blobs_field, client_address, read_json, require_bearer
from .._proxies import Network
from ..webhooks import Deliverer, Webhooks
from ..webhooks.delivery import SEND_TIMEOUT
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
    lease = await service.batcher.run(lambda: service.leases.acquire_job(blob, source=source, join_token=token))
    return JSONResponse({"lease": b64(lease)})


async def renew(request: Request) -> JSONResponse:
    blob, service = blob_field(await read_json(request)), _service(request)
    lease = await service.batcher.run(lambda: service.leases.renew_job(blob))
    return JSONResponse({"lease": b64(lease)})


async def release(request: Request) -> JSONResponse:
    blob, service = blob_field(await read_json(request)), _service(request)
    released = await service.batcher.run(lambda: service.leases.release_job(blob))
    return JSONResponse({"released": released})


async def report_usage(request: Request) -> JSONResponse:
    data = await read_json(request)
    blob, blobs = blob_field(data), blobs_field(data)
    ack = await run_in_threadpool(_service(request).accept_usage, blob, blobs)
    return JSONResponse({"ack": b64(ack)})


async def admin_status(request: Request) -> JSONResponse:
    """The pool and its leases; ``label`` and ``silent_for`` pick leases (checked here: typed errors)."""
    require_bearer(request, request.app.state.admin_token)
    wanted = LeaseFilter.from_query(request.query_params)
    return JSONResponse(await run_in_threadpool(_service(request).status, wanted))


ROUTES = [
    Route("/v1/leases", acquire, methods=["POST"]),
    Route("/v1/leases/renew", renew, methods=["POST"]),
    Route("/v1/leases/release", release, methods=["POST"]),
    Route("/v1/usage", report_usage, methods=["POST"]),
    Route("/v1/admin/status", admin_status, methods=["GET"]),
]


def create_app(
    service: FloatingService,
    admin_token: str,
    *,
    routes: Sequence[BaseRoute] = (),
    trusted_proxies: Sequence[Network] = (),
    background: Sequence[Duty] = (),
    webhook_timeout: float = SEND_TIMEOUT,
    duties: bool = True,
) -> Starlette:
    """The app over ``service`` (:func:`.._app.build_app`: health, noop, metrics, errors);
    ``routes`` are served beside the lease API, ``background`` runs while the server does (the
    vendor duties of :func:`.usage.vendor_duties`).

    ``trusted_proxies``: the only peers whose ``X-Forwarded-For`` names the source that the
    new-identity limit and the network access rules see.
    ``duties=False``: no background duties at all (a worker process but the first, :mod:`.._workers`)."""
    return build_app(
        "floating",
        service,
        service.signing_key,
        admin_token,
        routes=[*ROUTES, *routes],
        metrics=floating_metrics(service),
        trusted_proxies=trusted_proxies,
        # The webhook outbox is sent from every server process: a row is claimed before it is sent,
        # so replicas share the work and none sends a row twice at once.
        background=[*background, Deliverer(Webhooks(service.store.engine), send_timeout=webhook_timeout).run]
        if duties
        else [],
    )


__all__ = ["ROUTES", "create_app"]
