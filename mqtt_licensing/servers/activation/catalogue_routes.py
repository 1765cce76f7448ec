"""The admin API of the vendor's product line (:mod:`.catalogue`): features and templates.

Plain endpoints; :mod:`.app` mounts them behind the admin bearer token like every
``/v1/admin`` route. A license is issued from a template on ``POST /v1/admin/licenses``
with ``"template": NAME`` (the other fields override it)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from ...core.errors import ErrorCode, LicensingError
from .._http import read_json, str_field
from .catalogue import TEMPLATE_TERMS, CatalogueAdmin

DEFINITION_FIELDS = ("title", "kind", "gates", "unit", "requires")


def _catalogue(request: Request) -> CatalogueAdmin:
    catalogue: CatalogueAdmin = request.app.state.service.catalogue
    return catalogue


def _only(data: dict[str, Any], allowed: tuple[str, ...]) -> dict[str, Any]:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise LicensingError(
            ErrorCode.BAD_REQUEST, f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}"
        )
    return data


async def list_features(request: Request) -> JSONResponse:
    return JSONResponse({"features": await run_in_threadpool(_catalogue(request).list_features)})


async def add_feature(request: Request) -> JSONResponse:
    data = _only(await read_json(request), ("name", *DEFINITION_FIELDS))
    str_field(data, "name")
    feature = await run_in_threadpool(lambda: _catalogue(request).add_feature(**data))
    return JSONResponse({"feature": feature}, status_code=201)


async def update_feature(request: Request) -> JSONResponse:
    data = _only(await read_json(request), DEFINITION_FIELDS)
    name = request.path_params["name"]
    feature = await run_in_threadpool(lambda: _catalogue(request).update_feature(name, **data))
    return JSONResponse({"feature": feature})


async def retire_feature(request: Request) -> JSONResponse:
    feature = await run_in_threadpool(_catalogue(request).retire_feature, request.path_params["name"])
    return JSONResponse({"feature": feature})


async def list_templates(request: Request) -> JSONResponse:
    return JSONResponse({"templates": await run_in_threadpool(_catalogue(request).list_templates)})


async def add_template(request: Request) -> JSONResponse:
    """``{"name", "features", ...terms, "replace": false}``; ``replace`` redefines an existing one."""
    data = _only(await read_json(request), ("name", "replace", *TEMPLATE_TERMS))
    name = str_field(data, "name")
    replace = data.get("replace") is True
    terms = {k: v for k, v in data.items() if k in TEMPLATE_TERMS}
    template = await run_in_threadpool(lambda: _catalogue(request).add_template(name, terms, replace=replace))
    return JSONResponse({"template": template}, status_code=200 if replace else 201)


async def remove_template(request: Request) -> JSONResponse:
    name = request.path_params["name"]
    await run_in_threadpool(_catalogue(request).remove_template, name)
    return JSONResponse({"removed": name})


ENDPOINTS: list[tuple[str, Callable[[Request], Awaitable[JSONResponse]], str]] = [
    ("/v1/admin/features", list_features, "GET"),
    ("/v1/admin/features", add_feature, "POST"),
    ("/v1/admin/features/{name}", update_feature, "PATCH"),
    ("/v1/admin/features/{name}/retire", retire_feature, "POST"),
    ("/v1/admin/templates", list_templates, "GET"),
    ("/v1/admin/templates", add_template, "POST"),
    ("/v1/admin/templates/{name}", remove_template, "DELETE"),
]
