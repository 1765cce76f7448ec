"""The activation server's HTTP API: thin Starlette routes over :class:`ActivationService`.

Binary fields travel as base64url without padding. Errors are
``{"error": {"code", "message"}}`` with the status from :data:`.._http.HTTP_STATUS`.
Every ``/v1/admin/...`` route checks the bearer token first. The service is
blocking (database, signing), so routes run it in the thread pool (the routes fleets call all
the time through :func:`.._threads.in_thread`, the cheaper hand-off; check-ins and heartbeats on SQLite as jobs
of the service's :class:`.._jobs.JobBatcher`, one thread for all of them). Endpoints find the
service and the admin token in ``request.app.state``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from ...core.errors import ErrorCode, LicensingError
from ...core.listing import ActivationFilter
from ...core.signing import b64
from .._app import build_app
from .._duties import Duty, every
from .._http import (
    blob_field,
    blobs_field,
    client_address,
    read_json,
    require_bearer,
    required,
    str_field,
)
from .._observe import note
from .._proxies import Network
from .._threads import in_thread
from ..webhooks import Deliverer, Webhooks
from ..webhooks.delivery import SEND_TIMEOUT
from .catalogue_routes import ENDPOINTS as CATALOGUE_ENDPOINTS
from .licenses import ISSUE_FIELDS
from .metrics import activation_metrics
from .service import ActivationService

Endpoint = Callable[[Request], Awaitable[JSONResponse]]


def _service(request: Request) -> ActivationService:
    service: ActivationService = request.app.state.service
    return service


def admin(endpoint: Endpoint) -> Endpoint:
    """The route needs ``Authorization: Bearer <admin token>``."""

    async def checked(request: Request) -> JSONResponse:
        require_bearer(request, request.app.state.admin_token)
        return await endpoint(request)

    return checked


# -- public --------------------------------------------------------------------------------


async def activate(request: Request) -> JSONResponse:
    data = await read_json(request)
    key, blob = required(data, "license_key"), blob_field(data)
    result = await in_thread(_service(request).activate, key, blob, client_address(request))
    note(request, license_id=result.license_id, activation_id=result.activation_id)
    return JSONResponse(result.to_json(), status_code=200 if result.reused else 201)


async def check_in(request: Request) -> JSONResponse:
    blob = blob_field(await read_json(request))
    service = _service(request)
    if service.batcher is not None:  # batched on one thread (servers/_jobs.py), on SQLite
        cert = await service.batcher.run(lambda: service.check_in_job(blob))
    else:
        cert = await in_thread(service.check_in, blob)
    return JSONResponse({"certificate": b64(cert)})


async def revive(request: Request) -> JSONResponse:
    blob = blob_field(await read_json(request))
    cert = await in_thread(_service(request).revive, blob)
    return JSONResponse({"certificate": b64(cert)})


async def heartbeat(request: Request) -> JSONResponse:
    blob = blob_field(await read_json(request))
    service = _service(request)
    if service.batcher is not None:  # batched on one thread (servers/_jobs.py), on SQLite
        ack = await service.batcher.run(lambda: service.heartbeat_job(blob))
    else:
        ack = await in_thread(service.heartbeat, blob)
    return JSONResponse({"ack": b64(ack)})


async def key_documents(request: Request) -> JSONResponse:
    """Public: the vendor's key rotations and retirements, each signed; sites verify them themselves."""
    docs = await run_in_threadpool(_service(request).key_documents)
    return JSONResponse({"documents": [b64(d) for d in docs]})


async def record_trial(request: Request) -> JSONResponse:
    blob = blob_field(await read_json(request))
    record = await run_in_threadpool(_service(request).record_trial, blob, client_address(request))
    return JSONResponse({"record": b64(record)})


async def deactivate(request: Request) -> JSONResponse:
    blob = blob_field(await read_json(request))
    await run_in_threadpool(_service(request).deactivate, blob)
    return JSONResponse({"freed": True})


async def floating_activate(request: Request) -> JSONResponse:
    data = await read_json(request)
    key, blob = required(data, "license_key"), blob_field(data)
    result = await run_in_threadpool(_service(request).floating_activate, key, blob, client_address(request))
    return JSONResponse(result.to_json(), status_code=200 if result.reused else 201)


async def floating_check_in(request: Request) -> JSONResponse:
    blob = blob_field(await read_json(request))
    cert = await in_thread(_service(request).floating_check_in, blob)
    return JSONResponse({"certificate": b64(cert)})


async def report_usage(request: Request) -> JSONResponse:
    data = await read_json(request)
    blob, blobs = blob_field(data), blobs_field(data)
    ack = await run_in_threadpool(_service(request).report_usage, blob, blobs)
    return JSONResponse({"ack": b64(ack)})


async def forward_usage(request: Request) -> JSONResponse:
    blob = blob_field(await read_json(request))
    return JSONResponse({"ack": b64(await run_in_threadpool(_service(request).forward_usage, blob))})


# -- admin ----------------------------------------------------------------------------------


async def create_license(request: Request) -> JSONResponse:
    data = await read_json(request)
    unknown = sorted(set(data) - set(ISSUE_FIELDS))
    if unknown:
        raise LicensingError(
            ErrorCode.BAD_REQUEST, f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(ISSUE_FIELDS)}"
        )
    if data.get("template") is None:
        required(data, "features")
    terms = {k: data[k] for k in ISSUE_FIELDS if k in data}
    service = _service(request)
    lic, key = await run_in_threadpool(lambda: service.issue_license(**terms))
    return JSONResponse({"license": lic, "key": key}, status_code=201)


async def list_licenses(request: Request) -> JSONResponse:
    return JSONResponse({"licenses": await run_in_threadpool(_service(request).list_licenses)})


