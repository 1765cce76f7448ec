"""Shared plumbing of the network-fault tests (test_network_faults_online.py and _floating.py):
a log handler that catches tracebacks, the agent's stored documents, and a rogue server app that
answers signed requests with whatever a test makes of them."""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from mqtt_licensing.core.documents import InstanceRequest, Lease
from mqtt_licensing.core.signing import parse_envelope, unb64
from tests.reliability.support import (
    FaultProxy,
    http_response,
    wait_until,
)


class ExceptionLog(logging.Handler):
    """Collects log records that carry a traceback (what 'the agent crashed a little' looks like)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.name.startswith("mqtt_licensing"):
            self.records.append(record)


def status_while_a_request_hangs(proxy: FaultProxy, admin: Any, attempts: int = 3) -> dict[str, Any]:
    """The status, answered while a request the proxy holds (``slow``) is still waiting for its
    answer: a status that waited for that check-in or renewal could only arrive after its client
    gave up on it. Ordered by events, not by a stopwatch: the held request must be one the agent
    abandons by itself (its ``http_timeout`` shorter than the proxy's ``delay``), which is checked."""
    for _ in range(attempts):
        held: set[int] = wait_until(lambda: set(proxy.hanging), 10, "no request held at the proxy")
        status = admin.status()
        answered_during = bool(held & proxy.hanging)

        def given_up(held: set[int] = held) -> bool:
            return not held & proxy.hanging

        wait_until(given_up, proxy.delay - 0.5, "the agent never gave up the held request")
        if answered_during:
            return status
    raise AssertionError(f"the status waited for the held request {attempts} times in a row")


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
