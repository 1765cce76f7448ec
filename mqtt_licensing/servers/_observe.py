"""What both servers tell their operators: one log line per request and Prometheus metrics.

:class:`ObserveMiddleware` (pure ASGI, outermost but for Starlette's error middleware) times each
request and logs ``METHOD /route/{template} STATUS 12.3ms`` plus the ids a route noted
(:func:`note`) or its path carries (``license_id``, ``activation_id``, ``lease_id``) and the error
code of a refusal. The route *template* is logged, never the raw path or query, and never a
body or a header: a license key, a bearer token or a password cannot reach the log.

:class:`ServerMetrics` holds one registry per app: request counts and latency by route, and
per-operation outcomes (``ok`` or the error code) for the routes a server names; a server adds
its own gauges with a collector read at scrape time. ``GET /metrics`` serves them.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("mqtt_licensing.servers.requests")

PREFIX = "mqtt_license_server"
_NOTE = "observe"  # the key of this module's notes in the ASGI scope's state
_IDS = ("license_id", "activation_id", "lease_id")
METRICS_TOKEN_FILE = "metrics.token"  # in the data folder: what Prometheus sends (`authorization`)
METRICS_TOKEN_STATE = "metrics_token"
# Polled, or sent by every instance of a fleet every minute: a success is logged at debug only
# (the metrics count them); a refusal still at info.
_QUIET = frozenset({"/metrics", "/v1/health", "/v1/noop", "/healthz", "/v1/activations/heartbeat"})


def note(request: Request, **values: Any) -> None:
    """Add ids (or ``error=code``) to this request's log line and metrics; never a secret."""
    request.scope.setdefault("state", {}).setdefault(_NOTE, {}).update(
        {k: str(v) for k, v in values.items() if v is not None}
    )


class _Gauges(Collector):
    def __init__(self, collect: Callable[[], Iterable[Metric]]) -> None:
        self._collect = collect

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        return self._collect()


class ServerMetrics:
    """``operations``: ``(method, route template) -> operation name`` counted by outcome."""

    def __init__(
        self,
        server: str,
        operations: dict[tuple[str, str], str],
        gauges: Callable[[], Iterable[Metric]] | None = None,
    ) -> None:
        self.server = server
        self.operation_of = operations
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            f"{PREFIX}_requests", "HTTP requests by route and status", ["server", "method", "route", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.seconds = Histogram(
            f"{PREFIX}_request_duration_seconds", "HTTP request latency by route", ["server", "route"],
            registry=self.registry,
        )  # fmt: skip
        self.operations = Counter(
            f"{PREFIX}_operations", "License operations by outcome (ok or the error code)",
            ["server", "operation", "outcome"], registry=self.registry,
        )  # fmt: skip
        if gauges is not None:
            self.registry.register(_Gauges(gauges))

    def observe(self, method: str, route: str, status: int, seconds: float, error: str | None) -> None:
        self.requests.labels(self.server, method, route, str(status)).inc()
        self.seconds.labels(self.server, route).observe(seconds)
        operation = self.operation_of.get((method, route))
        if operation is not None:
            outcome = error or ("ok" if status < 400 else f"http_{status}")
            self.operations.labels(self.server, operation, outcome).inc()

    def route(self) -> Route:
        async def scrape(request: Request) -> Response:
            token = getattr(request.app.state, METRICS_TOKEN_STATE, None)
            if token is not None and not _bearer_is(request, token):
                return PlainTextResponse(
                    "401: /metrics needs Authorization: Bearer <the server's metrics.token>\n",
                    status_code=401,
                    headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
                )
            # The gauges read the database: collected in a worker thread, never on the loop.
            body = await run_in_threadpool(generate_latest, self.registry)
            return Response(body, media_type=CONTENT_TYPE_LATEST)

        return Route("/metrics", scrape, methods=["GET"])


def protect_metrics(app: Any, token: str) -> None:
    """From now on ``app``'s ``/metrics`` answers ``Authorization: Bearer <token>`` only (sales
    counts and seats are nobody else's business); an app never given one serves it openly."""
    setattr(app.state, METRICS_TOKEN_STATE, token)


def _bearer_is(request: Request, token: str) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


class ObserveMiddleware:
    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        notes: dict[str, str] = scope.setdefault("state", {}).setdefault(_NOTE, {})
        started, status = time.perf_counter(), 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            seconds = time.perf_counter() - started
            matched = scope.get("route")
            route = getattr(matched, "path", None) or "unmatched"  # never the raw path: no label explosion
            self.metrics.observe(scope["method"], route, status, seconds, notes.get("error"))
            level = logging.DEBUG if route in _QUIET and status < 400 else logging.INFO
            if log.isEnabledFor(level):  # a fleet's heartbeats: no line is built that nobody reads
                _log_request(level, scope, notes, route, status=status, seconds=seconds)


def _log_request(level: int, scope: Scope, notes: dict[str, str], route: str, *, status: int, seconds: float) -> None:
    method = scope["method"]
    params = scope.get("path_params") or {}
    ids = {k: params.get(k) or notes.get(k) for k in _IDS}
    extra = "".join(f" {k}={v}" for k, v in ids.items() if v)
    if "error" in notes:
        extra += f" error={notes['error']}"
    fields = {"method": method, "route": route, "status": status, "duration_ms": round(seconds * 1000, 1)}
    fields |= {k: v for k, v in ids.items() if v} | ({"error": notes["error"]} if "error" in notes else {})
    log.log(level, "%s %s %d %.1fms%s", method, route, status, seconds * 1000, extra, extra={"fields": fields})


__all__ = ["METRICS_TOKEN_FILE", "ObserveMiddleware", "ServerMetrics", "note", "protect_metrics"]
