"""Shared plumbing of the network-fault tests (test_network_faults_online.py and _floating.py):
a log handler that catches tracebacks, the agent's stored documents, and a rogue server app that
answers signed requests with whatever a test makes of them."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from mqtt_licensing.core.documents import InstanceRequest, Lease
from mqtt_licensing.core.signing import parse_envelope, unb64
from tests.reliability.support import (
    http_response,
)


class ExceptionLog(logging.Handler):
    """Collects log records that carry a traceback (what 'the agent crashed a little' looks like)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.name.startswith("mqtt_licensing"):
            self.records.append(record)


def timed_status(admin) -> tuple[dict[str, Any], float]:
    start = time.monotonic()
    status = admin.status()
    return status, time.monotonic() - start


def stored_document(agent: Any, name: str) -> bytes:
    """A signed document as the agent's current source persists it (its state.json section)."""
    return unb64(agent.source.to_json()[name])


def current_lease(agent: Any) -> Lease | None:
    return agent.source.facts().lease if agent.source is not None else None


def held_lease(agent: Any) -> Lease:
    lease = current_lease(agent)
    assert lease is not None, "no lease is held"
    return lease


def instance_of(request_blob: bytes) -> InstanceRequest:
    return InstanceRequest.from_body(parse_envelope(request_blob).unverified_body())


def rogue_app(routes: dict[str, Any]) -> Starlette:
    """A real Starlette app; each route answers from a function of the signed request it got."""

    def endpoint(make: Any) -> Any:
        async def handle(request: Request) -> JSONResponse:
            body = await request.json()
            return JSONResponse(make(instance_of(unb64(body["request"]))))

        return handle

    return Starlette(routes=[Route(path, endpoint(make), methods=["POST"]) for path, make in routes.items()])


def json_body(obj: Any, status: int = 200) -> bytes:
    return http_response(status, json.dumps(obj).encode())


def respond(body: bytes) -> Any:
    """A fault: the proxy answers every request with these bytes (an HTTP response)."""
    return lambda env: env.proxy.set("respond", response=body)
