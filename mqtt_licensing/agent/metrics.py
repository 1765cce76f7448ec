"""The agent's Prometheus metrics (docs/monitoring.md lists them).

Each agent has its own registry (several agents may share a process in tests). Gauges of the
license are read from the status document at scrape time, so they can never be stale; counters
and the request histogram are updated where things happen. Nothing here is on the accepted
CONNECT path: only a refusal costs a counter increment.

:func:`metrics_app` is the ASGI app with ``/metrics`` and ``/healthz`` that the broker's HTTP
listener (``http_bind``) serves.
"""

from __future__ import annotations

import base64
import hmac
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ..core.errors import LicensingError
from ..core.state import LicenseState
from .alarms import ALARM_CODES

PREFIX = "mqtt_license"

# status field -> gauge name (seconds since the epoch); absent when the status shows null
_TIMESTAMPS = {
    "expires_at": "expiry_timestamp_seconds",
    "deadline": "deadline_timestamp_seconds",
    "valid_until": "valid_until_timestamp_seconds",
    "support_until": "support_until_timestamp_seconds",
}


class AgentMetrics:
    def __init__(self, status: Callable[[], dict[str, Any]]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.refused = Counter(
            f"{PREFIX}_connections_refused",
            "CONNECTs refused by the license gate, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.sync_attempts = Counter(
            f"{PREFIX}_sync_attempts",
            "Background calls to the license servers (check_in, lease_renewal, lease_acquire)",
            ["kind"],
            registry=self.registry,
        )
        self.sync_failures = Counter(
            f"{PREFIX}_sync_failures",
            "Background calls to the license servers that failed, by kind and error code",
            ["kind", "code"],
            registry=self.registry,
        )
        self.requests = Counter(
            f"{PREFIX}_requests",
            "$license requests served, by operation and outcome (ok or the error code)",
            ["operation", "outcome"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            f"{PREFIX}_request_duration_seconds",
            "Time to serve one $license request",
            ["operation"],
            registry=self.registry,
        )
        self.registry.register(_StatusCollector(status))

    @contextmanager
    def timed(self, operation: str) -> Iterator[None]:
        """Count and time one $license request; the outcome is ok or the error code it raised."""
        started, outcome = time.perf_counter(), "ok"
        try:
            yield
        except LicensingError as exc:
            outcome = str(exc.code)
            raise
        finally:
            self.requests.labels(operation, outcome).inc()
            self.request_seconds.labels(operation).observe(time.perf_counter() - started)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _StatusCollector(Collector):
    """License gauges derived from the status document at each scrape."""

    def __init__(self, status: Callable[[], dict[str, Any]]) -> None:
        self._status = status

    def describe(self) -> list[Metric]:
        return []  # no fixed description: the families depend on what the status shows

    def collect(self) -> Iterator[Metric]:
        doc = self._status()
        state = GaugeMetricFamily(f"{PREFIX}_state", "1 for the license state the agent is in", labels=["state"])
        for name in LicenseState:
            state.add_metric([str(name)], 1.0 if doc["state"] == name else 0.0)
        yield state
        yield GaugeMetricFamily(f"{PREFIX}_serving", "1 while the license serves clients", value=float(doc["serving"]))
        for field, gauge in _TIMESTAMPS.items():
            if doc.get(field):
                yield GaugeMetricFamily(
                    f"{PREFIX}_{gauge}", f"The status {field} (seconds since the epoch)", value=_epoch(doc[field])
                )
        yield GaugeMetricFamily(f"{PREFIX}_connections", "Non-admin connections now", value=doc["connections"])
        if doc.get("max_connections") is not None:
            yield GaugeMetricFamily(
                f"{PREFIX}_max_connections", "Licensed non-admin connections", value=doc["max_connections"]
            )
        alarms = GaugeMetricFamily(f"{PREFIX}_alarm_active", "1 while the alarm is raised", labels=["code"])
        raised = {a["code"] for a in doc.get("alarms", [])}
        for code in ALARM_CODES:
            alarms.add_metric([code], 1.0 if code in raised else 0.0)
        yield alarms


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _scraper(metrics: AgentMetrics) -> Callable[[Request], Awaitable[Response]]:
    async def scrape(_request: Request) -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return scrape


def metrics_route(metrics: AgentMetrics) -> Route:
    """``GET /metrics`` in the Prometheus text format: the route the broker's HTTP listener adds."""
    return Route("/metrics", _scraper(metrics), methods=["GET"])


Login = Callable[[str, str, str | None], Awaitable[bool]]  # (username, password, peer) -> an admin or reader?


def metrics_app(
    metrics: AgentMetrics,
    status: Callable[[], dict[str, Any]],
    *,
    token: str | None = None,
    login: Login | None = None,
) -> Starlette:
    """``/metrics`` and ``/healthz`` on their own, e.g. without the License page.

    ``/metrics`` carries the license state, limits and expiry, which MQTT shows to readers only: with
    ``token`` and/or ``login`` it asks for ``Authorization: Bearer <token>`` or HTTP Basic with an
    admin's or a reader's login (neither: open, for an embedding app that guards it itself).
    ``/healthz`` says only whether the agent runs: ``{"ok": true}``."""
    scrape = _scraper(metrics)

    async def guarded(request: Request) -> Response:
        if (token is not None or login is not None) and not await _authorized(request, token, login):
            return PlainTextResponse(
                "401: /metrics needs the metrics_token (Authorization: Bearer) or an admin's or "
                "reader's login (HTTP Basic)\n",
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer, Basic realm="metrics"'},
            )
        return await scrape(request)

    async def healthz(_request: Request) -> JSONResponse:
        ok = status().get("state") is not None
        return JSONResponse({"ok": ok}, status_code=200 if ok else 503)

    return Starlette(routes=[Route("/metrics", guarded, methods=["GET"]), Route("/healthz", healthz, methods=["GET"])])


async def _authorized(request: Request, token: str | None, login: Login | None) -> bool:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token is not None:
        return hmac.compare_digest(credentials.strip().encode(), token.encode())
    if scheme.lower() == "basic" and login is not None:
        try:
            username, sep, password = base64.b64decode(credentials.strip(), validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        peer = request.client.host if request.client is not None else None
        return bool(sep) and await login(username, password, peer)
    return False


__all__ = ["PREFIX", "AgentMetrics", "metrics_app", "metrics_route"]
