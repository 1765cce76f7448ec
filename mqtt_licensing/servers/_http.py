"""HTTP plumbing both servers share: error statuses, JSON error bodies (for unknown routes and
methods too), request bodies and their fields, the admin bearer check.

One mistake gets one error code on every route of both servers: a missing field is
``bad_request``, a field of the wrong type or not base64 is ``invalid_field``, a body over the
limit is ``payload_too_large``.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from ..core.errors import ErrorCode, LicensingError
from ..core.signing import b64, unb64
from ._observe import note
from ._proxies import source_address

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024

# HTTP status for each error code a server may answer with; anything else is 400.
HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.NOT_AUTHORIZED: 403,
    ErrorCode.SUSPENDED: 403,
    ErrorCode.REVOKED: 403,
    ErrorCode.EXPIRED: 403,
    ErrorCode.WRONG_MODEL: 409,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.KEY_NOT_FOUND: 404,
    ErrorCode.ACTIVATION_NOT_FOUND: 404,
    ErrorCode.LEASE_NOT_FOUND: 404,
    ErrorCode.NO_ACTIVATIONS_LEFT: 409,
    ErrorCode.ALREADY_FREE: 409,
    ErrorCode.DEACTIVATED: 409,
    ErrorCode.RELEASED: 410,  # the activation is gone: released after its heartbeats stopped
    ErrorCode.NO_SEATS: 410,  # as Keygen Relay: the pool has nothing to give
    ErrorCode.NOT_PROVISIONED: 503,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.INTERNAL_ERROR: 500,
    ErrorCode.PAYMENT_DECLINED: 402,
    ErrorCode.PAYMENT_PROVIDER_ERROR: 502,
}


def error_response(exc: LicensingError, status_code: int | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": exc.to_dict()}
    if exc.evidence is not None:
        body["evidence"] = b64(exc.evidence)
    return JSONResponse(body, status_code=status_code or HTTP_STATUS.get(exc.code, 400))


async def _licensing_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LicensingError)
    note(request, error=exc.code)  # the request's log line and the operation metrics name the refusal
    return error_response(exc)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    """Unknown route or method: the same JSON error shape as every other failure."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return error_response(LicensingError(ErrorCode.NOT_FOUND, "no such endpoint"), 404)
    if exc.status_code == 405:
        return error_response(LicensingError(ErrorCode.BAD_REQUEST, "method not allowed"), 405)
    return error_response(LicensingError(ErrorCode.BAD_REQUEST, str(exc.detail)), exc.status_code)


async def _unexpected_error(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled server error")
    return error_response(LicensingError(ErrorCode.INTERNAL_ERROR, "internal server error"))


EXCEPTION_HANDLERS: dict[Any, Callable[[Request, Exception], Awaitable[JSONResponse]]] = {
    LicensingError: _licensing_error,
    HTTPException: _http_error,
    Exception: _unexpected_error,
}


async def read_json(request: Request) -> dict[str, Any]:
    """The request body as a JSON object, or a typed error (never a 500)."""
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise LicensingError(ErrorCode.PAYLOAD_TOO_LARGE, f"request body over {MAX_BODY_BYTES} bytes")
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        raise LicensingError(ErrorCode.BAD_REQUEST, "the request body is not JSON") from None
    if not isinstance(data, dict):
        raise LicensingError(ErrorCode.BAD_REQUEST, "the request body must be a JSON object")
    return data


def required(data: dict[str, Any], name: str) -> Any:
    if data.get(name) is None:
        raise LicensingError(ErrorCode.BAD_REQUEST, f"field {name!r} is required")
    return data[name]


def str_field(data: dict[str, Any], name: str) -> str:
    value = required(data, name)
    if not isinstance(value, str):
        raise LicensingError(ErrorCode.INVALID_FIELD, f"field {name!r} must be a string")
    return value


def blob_field(data: dict[str, Any], name: str = "request") -> bytes:
    """A base64 field holding a signed document (the service decodes and verifies the document)."""
    return unb64(str_field(data, name))


def blobs_field(data: dict[str, Any], name: str = "records") -> list[bytes]:
    """A list of base64 signed documents (usage records): absent is ``bad_request``, anything
    else than a list of base64 strings ``invalid_field``."""
    value = required(data, name)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise LicensingError(ErrorCode.INVALID_FIELD, f"field {name!r} must be a list of base64 strings")
    return [unb64(item) for item in value]


def flag(value: str | None) -> bool:
    """A query-string switch: ``1``, ``true``, ``yes`` or ``on``."""
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def require_bearer(request: Request, token: str) -> None:
    """Constant-time check of ``Authorization: Bearer <token>``; called on every admin route."""
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), token.encode()):
        raise LicensingError(ErrorCode.UNAUTHORIZED, "a valid admin bearer token is required")


def client_address(request: Request) -> str:
    """The request's source for rate limits: the peer, or behind a trusted proxy the client it names."""
    peer = request.client.host if request.client else "unknown"
    trusted = getattr(request.app.state, "trusted_proxies", ())
    return source_address(peer, request.headers.getlist("x-forwarded-for"), trusted)


__all__ = [
    "EXCEPTION_HANDLERS",
    "HTTP_STATUS",
    "MAX_BODY_BYTES",
    "blob_field",
    "blobs_field",
    "client_address",
    "error_response",
    "flag",
    "read_json",
    "require_bearer",
    "required",
    "str_field",
]