async def get_license(request: Request) -> JSONResponse:
    lic = await run_in_threadpool(_service(request).get_license, request.path_params["license_id"])
    return JSONResponse({"license": lic})


async def patch_license(request: Request) -> JSONResponse:
    data = await read_json(request)
    lic = await run_in_threadpool(_service(request).update_license, request.path_params["license_id"], data)
    return JSONResponse({"license": lic})


async def list_activations(request: Request) -> JSONResponse:
    """Filtered and paged (core/listing.py): ``license_id``, ``label``, ``silent_for``, ``status``,
    ``limit``, ``after``; each value checked here, before the database is asked."""
    wanted = ActivationFilter.from_query(request.query_params)
    return JSONResponse(await run_in_threadpool(_service(request).find_activations, wanted))


async def free_activation(request: Request) -> JSONResponse:
    act = await run_in_threadpool(_service(request).free_activation, request.path_params["activation_id"])
    return JSONResponse({"freed": True, "activation": act})


def _code(data: dict[str, Any]) -> str:
    """The armoured code of an admin offline body: ``{"code": ...}`` on all three routes. The names
    the routes took before (``request_code`` for the request codes) are still read."""
    return str_field(data, "code" if "code" in data or "request_code" not in data else "request_code")


async def offline_activate(request: Request) -> JSONResponse:
    code = _code(await read_json(request))
    return JSONResponse((await run_in_threadpool(_service(request).offline_activate, code)).to_json())


async def offline_deactivate(request: Request) -> JSONResponse:
    code = _code(await read_json(request))
    return JSONResponse((await run_in_threadpool(_service(request).offline_deactivate, code)).to_json())


async def floating_certificate(request: Request) -> JSONResponse:
    code = _code(await read_json(request))
    return JSONResponse((await run_in_threadpool(_service(request).floating_issue, code)).to_json())


async def license_usage(request: Request) -> JSONResponse:
    params, service = request.query_params, _service(request)
    license_id = request.path_params["license_id"]
    usage = await run_in_threadpool(lambda: service.usage_by_day(license_id, params.get("from"), params.get("to")))
    return JSONResponse({"usage": usage})


ROUTES = [
    Route("/v1/activations", activate, methods=["POST"]),
    Route("/v1/activations/check-in", check_in, methods=["POST"]),
    Route("/v1/activations/heartbeat", heartbeat, methods=["POST"]),
    Route("/v1/activations/revive", revive, methods=["POST"]),
    Route("/v1/activations/deactivate", deactivate, methods=["POST"]),
    Route("/v1/trials", record_trial, methods=["POST"]),
    Route("/v1/keys", key_documents, methods=["GET"]),
    Route("/v1/floating/activations", floating_activate, methods=["POST"]),
    Route("/v1/floating/check-in", floating_check_in, methods=["POST"]),
    Route("/v1/usage", report_usage, methods=["POST"]),
    Route("/v1/floating/usage", forward_usage, methods=["POST"]),
    Route("/v1/admin/licenses", admin(create_license), methods=["POST"]),
    Route("/v1/admin/licenses", admin(list_licenses), methods=["GET"]),
    Route("/v1/admin/licenses/{license_id}", admin(get_license), methods=["GET"]),
    Route("/v1/admin/licenses/{license_id}", admin(patch_license), methods=["PATCH"]),
    Route("/v1/admin/licenses/{license_id}/usage", admin(license_usage), methods=["GET"]),
    Route("/v1/admin/activations", admin(list_activations), methods=["GET"]),
    Route("/v1/admin/activations/{activation_id}", admin(free_activation), methods=["DELETE"]),
    Route("/v1/admin/offline/activations", admin(offline_activate), methods=["POST"]),
    Route("/v1/admin/offline/deactivations", admin(offline_deactivate), methods=["POST"]),
    Route("/v1/admin/floating/certificates", admin(floating_certificate), methods=["POST"]),
    *(Route(path, admin(endpoint), methods=[method]) for path, endpoint, method in CATALOGUE_ENDPOINTS),
]


def create_app(
    service: ActivationService,
    admin_token: str,
    *,
    routes: Sequence[BaseRoute] = (),
    trusted_proxies: Sequence[Network] = (),
    background: Sequence[Duty] = (),
    webhook_timeout: float = SEND_TIMEOUT,
    duties: bool = True,
) -> Starlette:
    """The app over ``service`` (:func:`.._app.build_app`: health, noop, metrics, errors);
    ``routes`` are served beside the API (e.g. the store's pages), ``background`` runs while the
    server does (e.g. the store's fulfilment loop).

    ``trusted_proxies``: the only peers whose ``X-Forwarded-For`` names the source a rate limit counts.
    ``duties=False``: no background duties at all (a worker process but the first, :mod:`.._workers`)."""

    async def release() -> None:
        await run_in_threadpool(service.release_silent)

    return build_app(
        "activation",
        service,
        service.signing_key,
        admin_token,
        routes=[*ROUTES, *routes],
        metrics=activation_metrics(service),
        trusted_proxies=trusted_proxies,
        # The webhook outbox is sent from every server process: a row is claimed before it is sent,
        # so replicas share the work and none sends a row twice at once.
        background=[]
        if not duties
        else [
            *background,
            Deliverer(Webhooks(service.store.engine), send_timeout=webhook_timeout).run,
            # Every replica runs it: each release is a conditional UPDATE, so two passes at once free a row once.
            # Paced by the shortest heartbeat interval of a license with release terms (1..60 s): a
            # release comes at most one heartbeat after release_after; with no such license a pass is
            # one small query a second.
            lambda: every("release of silent activations", service.release_pass, release),
        ],
    )


__all__ = ["ROUTES", "admin", "create_app"]
