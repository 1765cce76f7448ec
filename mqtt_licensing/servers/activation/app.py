"""The vendor activation server's HTTP API: thin Starlette routes over :class:`ActivationService`.

Binary fields travel as base64url without padding. Errors are
``{"error": {"code", "message"}}`` with the status from ``servers.common.HTTP_STATUS``.
Every ``/v1/admin/...`` route checks the bearer token first. The service is
blocking (database, signing), so routes run it in the thread pool.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ...core.errors import ErrorCode, LicensingError
from ...core.signing import b64, unb64
from ..common import EXCEPTION_HANDLERS, client_address, read_json, require_bearer
from .service import ActivationService

Handler = Callable[[Request], Awaitable[JSONResponse]]

_ISSUE_FIELDS = ("features", "model", "max_activations", "seats", "expires_at", "support_until", "max_connections")


def _field(data: dict[str, Any], name: str) -> Any:
    if data.get(name) is None:
        raise LicensingError(ErrorCode.BAD_REQUEST, f"field {name!r} is required")
    return data[name]


def _str_field(data: dict[str, Any], name: str) -> str:
    value = _field(data, name)
    if not isinstance(value, str):
        raise LicensingError(ErrorCode.BAD_REQUEST, f"field {name!r} must be a string")
    return value


def _blob_field(data: dict[str, Any], name: str = "request") -> bytes:
    return unb64(_str_field(data, name))


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def create_app(service: ActivationService, admin_token: str) -> Starlette:
    def admin(handler: Handler) -> Handler:
        async def wrapped(request: Request) -> JSONResponse:
            require_bearer(request, admin_token)
            return await handler(request)

        return wrapped

    # -- public -----------------------------------------------------------------
    async def health(_request: Request) -> JSONResponse:
        return JSONResponse({"ok": True, "public_key": service.public_key_text, "time": service.clock()})

    async def noop(_request: Request) -> JSONResponse:
        return JSONResponse({})

    async def activate(request: Request) -> JSONResponse:
        data = await read_json(request)
        key, blob = _field(data, "license_key"), _blob_field(data)
        result = await run_in_threadpool(service.activate, key, blob, client_address(request))
        return JSONResponse(
            {**result, "certificate": b64(result["certificate"])}, status_code=200 if result["reused"] else 201
        )

    async def check_in(request: Request) -> JSONResponse:
        blob = _blob_field(await read_json(request))
        cert = await run_in_threadpool(service.check_in, blob)
        return JSONResponse({"certificate": b64(cert)})

    async def deactivate(request: Request) -> JSONResponse:
        blob = _blob_field(await read_json(request))
        await run_in_threadpool(service.deactivate, blob)
        return JSONResponse({"freed": True})

    async def floating_activate(request: Request) -> JSONResponse:
        data = await read_json(request)
        key, blob = _field(data, "license_key"), _blob_field(data)
        result = await run_in_threadpool(service.floating_activate, key, blob, client_address(request))
        return JSONResponse(
            {**result, "certificate": b64(result["certificate"])}, status_code=200 if result["reused"] else 201
        )

    async def floating_check_in(request: Request) -> JSONResponse:
        blob = _blob_field(await read_json(request))
        cert = await run_in_threadpool(service.floating_check_in, blob)
        return JSONResponse({"certificate": b64(cert)})

    # -- admin --------------------------------------------------------------------
    async def create_license(request: Request) -> JSONResponse:
        data = await read_json(request)
        unknown = sorted(set(data) - set(_ISSUE_FIELDS))
        if unknown:
            raise LicensingError(
                ErrorCode.BAD_REQUEST, f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(_ISSUE_FIELDS)}"
            )
        _field(data, "features")
        terms = {k: data[k] for k in _ISSUE_FIELDS if k in data}
        lic, key = await run_in_threadpool(lambda: service.issue_license(**terms))
        return JSONResponse({"license": lic, "key": key}, status_code=201)

    async def list_licenses(_request: Request) -> JSONResponse:
        return JSONResponse({"licenses": await run_in_threadpool(service.list_licenses)})

    async def get_license(request: Request) -> JSONResponse:
        lic = await run_in_threadpool(service.get_license, request.path_params["license_id"])
        return JSONResponse({"license": lic})

    async def patch_license(request: Request) -> JSONResponse:
        data = await read_json(request)
        lic = await run_in_threadpool(service.update_license, request.path_params["license_id"], data)
        return JSONResponse({"license": lic})

    async def list_activations(request: Request) -> JSONResponse:
        license_id = request.query_params.get("license_id") or None
        include_freed = _flag(request.query_params.get("include_freed"))
        acts = await run_in_threadpool(lambda: service.list_activations(license_id, include_freed=include_freed))
        return JSONResponse({"activations": acts})

    async def free_activation(request: Request) -> JSONResponse:
        act = await run_in_threadpool(service.free_activation, request.path_params["activation_id"])
        return JSONResponse({"freed": True, "activation": act})

    async def offline_activate(request: Request) -> JSONResponse:
        code = _str_field(await read_json(request), "request_code")
        return JSONResponse(await run_in_threadpool(service.offline_activate, code))

    async def offline_deactivate(request: Request) -> JSONResponse:
        code = _str_field(await read_json(request), "code")
        return JSONResponse(await run_in_threadpool(service.offline_deactivate, code))

    async def floating_certificate(request: Request) -> JSONResponse:
        code = _str_field(await read_json(request), "request_code")
        return JSONResponse(await run_in_threadpool(service.floating_issue, code))

    routes = [
        Route("/v1/health", health, methods=["GET"]),
        Route("/v1/noop", noop, methods=["GET"]),
        Route("/v1/activations", activate, methods=["POST"]),
        Route("/v1/activations/check-in", check_in, methods=["POST"]),
        Route("/v1/activations/deactivate", deactivate, methods=["POST"]),
        Route("/v1/floating/activations", floating_activate, methods=["POST"]),
        Route("/v1/floating/check-in", floating_check_in, methods=["POST"]),
        Route("/v1/admin/licenses", admin(create_license), methods=["POST"]),
        Route("/v1/admin/licenses", admin(list_licenses), methods=["GET"]),
        Route("/v1/admin/licenses/{license_id}", admin(get_license), methods=["GET"]),
        Route("/v1/admin/licenses/{license_id}", admin(patch_license), methods=["PATCH"]),
        Route("/v1/admin/activations", admin(list_activations), methods=["GET"]),
        Route("/v1/admin/activations/{activation_id}", admin(free_activation), methods=["DELETE"]),
        Route("/v1/admin/offline/activations", admin(offline_activate), methods=["POST"]),
        Route("/v1/admin/offline/deactivations", admin(offline_deactivate), methods=["POST"]),
        Route("/v1/admin/floating/certificates", admin(floating_certificate), methods=["POST"]),
    ]

    async def not_found(_request: Request, _exc: Exception) -> JSONResponse:
        return JSONResponse({"error": {"code": "not_found", "message": "no such endpoint"}}, status_code=404)

    async def method_not_allowed(_request: Request, _exc: Exception) -> JSONResponse:
        return JSONResponse({"error": {"code": "bad_request", "message": "method not allowed"}}, status_code=405)

    handlers: dict[Any, Any] = {**EXCEPTION_HANDLERS, 404: not_found, 405: method_not_allowed}
    app = Starlette(routes=routes, exception_handlers=handlers)
    app.state.service = service
    return app


__all__ = ["create_app"]
