"""One builder for both servers' Starlette apps, so what they share is the same on both:

* ``GET /v1/health`` -> ``{"ok": true, "service": "activation" | "floating", "public_key": <the
  server's signing key, text>, "fingerprint": <its fingerprint>, "time": <server clock>}``
  (the floating server also still sends ``server_fingerprint``, its name before both matched);
* ``GET /v1/noop`` -> ``{"ok": true}`` (the benchmarks' baseline);
* ``GET /metrics``, the request log and per-operation outcomes (:mod:`._observe`);
* JSON errors for every failure, unknown routes too (:mod:`._http`);
* ``trusted_proxies``: the only peers whose ``X-Forwarded-For`` names the source a rate limit
  counts (:mod:`._proxies`);
* ``background``: duties run for the server's lifetime, supervised (:mod:`._duties`).

Endpoints find the service, the admin token and the proxies in ``request.app.state``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from ..core.signing import fingerprint, public_key_to_text
from ._duties import Duty, supervise
from ._http import EXCEPTION_HANDLERS
from ._observe import ObserveMiddleware, ServerMetrics
from ._proxies import Network


async def health(request: Request) -> JSONResponse:
    state = request.app.state
    body: dict[str, Any] = {"ok": True, **state.identity, "time": state.service.clock()}
    if state.identity["service"] == "floating":
        body["server_fingerprint"] = body["fingerprint"]
    return JSONResponse(body)


async def noop(_request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


COMMON_ROUTES = [
    Route("/v1/health", health, methods=["GET"]),
    Route("/v1/noop", noop, methods=["GET"]),
]


def _lifespan(duties: Sequence[Duty]) -> Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(supervise(duties), name="server-duties")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return lifespan


def build_app(
    name: str,
    service: Any,
    signing_key: Ed25519PrivateKey,
    admin_token: str,
    *,
    routes: Sequence[BaseRoute],
    metrics: ServerMetrics,
    trusted_proxies: Sequence[Network] = (),
    background: Sequence[Duty] = (),
) -> Starlette:
    """The app of server ``name`` over ``service`` (which has ``clock()``) and its ``routes``."""
    app = Starlette(
        routes=[*COMMON_ROUTES, *routes, metrics.route()],
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[Middleware(ObserveMiddleware, metrics=metrics)],
        lifespan=_lifespan(background) if background else None,
    )
    app.state.service = service
    app.state.admin_token = admin_token
    app.state.trusted_proxies = tuple(trusted_proxies)
    app.state.identity = {
        "service": name,
        "public_key": public_key_to_text(signing_key),
        "fingerprint": fingerprint(signing_key),
    }
    return app


__all__ = ["COMMON_ROUTES", "build_app", "health", "noop"]
